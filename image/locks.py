"""A per-image maintenance lock so snapshot and pack never run at once."""
import contextlib
import fcntl
import time

from .errors import ImageError

MAINT_LOCK = "maintenance.lock"


@contextlib.contextmanager
def maintenance(path, timeout=600.0):
    """Hold an flock on ``path/maintenance.lock``; wait up to ``timeout`` s."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / MAINT_LOCK, "a+") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ImageError(
                        f"another snapshot or pack of {path} is running; try again later") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
