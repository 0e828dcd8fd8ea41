"""Open the storage behind an image location, turning failures into clear errors."""
import gc
import json
import logging
import os
from pathlib import Path

from . import repair
from .errors import ImageError, ImageLocked, ImageNotFound
from .location import DATA_FS, SERVE_FILE, Location

log = logging.getLogger(__name__)

# What FileStorage raises when the file's bytes are wrong (random garbage makes
# read_index decode a status byte and fail with UnicodeDecodeError).
ZEO_WAIT = 5    # seconds to wait for a ZEO server before saying it is not there
_CORRUPTION = (UnicodeDecodeError, ValueError, OverflowError, EOFError)


def open_storage(loc: Location, *, create=False, read_only=False):
    """Return ``(storage, notes)``; notes are repairs done while opening."""
    if loc.kind == "memory":
        from ZODB.DemoStorage import DemoStorage
        return DemoStorage(name="memory:"), []
    if loc.kind == "zeo":
        return _open_zeo(loc, read_only), []
    if loc.kind == "postgresql":
        from .relstore import open_postgresql
        return open_postgresql(loc, create=create, read_only=read_only), []
    return _open_file(loc, create=create, read_only=read_only)


def _open_file(loc: Location, *, create, read_only):
    import zc.lockfile
    from ZODB.FileStorage import FileStorage
    from ZODB.FileStorage.FileStorage import FileStorageError
    from ZODB.FileStorage.format import CorruptedError

    if not loc.data_fs.exists():
        if not create or read_only:
            raise ImageNotFound(
                f"no image at {loc.path} (no {DATA_FS} there). Create one with "
                f"`batos init --image {loc.path}`, or point --image / $BATOS_IMAGE "
                "at an existing image folder.")
        loc.path.mkdir(parents=True, exist_ok=True)
    notes = []
    torn_before = set(loc.path.glob(DATA_FS + ".tr*"))

    def make():
        return FileStorage(str(loc.data_fs), blob_dir=str(loc.blob_dir),
                           read_only=read_only, pack_keep_old=False)
    failure = None
    try:
        try:
            storage = make()
        except (CorruptedError, FileStorageError, *_CORRUPTION) as e:
            failure = e.with_traceback(None)
        if failure is not None:
            # The half-built FileStorage still holds the lock file: let it go first.
            gc.collect()
            if read_only:
                repair.repair_or_explain_readonly(loc.data_fs, failure)
            notes.append(repair.repair_or_explain(loc.data_fs, failure))
            storage = make()
    except zc.lockfile.LockError:
        raise locked_error(loc) from None
    torn = sorted(set(loc.path.glob(DATA_FS + ".tr*")) - torn_before)
    if torn:
        # FileStorage cut a bad tail, but it keeps the bad tail's tid as the last
        # transaction id: reopen on the now-clean file with a fresh index.
        storage.close()
        index = loc.path / (DATA_FS + ".index")
        if index.exists():
            index.unlink()
        storage = make()
    for torn in torn:
        note = (f"{loc.data_fs}: a torn last transaction (an interrupted commit) was "
                f"cut off by FileStorage; its bytes are kept in {torn.name}")
        log.warning(note)
        notes.append(note)
    return storage, notes


def lock_holder(loc: Location):
    """PID and command line of the process holding the image lock, if known."""
    try:
        pid = int((loc.path / (DATA_FS + ".lock")).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None, None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        cmd = None
    return pid, cmd


def serving_address(loc: Location):
    """The ZEO address a running kernel/server published for this folder."""
    try:
        info = json.loads((loc.path / SERVE_FILE).read_text())
        os.kill(int(info["pid"]), 0)
        return info["address"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def locked_error(loc: Location) -> ImageLocked:
    pid, cmd = lock_holder(loc)
    who = f"process {pid}" + (f" ({cmd})" if cmd else "") if pid else "another process"
    addr = serving_address(loc)
    if addr:
        how = f"It serves the image over ZEO: attach with `--image zeo://{addr}`."
    else:
        how = ("Stop that process, or have it serve the image (`batos image serve`) "
               "and attach with `--image zeo://...`.")
    return ImageLocked(f"the image at {loc.path} is in use by {who}. {how} "
                       "Read-only commands (snapshot, image at) work while it runs.",
                       pid=pid)


def _open_zeo(loc: Location, read_only):
    import hashlib

    import ZEO
    addr = loc.address
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "batos" / (
        "zeo-blobs-" + hashlib.sha1(str(addr).encode()).hexdigest()[:12])
    cache.mkdir(parents=True, exist_ok=True)
    try:
        # server_sync: a new transaction sees every commit made before it began.
        return ZEO.client(addr, blob_dir=str(cache), shared_blob_dir=False, server_sync=True,
                          wait_timeout=ZEO_WAIT, read_only=read_only)
    except Exception as e:  # ZEO raises ClientDisconnected/OSError variants
        raise ImageError(
            f"cannot reach the ZEO server at {loc} ({type(e).__name__}: {e}). "
            "Is the kernel (or `batos image serve`) running?") from e
