"""Walk every object reachable from the root, as of a transaction.

Used by snapshot (object and blob counts, missing blobs), ``batos image
check`` (every record parses, every blob file exists) and tests (a
deterministic dump to compare two images).
"""
import dataclasses
import hashlib

from ZODB.blob import is_blob_record
from ZODB.POSException import POSKeyError
from ZODB.serialize import referencesf
from ZODB.utils import oid_repr, p64, u64, z64

from .files import sha256_file


@dataclasses.dataclass
class Record:
    oid: bytes
    serial: bytes
    data: bytes
    is_blob: bool
    referrer: bytes | None = None   # the first object seen pointing at this one


def walk(storage, tid=None, errors=None):
    """Yield each reachable Record once, in oid order within each wave.

    With an ``errors`` list, a record that cannot be loaded or parsed is
    appended there as ``(oid, message)`` and the walk goes on; without one
    the error is raised.
    """
    referrer, todo = {z64: None}, [z64]
    before = p64(u64(tid) + 1) if tid else None
    while todo:
        nxt = []
        for oid in sorted(todo):
            try:
                if before is None:
                    data, serial = storage.load(oid)
                else:
                    got = storage.loadBefore(oid, before)
                    if got is None:
                        raise POSKeyError(oid)
                    data, serial, _ = got
                refs = referencesf(data)
            except Exception as e:      # damage: report it, or let it out
                if errors is None:
                    raise
                errors.append((oid_repr(oid), f"{type(e).__name__}: {e}"))
                continue
            yield Record(oid, serial, data, is_blob_record(data), referrer[oid])
            for ref in refs:
                if ref not in referrer:
                    referrer[ref] = oid
                    nxt.append(ref)
        todo = nxt


def blob_file(storage, rec: Record):
    """Path of the blob file of ``rec``; POSKeyError when it is missing."""
    return storage.loadBlob(rec.oid, rec.serial)


def dump(storage, tid=None) -> dict:
    """``{oid: (serial, sha256(record), sha256(blob) or None)}`` — deterministic."""
    out = {}
    for rec in walk(storage, tid):
        blob = sha256_file(blob_file(storage, rec)) if rec.is_blob else None
        out[oid_repr(rec.oid)] = (rec.serial.hex(), hashlib.sha256(rec.data).hexdigest(), blob)
    return out


@dataclasses.dataclass
class CheckReport:
    objects: int = 0
    blobs: int = 0
    missing_blobs: list = dataclasses.field(default_factory=list)   # (oid, referrer)
    broken: list = dataclasses.field(default_factory=list)          # (oid, error)

    @property
    def ok(self):
        return not self.missing_blobs and not self.broken


def check(storage, tid=None) -> CheckReport:
    """Load and parse every reachable record; look for every blob file."""
    report = CheckReport()
    for rec in walk(storage, tid, errors=report.broken):
        report.objects += 1
        if rec.is_blob:
            report.blobs += 1
            try:
                blob_file(storage, rec)
            except POSKeyError:
                owner = oid_repr(rec.referrer) if rec.referrer else None
                report.missing_blobs.append((oid_repr(rec.oid), owner))
    return report
