import json
import os
import threading

import pytest
from BTrees.OOBTree import OOBTree
from conftest import run_batos
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob

from image import SnapshotError, open_image
from image.dump import dump
from image.location import Location
from image.pack import pack
from image.snapshot import create_snapshot, get_snapshot, list_snapshots, open_at, restore_snapshot


def build(image_dir, objects=10_000, blobs=20, blob_size=1 << 20):
    img = open_image(image_dir, create=True)
    with img.transaction() as conn:
        root = conn.root()
        root["objs"] = objs = OOBTree()
        for i in range(objects):
            objs[i] = PersistentMapping(i=i, text=f"object {i}")
        root["blobs"] = PersistentMapping()
    for b in range(blobs):
        with img.transaction() as conn:
            conn.root()["blobs"][b] = Blob(os.urandom(blob_size))
    return img


def test_round_trip_while_written_to(tmp_path):
    src = tmp_path / "src"
    img = build(src)
    stop, commits = threading.Event(), []

    def writer():
        i = 0
        while not stop.is_set():
            with img.transaction() as conn:
                root = conn.root()
                root["objs"][100_000 + i] = PersistentMapping(i=i)
                with root["blobs"][i % 20].open("w") as f:      # new blob revisions too
                    f.write(os.urandom(1 << 16))
            commits.append(img.last_transaction())
            i += 1
    t = threading.Thread(target=writer)
    t.start()
    during = []

    def copying(nbytes):
        # Called while the files are being copied: wait for the writer to commit.
        if not during:
            n = len(commits)
            while len(commits) <= n:
                stop.wait(0.01)
            during.append(commits[-1])
    try:
        while len(commits) < 3:
            stop.wait(0.01)
        snap = create_snapshot(img.location, "busy", progress=copying)
    finally:
        stop.set()
        t.join()
    assert during and during[0] > snap.tid               # a commit landed mid-copy
    assert snap.manifest["objects"] >= 10_000 and snap.manifest["blobs"] == 20
    assert any(c > snap.tid for c in commits), "the writer kept committing after the cut"
    expected = dump(img.storage, snap.tid)
    assert sum(1 for v in expected.values() if v[2]) == 20
    img.close()

    result = restore_snapshot(get_snapshot(Location("folder", path=src), "busy"), tmp_path / "dst")
    restored = open_image(tmp_path / "dst")
    try:
        assert restored.last_transaction() == snap.tid
        assert dump(restored.storage) == expected
    finally:
        restored.close()
    assert result["tid"] == snap.tid.hex()


def test_manifest_contents(folder_image):
    snap = create_snapshot(folder_image.location, "m1")
    m = snap.manifest
    for key in ("tid", "tid_time", "created", "objects", "blobs", "schema_version", "files"):
        assert key in m
    assert m["schema_version"] == 1 and m["tid"] == folder_image.last_transaction().hex()
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    assert [s.name for s in list_snapshots(folder_image.location)] == ["m1"]
    with pytest.raises(SnapshotError, match="already exists"):
        create_snapshot(folder_image.location, "m1")
    with pytest.raises(SnapshotError, match="bad snapshot name"):
        create_snapshot(folder_image.location, "../evil")


