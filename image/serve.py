"""Serve a folder image over ZEO so several processes can share it."""
import json
import logging
import os

from .location import SERVE_FILE, Location
from .storage import locked_error

log = logging.getLogger(__name__)


def default_socket(loc: Location) -> str:
    """``IMAGE/zeo.sock``, or a short path in /tmp when that is too long for a socket."""
    path = str(loc.path / "zeo.sock")
    if len(path.encode()) < 100:          # sun_path holds 108 bytes on Linux
        return path
    import hashlib
    import tempfile
    digest = hashlib.sha1(str(loc.path).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"batos-{digest}.sock")


def serve(loc: Location, address=None):
    """Start a ZEO server on ``loc`` (in this process); return ``(address, stop)``.

    ``address`` is a unix socket path (default: ``IMAGE/zeo.sock``) or
    ``(host, port)``. The address is published in ``IMAGE/serve.json`` so that
    a locked-image error can tell others how to attach.
    """
    import zc.lockfile
    import ZEO
    if address is None:
        address = default_socket(loc)
    # ZEO opens the storage in a thread of its own, where a lock error only
    # shows as a timeout: take the lock here first (before touching the socket
    # a running server listens on), and let it go for ZEO to take.
    try:
        zc.lockfile.LockFile(str(loc.data_fs) + ".lock").close()
    except zc.lockfile.LockError:
        raise locked_error(loc) from None
    if isinstance(address, str) and os.path.exists(address):
        os.unlink(address)     # a stale socket from a killed server
    # ZEO.server writes its config to a temp file in the working directory
    # (removed once started): make that the image folder, not the user's.
    cwd = os.getcwd()
    os.chdir(loc.path)
    try:
        addr, stop = ZEO.server(path=str(loc.data_fs), blob_dir=str(loc.blob_dir), port=address)
    except zc.lockfile.LockError:
        raise locked_error(loc) from None
    finally:
        os.chdir(cwd)
    shown = addr if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"
    info = loc.path / SERVE_FILE
    info.write_text(json.dumps({"address": shown, "pid": os.getpid()}))

    def stop_and_forget():
        stop()
        if info.exists():
            info.unlink()
        if isinstance(addr, str) and os.path.exists(addr):
            os.unlink(addr)        # ZEO leaves its socket file behind
    log.info("serving %s over ZEO at %s", loc, shown)
    return addr, stop_and_forget
