"""Diagnose and repair a damaged Data.fs without ever losing bytes.

FileStorage repairs a torn *last* transaction by itself. Two cases it does
not handle are handled here:

* bytes after the last valid transaction that are not a transaction (random
  garbage appended): FileStorage fails with an error from ``read_index``. We
  keep the damaged file as ``Data.fs.damaged-<stamp>`` and truncate to the
  end of the last valid transaction.
* damage in the middle (valid transactions follow it): we refuse to guess and
  raise ``ImageCorrupt`` naming the offset, ``batos image recover`` (a
  wrapper around ZODB's fsrecover) and ``batos restore``.
"""
import dataclasses
import logging
import os
import shutil
import struct
import time
from pathlib import Path

from .errors import ImageCorrupt

log = logging.getLogger(__name__)

MAGIC = (b"FS21", b"FS30")     # Python 2 and Python 3 FileStorage
TRANS_HDR = ">8sQcHHH"
TRANS_HDR_LEN = struct.calcsize(TRANS_HDR)


@dataclasses.dataclass
class Diagnosis:
    size: int
    good_end: int          # offset just past the last structurally valid txn
    last_tid: bytes | None
    transactions: int
    valid_tail: bool       # the file's tail is itself a valid transaction

    @property
    def clean(self):
        return self.good_end == self.size

    @property
    def trailing_garbage(self):
        return not self.clean and not self.valid_tail


def scan(path: os.PathLike) -> Diagnosis:
    """Walk transaction headers (not data records) and find the valid prefix."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        if size < 4 or f.read(4) not in MAGIC:
            raise ImageCorrupt(
                f"{path} is not a FileStorage file (bad magic number). "
                "Restore a snapshot with `batos restore NAME --to DIR`.")
        pos, last_tid, count = 4, None, 0
        while pos < size:
            f.seek(pos)
            h = f.read(TRANS_HDR_LEN)
            if len(h) < TRANS_HDR_LEN:
                break
            tid, tl, status, ul, dl, el = struct.unpack(TRANS_HDR, h)
            if (status not in b" pu" or tl < TRANS_HDR_LEN + ul + dl + el
                    or pos + tl + 8 > size
                    or (last_tid is not None and tid <= last_tid)):
                break
            f.seek(pos + tl)
            if struct.unpack(">Q", f.read(8))[0] != tl:
                break
            pos, last_tid, count = pos + tl + 8, tid, count + 1
        return Diagnosis(size, pos, last_tid, count, _valid_tail(f, size, pos))


def _valid_tail(f, size, good_end):
    """Is there a well-formed transaction ending exactly at EOF, after good_end?"""
    if size - good_end < TRANS_HDR_LEN + 8:
        return False
    f.seek(size - 8)
    rtl = struct.unpack(">Q", f.read(8))[0]
    start = size - 8 - rtl
    if rtl < TRANS_HDR_LEN or start < good_end:
        return False
    f.seek(start)
    tid, tl, status, ul, dl, el = struct.unpack(TRANS_HDR, f.read(TRANS_HDR_LEN))
    return tl == rtl and status in b" pu" and tl >= TRANS_HDR_LEN + ul + dl + el


def stamp():
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())


def damaged_path(path: Path) -> Path:
    """Where a damaged Data.fs is kept: ``Data.fs.damaged-<UTC stamp>``."""
    return path.with_name(f"{path.name}.damaged-{stamp()}")


def keep_damaged(path: Path) -> Path:
    """Copy the damaged file aside before anything touches it."""
    kept = damaged_path(path)
    shutil.copy2(path, kept)
    return kept


def repair_or_explain(path: Path, error: BaseException) -> str:
    """Called when FileStorage failed to open ``path``.

    Repairs trailing garbage (returning a note for the log), or raises
    ImageCorrupt with what happened and what to do next.
    """
    d = scan(path)
    if d.trailing_garbage:
        kept = keep_damaged(path)
        with open(path, "r+b") as f:
            f.truncate(d.good_end)
        index = path.with_name(path.name + ".index")
        if index.exists():
            index.unlink()     # it may point past the new end
        note = (f"{path}: {d.size - d.good_end} bytes of garbage after the last "
                f"valid transaction (offset {d.good_end}) were cut off; the "
                f"damaged file is kept as {kept.name}")
        log.warning(note)
        return note
    where = f"at offset {d.good_end}" if not d.clean else "in a data record"
    raise ImageCorrupt(
        f"{path} is damaged {where} ({type(error).__name__}: {error}); "
        f"{d.transactions} transactions before it are intact. Nothing was changed. "
        "To salvage every readable transaction run `batos image recover --image "
        f"{path.parent}` (ZODB fsrecover; the damaged file is kept), or restore a "
        "snapshot with `batos restore NAME --to DIR`.") from error


def repair_or_explain_readonly(path: Path, error: BaseException):
    """Read-only opens never write: explain, and say how to repair."""
    d = scan(path)
    if d.trailing_garbage:
        raise ImageCorrupt(
            f"{path} has {d.size - d.good_end} bytes of garbage after its last valid "
            f"transaction (offset {d.good_end}). Open it once read-write (for example "
            f"`batos image info --image {path.parent}`) to cut them off; the damaged "
            "file is kept.") from error
    repair_or_explain(path, error)


def recover(path: Path) -> tuple[Path, str]:
    """Run ZODB's fsrecover into a fresh file and swap it in, keeping the original."""
    from ZODB.fsrecover import recover as fsrecover
    out = path.with_name(path.name + ".recovered")
    if out.exists():
        out.unlink()
    fsrecover(str(path), str(out), verbose=0, partial=True, force=False, pack=None)
    kept = damaged_path(path)
    os.replace(path, kept)
    os.replace(out, path)
    for suffix in (".index", ".tmp"):
        stale = path.with_name(path.name + suffix)
        if stale.exists():
            stale.unlink()
    return kept, f"recovered {path} with fsrecover; the damaged file is kept as {kept.name}"
