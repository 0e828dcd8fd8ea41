"""The Image: one ZODB database, whatever storage is under it."""
import contextlib
import logging

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
        try:
            for attempt in tm.attempts(n or self.retries):
                yield _Attempt(attempt, conn)
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


class _Attempt:
    def __init__(self, attempt, conn):
        self._attempt, self._conn = attempt, conn

    def __enter__(self):
        self._attempt.__enter__()
        return self._conn

    def __exit__(self, *exc):
        return self._attempt.__exit__(*exc)


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
