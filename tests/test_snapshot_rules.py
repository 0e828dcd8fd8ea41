"""Snapshots' smaller promises, each pinned (most found by the mutation check,
bench/mutation.sh): where they live, what the manifest says, what verification and
restore refuse, and which copy `image at` opens."""
import hashlib
import json
import os
import re

import pytest
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob

from image import ImageError, MissingBlob, SnapshotError, open_image
from image.dump import walk
from image.location import DATA_FS, Location, local_dir, resolve
from image.snapshot import (
    FORMAT,
    Snapshot,
    _check_copy,
    create_snapshot,
    get_snapshot,
    last_tid_before,
    open_at,
    restore_snapshot,
    snapshot_root,
)


@pytest.fixture
def blobbed(folder_image):
    """A folder image with two blobs, one of them in two revisions."""
    img = folder_image
    with img.transaction() as conn:
        conn.root()["files"] = PersistentMapping(a=Blob(b"first a"), b=Blob(b"only b"))
    with img.transaction() as conn:
        with conn.root()["files"]["a"].open("w") as f:
            f.write(b"second a")
    return img


def _tid_of_blob_file(path):
    return bytes.fromhex(path.name.split(".")[0][2:])


def test_snapshots_live_in_the_folder_or_this_machines_place_for_the_image(tmp_path):
    folder = resolve(str(tmp_path / "img"))
    assert snapshot_root(folder) == tmp_path / "img" / "snapshots"
    zeo = resolve("zeo://127.0.0.1:9999")
    assert snapshot_root(zeo) == local_dir(zeo) / "snapshots"
    assert snapshot_root(zeo, tmp_path / "mine") == tmp_path / "mine"
    with pytest.raises(ImageError, match="memory: image lives in one process"):
        snapshot_root(resolve("memory:"))


def test_an_unknown_name_lists_the_known_ones(blobbed, tmp_path):
    with pytest.raises(SnapshotError, match=r"known: none\)"):
        get_snapshot(blobbed.location, "nope")
    create_snapshot(blobbed.location, "b")
    with blobbed.transaction() as conn:
        conn.root()["later"] = 1
    create_snapshot(blobbed.location, "a")
    with pytest.raises(SnapshotError, match=r"known: b, a\)"):      # oldest cut first
        get_snapshot(blobbed.location, "nope")


def test_the_manifest_counts_what_the_snapshot_holds(blobbed, tmp_path):
    root = tmp_path / "deep" / "er"                  # made as needed, twice over
    snap = create_snapshot(blobbed.location, "s1", root=root)
    create_snapshot(blobbed.location, "s2", root=root)
    m = snap.manifest
    assert m["format"] == FORMAT == 1 and m["source"] == str(blobbed.location.path)
    storage = blobbed.storage
    assert m["objects"] == sum(1 for _ in walk(storage, snap.tid)) and m["blobs"] == 2
    assert m["blob_files"] == 3                      # every revision up to the cut
    sizes = {rel: f["size"] for rel, f in m["files"].items()}
    assert m["bytes"] == sum(s for rel, s in sizes.items() if not rel.endswith(".layout"))
    # Data.fs is the live file's bytes up to the cut, exactly
    live = (blobbed.location.path / DATA_FS).read_bytes()[:sizes[DATA_FS]]
    assert m["files"][DATA_FS]["sha256"] == hashlib.sha256(live).hexdigest()
    # nothing else is left in it: no index or lock from the check that opened it
    on_disk = {p.relative_to(snap.path).as_posix() for p in snap.path.rglob("*") if p.is_file()}
    assert on_disk == set(m["files"]) | {"manifest.json"}
    from zope.interface.verify import verifyObject

    from image.interfaces import ISnapshot
    assert verifyObject(ISnapshot, snap)


