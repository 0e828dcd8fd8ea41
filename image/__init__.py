"""The living image: one ZODB database over a folder, memory or ZEO."""
from .errors import (
                     HistoryUnavailable,
                     ImageCorrupt,
                     ImageError,
                     ImageLocked,
                     ImageNotFound,
                     ImageVersionError,
                     MissingBlob,
                     SnapshotError,
)
from .image import Image, open_image
from .location import Location, default_image_dir, resolve

__all__ = [
    "Image", "open_image", "Location", "resolve", "default_image_dir",
    "ImageError", "ImageNotFound", "ImageLocked", "ImageCorrupt", "ImageVersionError",
    "MissingBlob", "SnapshotError", "HistoryUnavailable",
]
