"""Named, consistent, verifiable copies of an image, as FileStorage folders.

A snapshot is cut at a transaction boundary. Of a folder image: FileStorage
only appends, so the bytes of Data.fs up to the end of the last committed
transaction are a complete storage, and blob files never change once
committed; the copy is taken through a read-only FileStorage, which takes no
lock, so it works while the kernel (or anything else) keeps writing. Of a
PostgreSQL (or ZEO) image: its transactions up to the last committed one are
replayed into a new FileStorage (image/copy.py), while others keep writing.
Either way the snapshot is a folder with the same manifest. Those of a
folder image live in IMAGE/snapshots; the others in the snapshots folder of
``location.local_dir``.
"""
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from ZODB.POSException import POSKeyError
from ZODB.TimeStamp import TimeStamp
from ZODB.utils import oid_repr, z64
from zope.interface import implementer

from . import classes, dump
from .blobs import missing
from .errors import ImageError, SnapshotError
from .files import copy_hashed, sha256_file, write_json_atomic
from .interfaces import ISnapshot
from .location import BLOB_DIR, DATA_FS, SNAPSHOT_DIR, Location, local_dir
from .locks import maintenance
from .meta import META_KEY
from .storage import open_storage

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Files a read-only open of a snapshot may create; they are not part of it.
_IGNORED = re.compile(r"^(blobs/tmp/|.*\.lock$|Data\.fs\.(index|tmp)$)")


def tid_time(tid: bytes) -> str:
    return datetime.datetime.fromtimestamp(
        TimeStamp(tid).timeTime(), datetime.timezone.utc).isoformat(timespec="seconds")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@implementer(ISnapshot)
class Snapshot:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise SnapshotError(f"snapshot {self.path.name}: unreadable manifest ({e})") from e
        self.name = self.manifest["name"]

    @property
    def tid(self) -> bytes:
        return bytes.fromhex(self.manifest["tid"])

    def verify(self, progress=None):
        problems = []
        files = self.manifest["files"]
        for rel, want in files.items():
            p = self.path / rel
            if not p.is_file():
                problems.append(f"{rel}: missing")
                continue
            got = sha256_file(p)
            if got != want["sha256"]:
                problems.append(f"{rel}: checksum mismatch (expected {want['sha256'][:12]}…, got {got[:12]}…)")
            if progress:
                progress(want["size"])
        for p in self.path.rglob("*"):
            rel = p.relative_to(self.path).as_posix()
            if p.is_file() and rel != MANIFEST and rel not in files and not _IGNORED.match(rel):
                problems.append(f"{rel}: not in the manifest")
        if problems:
            raise SnapshotError(f"snapshot {self.name} at {self.path} fails verification:\n  "
                                + "\n  ".join(problems))
        return True

    def __repr__(self):
        m = self.manifest
        return f"<Snapshot {self.name} tid={m['tid']} objects={m['objects']} blobs={m['blobs']}>"


def snapshot_root(loc: Location, root=None) -> Path:
    if root:
        return Path(root)
    if loc.kind == "folder":
        return loc.snapshot_dir
    if loc.kind == "memory":
        raise ImageError("a memory: image lives in one process; snapshots are taken of a "
                         "folder, ZEO or PostgreSQL image")
    return local_dir(loc) / SNAPSHOT_DIR


def list_snapshots(loc: Location, root=None) -> list[Snapshot]:
    d = snapshot_root(loc, root)
    if not d.is_dir():
        return []
    snaps = [Snapshot(p) for p in sorted(d.iterdir()) if (p / MANIFEST).is_file()]
    return sorted(snaps, key=lambda s: s.manifest["tid"])


def get_snapshot(loc: Location, name: str, root=None) -> Snapshot:
    p = snapshot_root(loc, root) / name
    if not (p / MANIFEST).is_file():
        known = ", ".join(s.name for s in list_snapshots(loc, root)) or "none"
        raise SnapshotError(f"no snapshot named {name!r} in {p.parent} (known: {known})")
    return Snapshot(p)