def test_verify_names_every_tampered_file(tmp_path):
    img = build(tmp_path / "src", objects=10, blobs=2, blob_size=1000)
    snap = create_snapshot(img.location, "t")
    img.close()
    blob = next(p for p in snap.path.rglob("*.blob"))
    blob.write_bytes(b"tampered")
    (snap.path / "extra.txt").write_text("x")
    with pytest.raises(SnapshotError) as e:
        snap.verify()
    assert "checksum mismatch" in str(e.value) and "extra.txt: not in the manifest" in str(e.value)
    with pytest.raises(SnapshotError):
        restore_snapshot(snap, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_restore_refuses_non_empty_target_unless_forced(tmp_path, folder_image):
    snap = create_snapshot(folder_image.location, "r")
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(SnapshotError, match="--force"):
        restore_snapshot(snap, target)
    restore_snapshot(snap, target, force=True)
    assert (target / "notes.txt").read_text() == "mine"
    img = open_image(target)
    assert "orai" in img.db.open().root()
    img.close()


def test_image_at_uses_history_then_the_snapshot_copy(folder_image):
    with folder_image.transaction() as conn:
        conn.root()["orai"].mood = "then"
    snap = create_snapshot(folder_image.location, "then")
    with folder_image.transaction() as conn:
        conn.root()["orai"].mood = "now"
    img, tid, source = open_at(folder_image.location, "then")
    with img.view(at=tid) as root:
        assert root["orai"].mood == "then"
    img.close()
    assert source == "live image history"
    pack(folder_image, 0)                                 # history before now is gone
    img, tid, source = open_at(folder_image.location, "then")
    with img.view(at=tid) as root:
        assert root["orai"].mood == "then"
    img.close()
    assert source.startswith("snapshot copy")
    assert snap.verify()


def test_pack_removes_old_blob_revisions_and_spares_snapshots(tmp_path):
    img = open_image(tmp_path / "img", create=True)
    with img.transaction() as conn:
        conn.root()["doc"] = Blob(b"v1")
    snap = create_snapshot(img.location, "before")
    for v in (b"v2", b"v3"):
        with img.transaction() as conn:
            with conn.root()["doc"].open("w") as f:
                f.write(v)
    blob_files = lambda d: sorted(p.read_bytes() for p in (d / "blobs").rglob("*.blob"))
    assert blob_files(tmp_path / "img") == [b"v1", b"v2", b"v3"]
    result = pack(img, keep_days=0)
    assert blob_files(tmp_path / "img") == [b"v3"]
    assert result["after"]["blob_files"] == 1 and result["before"]["blob_files"] == 3
    with img.view() as root:
        assert root["meta"]["pack_history"][-1]["keep_days"] == 0
        with root["doc"].open() as f:
            assert f.read() == b"v3"
    img.close()
    assert snap.verify() and blob_files(snap.path) == [b"v1"]
    restore_snapshot(snap, tmp_path / "old")
    old = open_image(tmp_path / "old")
    with old.view() as root:
        with root["doc"].open() as f:
            assert f.read() == b"v1"
    old.close()


def test_pack_keeps_recent_history(tmp_path):
    img = open_image(tmp_path / "img", create=True)
    with img.transaction() as conn:
        conn.root()["doc"] = Blob(b"v1")
    with img.transaction() as conn:
        with conn.root()["doc"].open("w") as f:
            f.write(b"v2")
    pack(img, keep_days=7)
    assert len(list((tmp_path / "img" / "blobs").rglob("*.blob"))) == 2
    img.close()


def test_cli_snapshot_verbs(tmp_path, folder_image):
    folder = folder_image.location.path
    folder_image.close()
    proc = run_batos("snapshot", "create", "nightly", "--image", folder, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == "nightly"
    listed = json.loads(run_batos("snapshot", "list", "--json", "--image", folder).stdout)
    assert [r["name"] for r in listed] == ["nightly"]
    assert run_batos("snapshot", "verify", "nightly", "--image", folder).returncode == 0
    proc = run_batos("restore", "nightly", "--to", tmp_path / "copy", "--image", folder)
    assert proc.returncode == 0 and "verified" in proc.stdout
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    proc = run_batos("restore", "nightly", "--to", tmp_path / "busy", "--image", folder)
    assert proc.returncode == 2 and "--force" in proc.stderr
    proc = run_batos("snapshot", "verify", "nope", "--image", folder)
    assert proc.returncode == 2 and "no snapshot named 'nope'" in proc.stderr
    at = json.loads(run_batos("image", "at", "nightly", "--json", "--image", folder).stdout)
    assert "orai" in at["root"]
    proc = run_batos("image", "pack", "--keep-days", "0", "--image", folder)
    assert proc.returncode == 0 and "packed" in proc.stdout
    assert run_batos("snapshot", "verify", "nightly", "--image", folder).returncode == 0
