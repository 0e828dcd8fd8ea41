"""A mind's lineage: promote a generation, roll back, list, keep adapters as blobs.

``mind.lineage`` (an IOBTree) maps generation -> a plain record (parent,
master, runtime, adapter blob, merge YAML, dataset size, gate checks,
timings, deployed). Promotion switches what the mind serves and writes the
record in one transaction, so the image never claims a model that is not
the one serving; the previous runtime stays in the store for rollback.
Rejected nights go to ``mind.nights`` (time key -> record) with every failed
check, and change nothing the mind serves.
"""
import datetime
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from BTrees.OOBTree import OOBTree

from image.errors import ImageError
from image.keys import new_key
from mindhost import store


class LineageError(ImageError):
    """A rollback with nothing to roll back to, or a lineage record out of step."""


def _now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def adapter_tar(folder, dest) -> Path:
    """An adapter folder as one tar file (made once, outside any transaction)."""
    dest = Path(dest)
    with tarfile.open(dest, mode="w") as tar:
        for path in sorted(Path(folder).iterdir()):
            tar.add(path, arcname=path.name)
    return dest


def blob_from(path):
    """A new ZODB blob holding a copy of ``path``'s bytes.

    Made inside each attempt of a retried transaction: a blob created in an
    aborted attempt has no committed file, so reusing it on the retry fails
    with POSKeyError."""
    from ZODB.blob import Blob
    blob = Blob()
    with open(path, "rb") as src, blob.open("w") as f:
        shutil.copyfileobj(src, f, 1 << 20)
    return blob


def unpack_adapter(blob, dest) -> Path:
    """The adapter files back out of their blob."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with blob.open("r") as f, tarfile.open(fileobj=f) as tar:
        tar.extractall(dest, filter="data")
    return dest


def promote(img, mind, *, master, runtime, record, adapter=None, also=None) -> int:
    """Serve ``runtime`` (made from ``master``) as the mind's next generation; one transaction.

    ``also(root, generation)`` runs in the same transaction (the night cycle
    closes its record and marks its examples golden there)."""
    with tempfile.TemporaryDirectory(prefix="batos-adapter-") as tmp:
        tar = adapter_tar(adapter, Path(tmp) / "adapter.tar") if adapter else None
        return _promote(img, mind, master, runtime, record, tar, also)


def _promote(img, mind, master, runtime, record, tar, also):
    def write(root):
        blob = blob_from(tar) if tar else None       # a fresh blob for every attempt
        m = root[mind]
        n = m.generation + 1
        store.record_in_image(root, master)
        store.record_in_image(root, runtime)
        if m.generation in m.lineage:
            m.lineage[m.generation] = {**m.lineage[m.generation], "deployed": False}
        if n in m.lineage:                   # rolled back before: keep it among the nights
            _nights(m)[new_key(time.time())] = {**m.lineage[n], "superseded": _now()}
        m.lineage[n] = {**record, "generation": n, "parent": m.generation,
                        "master": master["id"], "runtime": runtime["id"],
                        "previous": {"model": m.model, "runtime": m.runtime},
                        "adapter": blob, "deployed": True, "promoted": _now()}
        m.model, m.runtime, m.generation = master["id"], runtime["id"], n
        if also is not None:
            also(root, n)
        return n
    return img.run(write, note=f"{mind}: generation promoted")


def _nights(m):
    if m.lookup("nights", None) is None:
        m.nights = OOBTree()
    return m.nights


def record_night(img, mind, record, also=None) -> str:
    """A night that was not promoted, with its reasons; what the mind serves is unchanged."""
    def write(root):
        m = root[mind]
        key = new_key(time.time())
        _nights(m)[key] = {**record, "generation_tried": m.generation + 1, "recorded": _now()}
        if also is not None:
            also(root, None)
        return key
    return img.run(write, note=f"{mind}: night recorded, not promoted")


def rollback(img, mind) -> dict:
    """Serve the previous generation again (its runtime is still in the store)."""
    def write(root):
        m = root[mind]
        n = m.generation
        if n == 0 or n not in m.lineage:
            raise LineageError(f"{mind} runs generation {n}; there is no earlier generation "
                               "to roll back to")
        entry = m.lineage[n]
        parent = entry["parent"]
        for rid in (entry["previous"]["model"], entry["previous"]["runtime"]):
            store.find(root, rid)            # still recorded, or a clear error
        m.lineage[n] = {**entry, "deployed": False, "rolled_back": _now()}
        if parent in m.lineage:
            m.lineage[parent] = {**m.lineage[parent], "deployed": True}
        m.model, m.runtime = entry["previous"]["model"], entry["previous"]["runtime"]
        m.generation = parent
        return {"mind": mind, "from": n, "to": parent, "runtime": m.runtime}
    return img.run(write, note=f"{mind}: rolled back")


def rows(root, mind) -> list:
    """The lineage as plain data, oldest first (adapter blobs shown by size)."""
    m = root[mind]
    out = []
    for n, entry in m.lineage.items():
        row = {k: v for k, v in entry.items() if k != "adapter"}
        blob = entry.get("adapter")
        if blob is not None:              # its size on disk, without reading it
            row["adapter_bytes"] = os.path.getsize(blob.committed())
        row["serving"] = n == m.generation
        out.append(row)
    return out
