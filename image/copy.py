"""Move an image between storages (folder, ZEO, PostgreSQL), then prove the copy.

The copy replays every transaction of the source, with its own tid, user,
description and records, into an empty destination through the storage
restore API (ZODB's copy-transactions path, as ``zodbconvert`` does), blobs
included. Then both sides are read back and compared: transaction and object
counts, blob count and bytes, the last tid, and a SHA-256 of every record
(its oid, tid and pickle, and the bytes of its blob). A copy that differs
anywhere is reported with the first record that differs.

ZEO has no ``restoreBlob``: into a ZEO server a blob revision is stored with
the tid of the transaction being copied, which gives the same records (ZEO
writes such a record twice within its transaction; the fingerprint counts a
transaction's last record per object, which is what a load returns).
"""
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile

from ZODB.blob import is_blob_record
from ZODB.POSException import POSKeyError
from ZODB.utils import oid_repr, z64

from .errors import ImageError
from .location import Location
from .storage import open_storage

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Fingerprint:
    transactions: int = 0
    records: int = 0
    objects: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    last_tid: str = ""
    digest: str = ""
    hashes: list = dataclasses.field(default_factory=list, repr=False)  # (tid, oid, sha256)

    def summary(self):
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "hashes"}


def _blob_sha(storage, oid, tid):
    try:
        path = storage.loadBlob(oid, tid)
    except POSKeyError:
        raise ImageError(f"blob of object {oid_repr(oid)} at tid {tid.hex()} is missing from "
                         "the image; restore it from a snapshot (`batos restore`) first") from None
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.digest(), size


def fingerprint(storage, stop=None, progress=None) -> Fingerprint:
    """Counts and a hash of every record of ``storage`` up to tid ``stop``."""
    fp, oids, total = Fingerprint(), set(), hashlib.sha256()
    it = storage.iterator(None, stop)
    try:
        for txn in it:
            fp.transactions += 1
            fp.last_tid = txn.tid.hex()
            total.update(txn.tid + _text(txn.user) + _text(txn.description))
            # a ZEO client's blob store writes the object's record twice in one
            # transaction (store, then storeBlobEnd); the last is the one that counts
            last = {r.oid: r for r in txn}
            for r in (last[oid] for oid in sorted(last)):
                data = r.data if r.data is not None else storage.loadSerial(r.oid, r.data_txn)
                h = hashlib.sha256(r.oid + txn.tid + data)
                if is_blob_record(data):
                    digest, size = _blob_sha(storage, r.oid, txn.tid)
                    h.update(digest)
                    fp.blobs += 1
                    fp.blob_bytes += size
                fp.records += 1
                oids.add(r.oid)
                fp.hashes.append((txn.tid, r.oid, h.digest()))
                total.update(h.digest())
            if progress:
                progress(1)
    finally:
        _close(it)
    fp.objects = len(oids)
    fp.digest = total.hexdigest()
    return fp


def _text(v):
    return v if isinstance(v, bytes) else str(v or "").encode()


def _close(it):
    close = getattr(it, "close", None)
    if close:
        close()


def copy_transactions(source, dest, stop=None, progress=None) -> int:
    """Replay ``source``'s transactions (up to tid ``stop``) into the empty ``dest``."""
    restore_blob = getattr(dest, "restoreBlob", None)
    scratch = tempfile.mkdtemp(prefix="batos-copy-")
    serial = {}              # oid -> its last copied tid (what storeBlob checks against)
    n = 0
    it = source.iterator(None, stop)
    try:
        for txn in it:
            dest.tpc_begin(txn, txn.tid, txn.status)
            try:
                for r in txn:
                    data = r.data
                    if data is not None and is_blob_record(data):
                        try:
                            src = source.loadBlob(r.oid, r.tid)
                        except POSKeyError:
                            raise ImageError(
                                f"blob of object {oid_repr(r.oid)} at tid {r.tid.hex()} is "
                                "missing from the source; nothing was kept of the copy's "
                                "transaction") from None
                        # the storage moves the file it is given: give it a copy
                        tmp = os.path.join(scratch, f"{n}-{r.oid.hex()}.blob")
                        shutil.copyfile(src, tmp)
                        if restore_blob is not None:
                            restore_blob(r.oid, r.tid, data, tmp, r.data_txn, txn)
                        else:
                            dest.storeBlob(r.oid, serial.get(r.oid, z64), data, tmp, "", txn)
                    else:
                        dest.restore(r.oid, r.tid, data, "", r.data_txn, txn)
                    serial[r.oid] = txn.tid
                dest.tpc_vote(txn)
                dest.tpc_finish(txn)
            except BaseException:
                dest.tpc_abort(txn)
                raise
            n += 1
            if progress:
                progress(1)
    finally:
        _close(it)
        shutil.rmtree(scratch, ignore_errors=True)
    return n


