"""Where an image lives: a folder, ``memory:`` or a ZEO address.

Resolution order for the image spec: the explicit ``--image`` value, then
``$BATOS_IMAGE``, then ``default_image_dir()``.
"""
import dataclasses
import os
import stat
from pathlib import Path

ENV_VAR = "BATOS_IMAGE"
DATA_FS = "Data.fs"
BLOB_DIR = "blobs"
SNAPSHOT_DIR = "snapshots"
SERVE_FILE = "serve.json"


def default_image_dir() -> Path:
    """``$XDG_DATA_HOME/batos/image`` (``~/.local/share/batos/image``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share")
    return Path(base) / "batos" / "image"


@dataclasses.dataclass(frozen=True)
class Location:
    """A parsed image spec.

    kind is ``folder``, ``memory`` or ``zeo``; ``path`` is the folder for
    folder images; ``address`` is ``(host, port)`` or a socket path for ZEO.
    """
    kind: str
    path: Path | None = None
    address: tuple | str | None = None

    @property
    def data_fs(self) -> Path:
        return self.path / DATA_FS

    @property
    def blob_dir(self) -> Path:
        return self.path / BLOB_DIR

    @property
    def snapshot_dir(self) -> Path:
        return self.path / SNAPSHOT_DIR

    def __str__(self):
        if self.kind == "memory":
            return "memory:"
        if self.kind == "zeo":
            a = self.address
            return f"zeo://{a[0]}:{a[1]}" if isinstance(a, tuple) else f"zeo://{a}"
        return str(self.path)


def resolve(spec: str | os.PathLike | None = None) -> Location:
    """Turn ``--image`` (or its fallbacks) into a Location."""
    if spec is None or spec == "":
        spec = os.environ.get(ENV_VAR) or str(default_image_dir())
    spec = os.fspath(spec)
    if spec == "memory:":
        return Location("memory")
    if spec.startswith("zeo://"):
        rest = spec[len("zeo://"):]
        if rest.startswith("/"):
            return Location("zeo", address=rest)
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(
                f"bad ZEO address {spec!r}: use zeo://HOST:PORT or zeo:///path/to/socket")
        return Location("zeo", address=(host or "127.0.0.1", int(port)))
    path = Path(spec).expanduser()
    if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
        return Location("zeo", address=str(path.resolve()))
    return Location("folder", path=path.resolve())
