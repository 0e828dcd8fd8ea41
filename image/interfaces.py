"""Contracts of the image layer (written once; implementations declare them)."""
from zope.interface import Attribute, Interface


class IImage(Interface):
    """One living image: a ZODB database over a folder, memory or ZEO.

    Rules:
    - Every change happens inside a transaction; a block that raises is aborted
      and leaves nothing behind.
    - ``attempts()`` retries conflicts (``transaction.manager.attempts``);
      ``transaction()`` runs its block once.
    - A read-only image (``read_only=True``) never writes a byte, and repairs
      nothing: it explains instead.
    """

    location = Attribute("The parsed Location (folder, memory or zeo).")
    db = Attribute("The ZODB.DB.")
    read_only = Attribute("True when opened read-only.")
    notes = Attribute("Repairs made while opening (torn tail cut, garbage cut).")

    def open(at=None):
        """A connection with its own explicit transaction manager; ``at`` is a tid."""

    def transaction(note=None):
        """Context manager yielding a connection; commit on success, abort on error."""

    def attempts(n=None):
        """Iterate retrying attempts: ``for a in img.attempts(): with a as conn: ...``.

        Each attempt commits at the end of its block. A conflict (a TransientError from
        the block or the commit) is aborted, logged with what collided, and tried again
        after a random pause that grows with each try; the ``n``-th raises it."""

    def run(fn, *args, attempts=None, note=None, **kw):
        """Call ``fn(root, *args, **kw)`` in a retried transaction; return its result."""

    def view(at=None):
        """Context manager yielding a read-only root, now or as of tid ``at``."""

    def last_transaction():
        """The id of the last committed transaction."""

    def check_history(tid):
        """Raise HistoryUnavailable when a pack removed the state as of ``tid``."""

    def close():
        """Close the database and its storage."""


class ISnapshot(Interface):
    """A named, consistent, verifiable copy of a folder image.

    A snapshot folder holds ``Data.fs`` cut at a transaction boundary, the blob
    files committed up to that transaction, and ``manifest.json`` with the
    SHA-256 and size of every file, the tid it is consistent at, object and
    blob counts, creation time and the image schema version. Snapshots are
    copies: packing the live image never touches them.
    """

    name = Attribute("The snapshot's name.")
    path = Attribute("Its folder.")
    manifest = Attribute("The parsed manifest (a dict).")

    def verify():
        """Re-hash every file; raise SnapshotError naming each mismatch."""
