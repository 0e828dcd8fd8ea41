"""Where an image lives: a folder, ``memory:``, a ZEO address or a PostgreSQL database.

Resolution order for the image spec: the explicit ``--image`` value, then
``$BATOS_IMAGE``, then ``default_image_dir()``.
"""
import dataclasses
import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ENV_VAR = "BATOS_IMAGE"
DATA_FS = "Data.fs"
BLOB_DIR = "blobs"
SNAPSHOT_DIR = "snapshots"
SERVE_FILE = "serve.json"
KINDS = ("folder", "memory", "zeo", "postgresql")
SPELLINGS = ("a folder path", "memory:", "zeo://HOST:PORT", "zeo:///path/to/socket",
             "postgresql://USER@HOST:PORT/DBNAME")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")     # two letters at least: not C:\


def default_image_dir() -> Path:
    """``$XDG_DATA_HOME/batos/image`` (``~/.local/share/batos/image``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share")
    return Path(base) / "batos" / "image"


@dataclasses.dataclass(frozen=True)
class Location:
    """A parsed image spec.

    kind is one of KINDS; ``path`` is the folder for folder images;
    ``address`` is ``(host, port)`` or a socket path for ZEO and PostgreSQL;
    ``dsn`` is the PostgreSQL URL as given (``database`` its database name).
    """
    kind: str
    path: Path | None = None
    address: tuple | str | None = None
    dsn: str | None = None
    database: str | None = None

    # What a location can do: the rest of the code asks these, never ``kind`` (only
    # image/ knows the storages).
    @property
    def is_folder(self) -> bool:
        """A FileStorage folder on this machine (``path``, ``data_fs``, ``blob_dir``)."""
        return self.kind == "folder"

    @property
    def is_database(self) -> bool:
        """A database server holds it (PostgreSQL): it repairs and backs itself up."""
        return self.kind == "postgresql"

    @property
    def persistent(self) -> bool:
        """It outlives this process (and so has a folder for this machine's files)."""
        return self.kind != "memory"

    @property
    def through_server(self) -> bool:
        """Reached through a ZEO server that another process (a kernel) runs."""
        return self.kind == "zeo"

    @property
    def shared(self) -> bool:
        """Do several processes open this image at once (and runners take its missions)?"""
        return self.kind in ("zeo", "postgresql")

    @property
    def hosts_kernel(self) -> bool:
        """A kernel may run on it: a folder (which it serves) or a database."""
        return self.kind in ("folder", "postgresql")

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
        if self.kind == "postgresql":
            return _without_password(self.dsn)
        return str(self.path)


def local_dir(loc: Location) -> Path:
    """Where this machine keeps its own files for an image (logs, snapshots, a kernel's
    token and night work): the folder itself, or, for a ZEO or PostgreSQL image,
    ``$XDG_DATA_HOME/batos/places/<kind>-<address and name>``."""
    if loc.kind == "folder":
        return loc.path
    if loc.kind == "memory":
        raise ValueError("a memory: image keeps no files")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(loc).split("://", 1)[-1]).strip("-")
    return default_image_dir().parent / "places" / f"{loc.kind}-{slug}"


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
    if spec.startswith(("postgresql://", "postgres://")):
        return _postgresql(spec)
    m = _SCHEME.match(spec)
    if m and not Path(spec).expanduser().exists():
        raise ValueError(
            f"unknown image location {spec!r}: the scheme {m.group(1)}: is not one BAT OS "
            f"knows. Use {', '.join(SPELLINGS)}. (A folder whose name has a colon: "
            f"write it as ./{spec}.)")
    path = Path(spec).expanduser()
    if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
        return Location("zeo", address=str(path.resolve()))
    return Location("folder", path=path.resolve())


def _postgresql(spec):
    url = urlsplit(spec)
    database = url.path.lstrip("/")
    try:
        port = url.port or 5432
    except ValueError:
        port = None
    if not database or "/" in database or port is None or not (url.hostname or "").strip():
        raise ValueError(f"bad PostgreSQL location {_without_password(spec)!r}: use "
                         "postgresql://USER@HOST:PORT/DBNAME")
    return Location("postgresql", address=(url.hostname, port), dsn=spec, database=database)


def _without_password(dsn):
    url = urlsplit(dsn)
    if url.password is None:
        return dsn
    netloc = url.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(url._replace(netloc=f"{user}:***@{netloc[2]}"))