def test_blob_revisions_after_the_cut_stay_out(blobbed):
    """A blob revision committed while the files are copied is not in the snapshot."""
    img, later = blobbed, []

    def copying(nbytes):
        if not later:
            with img.transaction() as conn:
                with conn.root()["files"]["b"].open("w") as f:
                    f.write(b"written during the copy")
            later.append(img.last_transaction())
    snap = create_snapshot(img.location, "cut", progress=copying)
    assert later and later[0] > snap.tid
    blobs = list(snap.path.rglob("*.blob"))
    assert len(blobs) == 3 and all(_tid_of_blob_file(p) <= snap.tid for p in blobs)


def test_a_blob_revision_committed_just_after_the_cut_is_chosen_stays_out(blobbed,
                                                                         monkeypatch):
    from image import snapshot as snapshot_mod
    real, later = snapshot_mod.last_tid_before, []

    def cut_then_commit(fd, end):
        tid = real(fd, end)
        with blobbed.transaction() as conn:          # lands before the blobs are listed
            with conn.root()["files"]["b"].open("w") as f:
                f.write(b"just after the cut")
        later.append(blobbed.last_transaction())
        return tid
    monkeypatch.setattr(snapshot_mod, "last_tid_before", cut_then_commit)
    snap = create_snapshot(blobbed.location, "cut")
    assert later[0] > snap.tid
    blobs = list(snap.path.rglob("*.blob"))
    assert len(blobs) == 3 and all(_tid_of_blob_file(p) <= snap.tid for p in blobs)


def test_a_current_blob_whose_file_is_gone_stops_the_snapshot_naming_its_owner(blobbed):
    with blobbed.view() as root:
        path = root["files"]["b"].committed()
        owner = root["files"]._p_oid
    os.remove(path)
    from ZODB.utils import oid_repr
    with pytest.raises(MissingBlob, match=re.escape(f"held by 'object {oid_repr(owner)}'")):
        create_snapshot(blobbed.location, "broken")
    assert not (snapshot_root(blobbed.location) / "broken").exists()


