"""Errors the image layer raises.

Every message says what happened and what to do next; callers (CLI, console,
kernel) print ``str(error)`` as is.
"""


class ImageError(Exception):
    """Base class of every image-layer error."""


class ImageNotFound(ImageError):
    """No image at the given location (and creation was not asked for)."""


class ImageLocked(ImageError):
    """Another process holds the image's write lock."""

    def __init__(self, message, pid=None):
        super().__init__(message)
        self.pid = pid


class ImageCorrupt(ImageError):
    """The storage file is damaged in a way that cannot be repaired safely."""


class ImageVersionError(ImageError):
    """The image was written by a newer schema than this code knows."""


class MissingBlob(ImageError):
    """A blob record exists but its file is gone."""

    def __init__(self, message, oid=None):
        super().__init__(message)
        self.oid = oid


class SnapshotError(ImageError):
    """A snapshot is missing, incomplete or fails verification."""


class HistoryUnavailable(ImageError):
    """The requested point in history has been packed away."""


class SettingsError(ImageError, ValueError):
    """A settings slot (or option) with an unknown key or a value of the wrong type."""
