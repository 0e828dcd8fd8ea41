"""A copy's fingerprint and what a failed copy leaves, rule by rule (the copies between
storages and the attacks on them: test_image_copy.py)."""
import os

import pytest
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob
from ZODB.utils import oid_repr, p64

from image import ImageError, open_image, resolve
from image import copy as copy_mod
from image.copy import (
    Fingerprint,
    copy_image,
    copy_transactions,
    count_transactions,
    fingerprint,
    first_difference,
)
from image.storage import open_storage


@pytest.fixture
def source(tmp_path):
    """Three transactions after the root's: a blob of 1000 bytes, then 1500, then data."""
    path = tmp_path / "src"
    img = open_image(path, create=True)
    with img.transaction(note="first") as conn:
        conn.root()["a"] = PersistentMapping(n=1)
        conn.root()["doc"] = Blob(b"x" * 1000)
    with img.transaction() as conn:
        with conn.root()["doc"].open("w") as f:
            f.write(b"y" * 1500)
    with img.transaction() as conn:
        conn.root()["a"]["n"] = 2
    img.close()
    storage, _ = open_storage(resolve(str(path)), read_only=True)
    yield storage
    storage.close()


def _truth(storage):
    txns, records = 0, []
    for t in storage.iterator():
        txns += 1
        records += [(t.tid, r.oid) for r in t]
    return txns, len(records), len({oid for _, oid in records})


def test_a_fingerprint_counts_what_the_storage_holds(source):
    ticks = []
    fp = fingerprint(source, progress=ticks.append)
    transactions, records, objects = _truth(source)
    assert (fp.transactions, fp.records, fp.objects) == (transactions, records, objects)
    assert (fp.blobs, fp.blob_bytes) == (2, 2500)            # each revision, each byte
    assert fp.last_tid == source.lastTransaction().hex() and len(fp.digest) == 64
    assert ticks == [1] * transactions and count_transactions(source) == transactions
    assert len(fp.hashes) == records
    summary = fp.summary()
    assert "hashes" not in summary and set(summary) == {
        "transactions", "records", "objects", "blobs", "blob_bytes", "last_tid", "digest"}
    assert "hashes" not in repr(fp)
    assert Fingerprint().summary() == {"transactions": 0, "records": 0, "objects": 0,
                                       "blobs": 0, "blob_bytes": 0, "last_tid": "",
                                       "digest": ""}


def test_a_fingerprint_up_to_a_tid_stops_there(source):
    tids = [t.tid for t in source.iterator()]
    fp = fingerprint(source, tids[1])
    assert fp.transactions == 2 and fp.last_tid == tids[1].hex()
    assert count_transactions(source, tids[1]) == 2


def test_a_blob_missing_from_the_storage_is_named(source):
    (oid, tid) = next((r.oid, t.tid) for t in source.iterator() for r in t
                      if copy_mod.is_blob_record(r.data))
    os.remove(source.loadBlob(oid, tid))
    with pytest.raises(ImageError, match=f"blob of object {oid_repr(oid)} at tid {tid.hex()} "
                                         "is missing from the image"):
        fingerprint(source)


def test_the_first_difference_is_named_field_record_or_metadata():
    a = Fingerprint(transactions=2, records=3, hashes=[(p64(1), p64(5), b"h1"),
                                                       (p64(2), p64(6), b"h2")], digest="d")
    assert first_difference(a, Fingerprint(**{**a.__dict__})) is None
    for key, value in (("transactions", 3), ("transactions", 1), ("last_tid", "ff")):
        b = Fingerprint(**{**a.__dict__, key: value})
        assert first_difference(a, b) == (f"{key}: {getattr(a, key)} in the source, "
                                          f"{value} in the copy")
    for changed in (b"h0", b"h9"):                    # a hash below or above the true one
        b = Fingerprint(**{**a.__dict__, "hashes": [a.hashes[0], (p64(2), p64(6), changed)]})
        assert first_difference(a, b) == (f"record {oid_repr(p64(6))} of transaction "
                                          f"{p64(2).hex()} differs")
    for digest in ("a", "z"):
        b = Fingerprint(**{**a.__dict__, "digest": digest})
        assert first_difference(a, b) == "transaction metadata (user or description) differs"


def test_text_metadata_is_bytes_whatever_it_came_as():
    assert copy_mod._text(None) == b"" and copy_mod._text("") == b""
    assert copy_mod._text("é") == "é".encode() and copy_mod._text(b"\xff") == b"\xff"


def test_copying_reports_each_transaction_once(source, tmp_path):
    from ZODB.FileStorage import FileStorage
    (tmp_path / "d").mkdir()
    dest = FileStorage(str(tmp_path / "d" / "Data.fs"), create=True,
                       blob_dir=str(tmp_path / "d" / "blobs"))
    ticks = []
    try:
        n = copy_transactions(source, dest, progress=ticks.append)
        assert n == count_transactions(source) and ticks == [1] * n
        assert first_difference(fingerprint(source), fingerprint(dest)) is None
    finally:
        dest.close()


def test_a_copy_into_a_new_folder_that_fails_leaves_no_folder_and_says_why(
        source, tmp_path, monkeypatch):
    src = resolve(str(tmp_path / "src"))
    source.close()

    def boom(*a, **kw):
        raise RuntimeError("the disk is full")
    monkeypatch.setattr(copy_mod, "copy_transactions", boom)
    with pytest.raises(RuntimeError, match="the disk is full"):   # as it was, not wrapped
        copy_image(src, resolve(str(tmp_path / "new")))
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()                     # a folder the user made is kept
    with pytest.raises(RuntimeError):
        copy_image(src, resolve(str(tmp_path / "mine")))
    assert (tmp_path / "mine").is_dir()


def test_a_copy_into_a_database_that_fails_says_to_drop_it(source, tmp_path, monkeypatch,
                                                           postgres):
    src = resolve(str(tmp_path / "src"))
    source.close()

    def boom(*a, **kw):
        raise RuntimeError("the disk is full")
    monkeypatch.setattr(copy_mod, "copy_transactions", boom)
    with pytest.raises(ImageError, match="the disk is full; .* partial copy: drop it"):
        copy_image(src, resolve(postgres.url()))


def test_an_image_in_use_is_copied_through_a_read_only_open(tmp_path):
    img = open_image(tmp_path / "live", create=True)        # held open, and locked, here
    with img.transaction() as conn:
        conn.root()["a"] = PersistentMapping(n=1)
    try:
        report = copy_image(resolve(str(tmp_path / "live")), resolve(str(tmp_path / "copy")))
        assert report["verified"]
    finally:
        img.close()
