"""The Image: one ZODB database, whatever storage is under it."""
import contextlib
import logging
import random
import time

import transaction
from zope.interface import implementer

from . import classes
from . import meta as _meta
from .errors import HistoryUnavailable, ImageError
from .interfaces import IImage
from .location import Location, resolve
from .storage import open_storage

log = logging.getLogger(__name__)
CACHE_SIZE = 20_000     # objects per connection


@implementer(IImage)
class Image:

    def __init__(self, location: Location, db, *, read_only=False, notes=(), retries=3):
        self.location = location
        self.db = db
        self.read_only = read_only
        self.notes = list(notes)
        self.retries = retries

    # -- connections and transactions -------------------------------------
    def open(self, at=None):
        """A long-lived connection with its own transaction manager (console, kernel)."""
        tm = transaction.TransactionManager(explicit=True)
        if at is not None:
            return self.db.open(transaction_manager=tm, at=at)
        return self.db.open(transaction_manager=tm)

    @contextlib.contextmanager
    def transaction(self, note=None):
        conn = self.open()
        tm = conn.transaction_manager
        try:
            txn = tm.begin()
            if note:
                txn.note(note)
            yield conn
            tm.commit()
        finally:               # an exception (or a failed commit) lands here: abort
            if in_transaction(tm):
                tm.abort()
            conn.close()

    def attempts(self, n=None):
        conn = self.open()
        tm = conn.transaction_manager
        n = n or self.retries
        try:
            for i in range(n):
                if i:
                    time.sleep(backoff(i))
                attempt = _Attempt(conn, last=i == n - 1)
                yield attempt
                if attempt.committed:
                    break
        finally:
            if in_transaction(tm):
                tm.abort()
            conn.close()

    def run(self, fn, *args, attempts=None, note=None, **kw):
        for attempt in self.attempts(attempts):
            with attempt as conn:
                if note:
                    conn.transaction_manager.get().note(note)
                result = fn(conn.root(), *args, **kw)
        return result

    @contextlib.contextmanager
    def view(self, at=None):
        """A read-only look at the root, now or as of tid ``at``."""
        conn = self.open(at=at)
        try:
            conn.transaction_manager.begin()
            yield conn.root()
        finally:
            conn.transaction_manager.abort()
            conn.close()

    # -- facts -------------------------------------------------------------
    @property
    def storage(self):
        return self.db.storage

    def last_transaction(self) -> bytes:
        return self.db.lastTransaction()

    def schema_version(self):
        with self.view() as root:
            return _meta.schema_version(root)

    def check_history(self, tid: bytes):
        """Raise HistoryUnavailable if a pack removed the state as of ``tid``."""
        with self.view() as root:
            history = list(_meta.get_meta(root).get("pack_history", ()))
        for entry in history:
            if bytes.fromhex(entry["cutoff_tid"]) > tid:
                raise HistoryUnavailable(
                    f"history before {entry['cutoff']} was packed on {entry['when']}; "
                    "the image no longer holds the state you asked for")

    def close(self):
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Image {self.location}{' read-only' if self.read_only else ''}>"


def backoff(retry) -> float:
    """Seconds before retry ``retry`` (1, 2, ...): random, up to 10 ms doubling to 0.5 s, so
    writers that collided once do not collide again in step."""
    return random.uniform(0, min(0.5, 0.005 * 2 ** retry))


class _Attempt:
    """One try: commit at the end of the block; a conflict (a TransientError, from the block
    or the commit) is aborted, named in the log and retried, unless this is the last try."""

    def __init__(self, conn, last):
        self.conn, self.last, self.committed = conn, last, False

    def __enter__(self):
        self.conn.transaction_manager.begin()
        return self.conn

    def __exit__(self, t, v, tb):
        tm = self.conn.transaction_manager
        raised = None
        if v is None:
            try:
                tm.commit()
            except Exception as e:          # noqa: BLE001 - retried or raised below
                v = raised = e
            else:
                self.committed = True
                return False
        tm.abort()
        if isinstance(v, transaction.interfaces.TransientError):
            _say_conflict(v, self.last)
            if not self.last:
                return True                  # swallowed: the loop tries again
        if raised is not None:
            raise raised
        return False


def _say_conflict(e, last):
    """Name what a transaction collided over: the hot spot an operator would look at."""
    from ZODB.utils import oid_repr
    oid = getattr(e, "oid", None)
    what = f"{getattr(e, 'class_name', None) or type(e).__name__} {oid_repr(oid) if oid else ''}"
    log.log(logging.WARNING if last else logging.INFO, "conflict over %s%s", what.strip(),
            "; no tries left" if last else ", retrying", extra={
                "event": "conflict_on", "class": getattr(e, "class_name", None),
                "error": type(e).__name__, "oid": oid_repr(oid) if oid else None})


def in_transaction(tm):
    try:
        tm.get()
        return True
    except transaction.interfaces.NoTransaction:
        return False


def open_image(spec=None, *, create=False, read_only=False) -> Image:
    """Open the image at ``spec`` (folder, ``memory:``, ``zeo://...``)."""
    loc = spec if isinstance(spec, Location) else resolve(spec)
    if loc.kind == "memory":
        create = True
    storage, notes = open_storage(loc, create=create, read_only=read_only)
    try:
        # A prototype is two records (object + slot mapping); ZODB's default
        # cache of 400 objects per connection would keep re-loading them.
        # classes.DB: records of moved classes load through the rename map
        db = classes.DB(storage, cache_size=CACHE_SIZE, large_record_size=1 << 24)
    except Exception as e:
        storage.close()
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"cannot open the database in {loc}: {type(e).__name__}: {e}") from e
    return Image(loc, db, read_only=read_only, notes=notes)