def _refuse_non_empty(loc: Location):
    if loc.kind == "folder" and loc.data_fs.exists():
        raise ImageError(f"{loc} already holds an image; copy into a new folder (or move "
                         "that one aside first): a copy never writes over an image")


def count_transactions(storage, stop=None):
    it = storage.iterator(None, stop)
    try:
        return sum(1 for _ in it)
    finally:
        _close(it)


def copy_image(src: Location, dest: Location, progress=None) -> dict:
    """Copy ``src`` into the new image ``dest`` and verify it; a report dict.

    ``progress(phase, total)`` returns a callable advanced once per transaction.
    """
    if str(src) == str(dest):
        raise ImageError(f"source and destination are the same image ({src})")
    if "memory" in (src.kind, dest.kind):
        raise ImageError("memory: lives only in one process; copy between a folder, a ZEO "
                         "server and a PostgreSQL database")
    _refuse_non_empty(dest)
    made = dest.kind == "folder" and not dest.path.exists()
    try:
        return _copy_and_verify(src, dest, progress)
    except BaseException:
        if made and dest.path.exists():       # a folder we made holds only a partial copy
            shutil.rmtree(dest.path)
        raise


def _copy_and_verify(src, dest, progress):
    source, _ = open_storage(src, read_only=True)
    try:
        stop = source.lastTransaction()
        if stop == z64:
            raise ImageError(f"{src} has no committed transaction to copy")
        total = count_transactions(source, stop)
        target, _ = open_storage(dest, create=True)
        try:
            if target.lastTransaction() != z64:
                raise ImageError(f"{dest} already holds an image (last transaction "
                                 f"{target.lastTransaction().hex()}); copy into an empty one")
            tick = progress("copy", total) if progress else None
            try:
                copied = copy_transactions(source, target, stop, tick)
            except Exception as e:
                if dest.kind == "folder":
                    raise
                raise ImageError(f"{e}; {dest} now holds a partial copy: drop it (for "
                                 "PostgreSQL: dropdb) before copying again") from e
            theirs = fingerprint(source, stop, progress("verify source", total) if progress else None)
            ours = fingerprint(target, None, progress("verify copy", total) if progress else None)
        finally:
            target.close()
    finally:
        source.close()
    report = {"source": str(src), "destination": str(dest), "copied": copied,
              "source_fingerprint": theirs.summary(), "copy_fingerprint": ours.summary()}
    diff = first_difference(theirs, ours)
    report["verified"] = diff is None
    if diff:
        report["difference"] = diff
        raise CopyMismatch(f"the copy in {dest} differs from {src}: {diff}", report)
    log.info("copied %s to %s: %d transactions, %d objects, %d blobs, digest %s", src, dest,
             copied, ours.objects, ours.blobs, ours.digest[:16])
    return report


class CopyMismatch(ImageError):
    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def first_difference(a: Fingerprint, b: Fingerprint):
    for key in ("transactions", "records", "objects", "blobs", "blob_bytes", "last_tid"):
        if getattr(a, key) != getattr(b, key):
            return f"{key}: {getattr(a, key)} in the source, {getattr(b, key)} in the copy"
    for x, y in zip(a.hashes, b.hashes):
        if x != y:
            return f"record {oid_repr(x[1])} of transaction {x[0].hex()} differs"
    if a.digest != b.digest:
        return "transaction metadata (user or description) differs"
    return None
