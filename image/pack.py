"""Pack with a retention policy: keep N days of history, drop older revisions
and their blob files. Snapshots are copies and are never touched."""
import datetime
import logging
import os
import time

from ZODB.TimeStamp import TimeStamp

from .errors import ImageError
from .meta import ensure_meta

log = logging.getLogger(__name__)


def _blob_files(blob_dir):
    n = 0
    for _, _, files in os.walk(blob_dir):
        n += sum(f.endswith(".blob") for f in files)
    return n


def pack(img, keep_days: float) -> dict:
    """Pack ``img`` to ``now - keep_days`` and record it in the image's meta."""
    if img.read_only:
        raise ImageError("cannot pack a read-only image")
    if keep_days < 0:
        raise ImageError(f"keep_days must be >= 0, not {keep_days}")
    loc = img.location
    cutoff = time.time() - keep_days * 86400
    stamp = TimeStamp(*time.gmtime(cutoff)[:5] + (cutoff % 60,))
    before = _sizes(img)

    def do_pack():
        img.db.pack(t=cutoff)
    if loc.kind == "folder":
        from .locks import maintenance
        with maintenance(loc.path):
            do_pack()
    else:
        do_pack()
    after = _sizes(img)
    entry = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "keep_days": keep_days,
        "cutoff": datetime.datetime.fromtimestamp(cutoff, datetime.timezone.utc).isoformat(timespec="seconds"),
        "cutoff_tid": stamp.raw().hex(),
    }
    img.run(lambda root: ensure_meta(root)["pack_history"].append(entry), note="pack")
    log.info("packed %s: keep %s days, %s", loc, keep_days, after)
    return {"before": before, "after": after, **entry}


def _sizes(img):
    loc = img.location
    if loc.kind != "folder":
        return {}
    return {"data_fs_bytes": loc.data_fs.stat().st_size,
            "blob_files": _blob_files(loc.blob_dir)}