def test_a_manifest_that_is_missing_or_not_json_is_a_snapshot_error(tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(SnapshotError, match="unreadable manifest"):
        Snapshot(tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text("{not json")
    with pytest.raises(SnapshotError, match="unreadable manifest"):
        Snapshot(tmp_path / "s")


def test_verify_names_every_missing_changed_and_extra_file(blobbed):
    snap = create_snapshot(blobbed.location, "v")
    blobs = sorted(snap.path.rglob("*.blob"))
    for p in blobs[:2]:
        p.unlink()
    data = snap.path / DATA_FS
    data.write_bytes(data.read_bytes() + b"x")
    (snap.path / "zz-extra").write_text("x")          # sorts after manifest.json
    (snap.path / "aa-extra").write_text("x")
    with pytest.raises(SnapshotError) as e:
        snap.verify()
    said = str(e.value)
    for p in blobs[:2]:
        assert f"{p.relative_to(snap.path).as_posix()}: missing" in said
    want = snap.manifest["files"][DATA_FS]["sha256"]
    got = hashlib.sha256(data.read_bytes()).hexdigest()
    assert f"{DATA_FS}: checksum mismatch (expected {want[:12]}…, got {got[:12]}…)" in said
    assert "zz-extra: not in the manifest" in said and "aa-extra: not in the manifest" in said


def test_a_forced_restore_over_another_image_leaves_none_of_its_files(blobbed, tmp_path):
    snap = create_snapshot(blobbed.location, "r")
    other = tmp_path / "other"
    img = open_image(other, create=True)
    with img.transaction() as conn:
        for i in range(200):                         # a longer Data.fs, with an index
            conn.root()[f"k{i}"] = PersistentMapping(i=i)
        conn.root()["theirs"] = Blob(b"their blob")
    img.close()
    assert (other / "Data.fs.index").exists()
    restore_snapshot(snap, other, force=True)
    assert not (other / "Data.fs.index").exists()
    assert not [p for p in (other / "blobs").rglob("*.blob")
                if p.read_bytes() == b"their blob"]
    img = open_image(other)
    with img.view() as root:
        assert "k0" not in root and "theirs" not in root
        with root["files"]["a"].open() as f:
            assert f.read() == b"second a"
    img.close()


def test_a_restore_makes_its_folder_and_refuses_a_copy_that_differs(blobbed, tmp_path,
                                                                    monkeypatch):
    snap = create_snapshot(blobbed.location, "r")
    out = restore_snapshot(snap, tmp_path / "a" / "b" / "c")
    assert out["files"] == len(snap.manifest["files"]) and out["tid"] == snap.tid.hex()
    from image import snapshot as snapshot_mod
    real = snapshot_mod.copy_hashed

    blobs = sorted(rel for rel in snap.manifest["files"] if rel.endswith(".blob"))
    wrong = {blobs[0]: "0" * 64, blobs[1]: "f" * 64}         # below and above the right one

    def bad_copy(src, dest, progress):
        got = real(src, dest, progress)
        rel = src.relative_to(snap.path).as_posix()
        return {**got, "sha256": wrong[rel]} if rel in wrong else got
    monkeypatch.setattr(snapshot_mod, "copy_hashed", bad_copy)
    with pytest.raises(SnapshotError, match="copies differ from the manifest") as e:
        restore_snapshot(snap, tmp_path / "d")
    assert all(rel in str(e.value) for rel in wrong) and blobs[2] not in str(e.value)


def test_a_copy_must_end_exactly_at_the_cut(blobbed, tmp_path):
    snap = create_snapshot(blobbed.location, "c")
    tid = int.from_bytes(snap.tid, "big")
    _check_copy(snap.path, snap.tid)
    for wrong in (tid - 1, tid + 1):
        with pytest.raises(SnapshotError, match="expected"):
            _check_copy(snap.path, wrong.to_bytes(8, "big"))


def test_a_data_file_with_no_transaction_has_no_cut(tmp_path):
    for size in (0, 4):
        path = tmp_path / f"Data{size}.fs"
        path.write_bytes(b"FS21"[:size])
        with open(path, "rb") as f, pytest.raises(SnapshotError, match="no committed"):
            last_tid_before(f.fileno(), size)


def test_image_at_a_snapshot_of_the_live_images_last_state_reads_the_live_image(blobbed):
    snap = create_snapshot(blobbed.location, "now")
    blobbed.close()                                 # the live image, no newer commit
    img, tid, source = open_at(blobbed.location, "now")
    img.close()
    assert tid == snap.tid and source == "live image history"


def test_image_at_a_snapshot_newer_than_the_live_image_opens_the_snapshot_read_only(
        blobbed, tmp_path):
    snaps = tmp_path / "snaps"
    create_snapshot(blobbed.location, "old", root=snaps)
    with blobbed.transaction() as conn:
        conn.root()["files"]["c"] = Blob(b"newer")
    new = create_snapshot(blobbed.location, "new", root=snaps)
    older = tmp_path / "older"                      # the live image, put back a day
    restore_snapshot(get_snapshot(blobbed.location, "old", snaps), older)
    img, tid, source = open_at(Location("folder", path=older), "new", root=snaps)
    try:
        assert tid == new.tid and source.startswith("snapshot copy")
        assert img.read_only
        with img.view(at=tid) as root:
            assert "c" in root["files"]
    finally:
        img.close()


def test_a_database_image_is_snapshotted_through_a_verified_copy(postgres):
    url = postgres.url()
    img = open_image(url, create=True)
    with img.transaction() as conn:
        conn.root()["files"] = PersistentMapping(a=Blob(b"in the database"))
    img.close()
    snap = create_snapshot(resolve(url), "db")
    m = snap.manifest
    assert m["source"] == url and m["blobs"] == 1 and m["blob_files"] == 1
    assert m["bytes"] == sum(f["size"] for f in m["files"].values()) > 0
    assert DATA_FS in m["files"] and snap.verify()
    assert json.loads((snap.path / "manifest.json").read_text()) == m
    copy = open_image(snap.path, read_only=True)
    with copy.view() as root, root["files"]["a"].open() as f:
        assert f.read() == b"in the database"
    copy.close()