def create_snapshot(loc: Location, name: str, root=None, progress=None) -> Snapshot:
    """Copy the image as of its last committed transaction into ``root/name``."""
    if not _NAME.match(name):
        raise SnapshotError(f"bad snapshot name {name!r}: use letters, digits, '.', '_' and '-'")
    dest = snapshot_root(loc, root) / name
    if dest.exists():
        raise SnapshotError(f"a snapshot named {name!r} already exists at {dest}")
    partial = dest.with_name(name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if loc.kind == "folder":
        with maintenance(loc.path):
            cut = _cut_folder(loc, partial, progress)
            _finish(loc, name, partial, dest, *cut)
    else:
        _finish(loc, name, partial, dest, *_cut_by_copy(loc, partial, progress))
    tid, counts = cut_tid_counts(dest)
    log.info("snapshot %s taken at tid %s (%d objects, %d blobs)", name, tid.hex(),
             counts["objects"], counts["blobs"])
    return Snapshot(dest)


def cut_tid_counts(dest):
    m = Snapshot(dest).manifest
    return bytes.fromhex(m["tid"]), {"objects": m["objects"], "blobs": m["blobs"]}


def _cut_folder(loc, partial, progress):
    """Data.fs up to its last complete transaction, and the blob files up to it."""
    storage, _ = open_storage(loc, read_only=True)
    try:
        end = storage.getSize()
        # Not storage.lastTransaction(): when the file was opened during a
        # commit, FileStorage reports the unfinished transaction's tid while
        # its size stops before it. The last complete one ends at ``end``.
        tid = last_tid_before(storage._file.fileno(), end)
        counts, blob_files = _blob_revisions(storage, tid)
        (partial / BLOB_DIR).mkdir(parents=True)
        total = end + sum(os.path.getsize(s) for s, _ in blob_files)
        files = {DATA_FS: _copy(storage._file.fileno(), partial / DATA_FS, end, progress)}
        for src, rel in blob_files:
            files[rel] = copy_hashed(src, partial / rel, progress)
        layout = Path(storage.blob_dir) / ".layout"
        if layout.exists():
            files[f"{BLOB_DIR}/.layout"] = copy_hashed(layout, partial / BLOB_DIR / ".layout", None)
        schema = _schema_version(storage, tid)   # closes the storage
    finally:
        storage.close()
    return tid, counts, files, total, schema


def _cut_by_copy(loc, partial, progress):
    """A database's transactions up to its last one, replayed into a FileStorage."""
    from ZODB.FileStorage import FileStorage

    from .copy import copy_transactions, fingerprint, first_difference
    source, _ = open_storage(loc, read_only=True)
    try:
        tid = source.lastTransaction()
        if tid == z64:
            raise SnapshotError(f"{loc} has no committed transaction yet")
        (partial / BLOB_DIR).mkdir(parents=True)
        copy = FileStorage(str(partial / DATA_FS), blob_dir=str(partial / BLOB_DIR))
        try:
            copy_transactions(source, copy, tid)
        finally:
            copy.close()
        copy = FileStorage(str(partial / DATA_FS), blob_dir=str(partial / BLOB_DIR),
                           read_only=True)
        try:
            diff = first_difference(fingerprint(source, tid), fingerprint(copy))
            if diff:
                raise SnapshotError(f"the snapshot's copy of {loc} differs from it: {diff}")
            counts, _ = _blob_revisions(copy, tid)
            schema = _schema_version(copy, tid)
        finally:
            copy.close()
    finally:
        source.close()
    files, total = {}, 0
    for p in sorted(partial.rglob("*")):
        rel = p.relative_to(partial).as_posix()
        if p.is_file() and not _IGNORED.match(rel):
            files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
            total += files[rel]["size"]
            if progress:
                progress(files[rel]["size"])
    return tid, counts, files, total, schema


def _finish(loc, name, partial, dest, tid, counts, files, total, schema):
    manifest = {
        "format": FORMAT, "name": name, "created": _now(), "source": str(loc.path or loc),
        "tid": tid.hex(), "tid_time": tid_time(tid), "schema_version": schema,
        "objects": counts["objects"], "blobs": counts["blobs"],
        "blob_files": sum(1 for rel in files if rel.endswith(".blob")), "bytes": total,
        "files": files,
    }
    write_json_atomic(partial / MANIFEST, manifest)
    _check_copy(partial, tid)
    os.replace(partial, dest)


def restore_snapshot(snap: Snapshot, to, force=False, progress=None) -> dict:
    """Verify ``snap``, copy it into folder ``to``, verify the copy, open it."""
    to = Path(to).resolve()
    if to.exists() and any(to.iterdir()):
        if not force:
            raise SnapshotError(f"{to} is not empty; choose an empty folder or pass --force "
                                "to overwrite the image files in it")
        for p in to.glob(DATA_FS + "*"):
            p.unlink()
        if (to / BLOB_DIR).exists():
            shutil.rmtree(to / BLOB_DIR)
    snap.verify(progress=progress)
    to.mkdir(parents=True, exist_ok=True)
    bad = []
    for rel, want in snap.manifest["files"].items():
        got = copy_hashed(snap.path / rel, to / rel, progress)
        if got["sha256"] != want["sha256"]:
            bad.append(rel)
    if bad:
        raise SnapshotError(f"restore into {to}: copies differ from the manifest: {', '.join(bad)}")
    _check_copy(to, snap.tid)
    return {"to": str(to), "tid": snap.manifest["tid"], "files": len(snap.manifest["files"])}


# -- helpers -------------------------------------------------------------------

def last_tid_before(fd, end):
    """The tid of the transaction that ends at offset ``end`` of a Data.fs."""
    import struct
    if end <= 4:
        raise SnapshotError("the image has no committed transaction yet")
    tl = struct.unpack(">Q", os.pread(fd, 8, end - 8))[0]
    return os.pread(fd, 8, end - 8 - tl)


def _blob_revisions(storage, tid):
    """Count objects and blobs as of ``tid``; list every blob file up to ``tid``.

    A current blob whose file is gone aborts the snapshot, naming the object.
    """
    counts = {"objects": 0, "blobs": 0}
    for rec in dump.walk(storage, tid):
        counts["objects"] += 1
        if rec.is_blob:
            counts["blobs"] += 1
            try:
                dump.blob_file(storage, rec)
            except POSKeyError:
                owner = f"object {oid_repr(rec.referrer)}" if rec.referrer else None
                raise missing(rec.oid, owner=owner) from None
    blob_dir = Path(storage.blob_dir)
    helper = storage.fshelper
    out = []
    for oid, path in helper.listOIDs():
        for fn in os.listdir(path):
            full = os.path.join(path, fn)
            if not fn.endswith(".blob"):
                continue
            _, btid = helper.splitBlobFilename(full)
            if btid <= tid:
                out.append((full, Path(full).relative_to(blob_dir.parent).as_posix()))
    return counts, sorted(out, key=lambda x: x[1])


def _schema_version(storage, tid):
    db = classes.DB(storage)
    try:
        conn = db.open(at=tid)
        meta = conn.root().get(META_KEY)
        version = meta.get("schema_version") if meta is not None else None
        conn.close()
        return version
    finally:
        db.close()


def _copy(fd, dest, length, progress, bufsize=1 << 20):
    """Copy the first ``length`` bytes of open file ``fd`` (pread: no shared offset)."""
    h = hashlib.sha256()
    pos = 0
    with open(dest, "wb") as out:
        while pos < length:
            chunk = os.pread(fd, min(bufsize, length - pos), pos)
            if not chunk:
                raise SnapshotError(f"image file shrank while copying (at byte {pos})")
            out.write(chunk)
            h.update(chunk)
            pos += len(chunk)
            if progress:
                progress(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return {"sha256": h.hexdigest(), "size": length}


def _check_copy(folder, tid):
    """Open the copy read-only: it must end exactly at ``tid``."""
    storage, _ = open_storage(Location("folder", path=Path(folder)), read_only=True)
    try:
        last = storage.lastTransaction()
    finally:
        storage.close()
    if last != tid:
        raise SnapshotError(f"copy in {folder} ends at tid {last.hex()}, expected {tid.hex()}")


def open_at(loc: Location, name: str, root=None):
    """Open the image read-only as of snapshot ``name``: ``(image, tid, source)``.

    Uses the live image's history while it still holds that state, else the
    snapshot's own copy (which is that state exactly).
    """
    from .errors import HistoryUnavailable
    from .image import open_image
    snap = get_snapshot(loc, name, root)
    img = open_image(loc, read_only=True)
    try:
        img.check_history(snap.tid)
        if img.last_transaction() < snap.tid:
            raise HistoryUnavailable("the live image is older than the snapshot")
        return img, snap.tid, "live image history"
    except HistoryUnavailable as e:
        img.close()
        log.info("snapshot %s: %s; opening the snapshot's own copy", name, e)
        return (open_image(Location("folder", path=snap.path), read_only=True),
                snap.tid, f"snapshot copy ({e})")
