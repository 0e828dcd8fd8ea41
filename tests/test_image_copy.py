"""`batos image copy` between storages, snapshots of a database image, and what is refused."""
import json
import os

import pytest
from conftest import batos_env, run_batos
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob

from image import ImageError, open_image, resolve
from image.copy import CopyMismatch, copy_image, fingerprint
from image.storage import open_storage


def blob_image(path, revisions=3):
    """A folder image with blobs, a blob with several revisions, and plain objects."""
    from kernel.schema import bootstrap
    img = open_image(path, create=True)
    bootstrap(img)
    for i in range(revisions):
        with img.transaction(note=f"revision {i}") as conn:
            root = conn.root()
            if "doc" not in root:
                root["doc"] = Blob()
            with root["doc"].open("w") as f:
                f.write(f"revision {i} ".encode() * (100 * (i + 1)))
            root[f"o{i}"] = PersistentMapping(i=i)
    img.close()
    return path


def grow_lineage(folder, models, tiny_llama, docs, tmp_path):
    """A folder image with hermes on the tiny Llama, a mounted corpus, and a night's lineage:
    generation 1 promoted with an adapter blob, and a night's record."""
    from test_lineage import fake_adapter, next_master

    from kernel.schema import bootstrap
    from memory import mount
    from memory.ingest import ingest
    from mindhost import minds
    from night.lineage import promote, record_night
    img = open_image(folder, create=True)
    try:
        bootstrap(img)
        minds.install(img, "hermes", tiny_llama, engine="torch", store_dir=models)
        ingest(img, "kb", [docs])
        mount.mount(img, "kb", "hermes")
        master, runtime = next_master(tiny_llama, models, tmp_path)
        promote(img, "hermes", master=master, runtime=runtime,
                adapter=fake_adapter(tmp_path, '{"r": 4}', os.urandom(5000)),
                record={"engine": "torch", "precision": "q8", "dataset": 3,
                        "gate": [{"name": "identity", "passed": True}]})
        record_night(img, "hermes", {"reason": "a night's record"})
    finally:
        img.close()


def prints(spec):
    storage, _ = open_storage(resolve(spec), read_only=True)
    try:
        return fingerprint(storage)
    finally:
        storage.close()


def test_copy_into_every_storage_and_back_keeps_every_record(tmp_path, image_spec):
    src = blob_image(tmp_path / "src")
    report = copy_image(resolve(str(src)), resolve(image_spec))
    assert report["verified"] and report["copied"] == report["source_fingerprint"]["transactions"]
    back = tmp_path / "back"
    copy_image(resolve(image_spec), resolve(str(back)))
    a, b = prints(str(src)), prints(str(back))
    assert a.hashes == b.hashes and a.digest == b.digest and a.blobs == 3
    img = open_image(image_spec)                     # the copy is an image that opens and reads
    with img.view() as root:
        with root["doc"].open() as f:
            assert f.read().startswith(b"revision 2 ")
        assert root["o1"]["i"] == 1
    img.close()


def test_into_a_non_empty_image_is_refused_and_changes_nothing(tmp_path, image_spec):
    src = blob_image(tmp_path / "src", revisions=1)
    img = open_image(image_spec, create=True)
    with img.transaction() as conn:
        conn.root()["mine"] = 1
    img.close()
    before = prints(image_spec)
    with pytest.raises(ImageError, match="already holds an image"):
        copy_image(resolve(str(src)), resolve(image_spec))
    assert prints(image_spec).hashes == before.hashes


def test_refusals_say_why(tmp_path):
    src = blob_image(tmp_path / "src", revisions=1)
    with pytest.raises(ImageError, match="same image"):
        copy_image(resolve(str(src)), resolve(str(src)))
    with pytest.raises(ImageError, match="memory:"):
        copy_image(resolve(str(src)), resolve("memory:"))
    with pytest.raises(ImageError, match="no image"):
        copy_image(resolve(str(tmp_path / "none")), resolve(str(tmp_path / "dest")))
    assert not (tmp_path / "dest").exists()


def test_a_copy_that_differs_is_caught_and_not_kept(tmp_path, monkeypatch):
    """The verification reads both sides: a record lost on the way is named."""
    import image.copy as C
    src = blob_image(tmp_path / "src")
    real = C.copy_transactions

    class Dropping:             # a source whose last transaction loses one record
        def __init__(self, storage):
            self.s = storage

        def __getattr__(self, name):
            return getattr(self.s, name)

        def iterator(self, start=None, stop=None):
            for t in self.s.iterator(start, stop):
                if t.tid != stop:
                    yield t
                    continue
                records = list(t)[:-1]

                class Short:            # the same transaction, less its last record
                    def __getattr__(self, name, t=t):
                        return getattr(t, name)

                    def __iter__(self):
                        return iter(records)
                yield Short()
    monkeypatch.setattr(C, "copy_transactions", lambda s, d, stop, tick: real(Dropping(s), d,
                                                                               stop, tick))
    with pytest.raises(CopyMismatch, match="records"):
        copy_image(resolve(str(src)), resolve(str(tmp_path / "dest")))
    assert not (tmp_path / "dest").exists()


class Tampering:
    """A source that changes one thing on the way in its last transaction: a byte of a
    record's pickle, a byte of a blob, or the transaction's description."""

    def __init__(self, storage, what, tmp):
        self.s, self.what, self.tmp = storage, what, tmp

    def __getattr__(self, name):
        return getattr(self.s, name)

    def loadBlob(self, oid, tid):
        path = self.s.loadBlob(oid, tid)
        if self.what != "blob":
            return path
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0x01
        bad = self.tmp / f"tampered-{oid.hex()}-{tid.hex()}"
        bad.write_bytes(bytes(data))
        return str(bad)

    def iterator(self, start=None, stop=None):
        from ZODB.blob import is_blob_record
        for t in self.s.iterator(start, stop):
            if t.tid != stop or self.what == "blob":
                yield t
                continue
            records = list(t)
            if self.what == "record":
                i = next(i for i, r in enumerate(records) if not is_blob_record(r.data))
                r = records[i]
                data = bytearray(r.data)
                data[len(data) // 2] ^= 0x01           # same length, one bit
                records[i] = type("Record", (), {"oid": r.oid, "tid": r.tid,
                                                 "data": bytes(data), "data_txn": r.data_txn})()

            class Changed:
                def __getattr__(self, name, t=t):
                    return getattr(t, name)

                def __iter__(self):
                    return iter(records)
            changed = Changed()
            if self.what == "metadata":
                changed.description = t.description + b" (edited)"
            yield changed


@pytest.mark.parametrize("what,named", [("record", "record .* differs"),
                                        ("blob", "record .* differs"),
                                        ("metadata", "metadata")])
def test_one_changed_byte_or_description_is_caught_and_named(tmp_path, monkeypatch, what,
                                                              named):
    """Counts and sizes agree in each case: only the per-record hash (a pickle's byte, a
    blob's byte) or the transaction digest (its description) can tell."""
    import image.copy as C
    src = blob_image(tmp_path / "src")
    real = C.copy_transactions
    monkeypatch.setattr(C, "copy_transactions", lambda s, d, stop, tick: real(
        Tampering(s, what, tmp_path), d, stop, tick))
    with pytest.raises(CopyMismatch, match=named):
        copy_image(resolve(str(src)), resolve(str(tmp_path / "dest")))
    assert not (tmp_path / "dest").exists()


def test_missing_blob_in_the_source_is_named(tmp_path):
    src = blob_image(tmp_path / "src", revisions=1)
    for dirpath, _, files in os.walk(src / "blobs"):
        for f in files:
            if f.endswith(".blob"):
                os.unlink(os.path.join(dirpath, f))
    with pytest.raises(ImageError, match="blob of object .* is missing"):
        copy_image(resolve(str(src)), resolve(str(tmp_path / "dest")))
    assert not (tmp_path / "dest").exists()


def test_snapshot_of_a_database_image_is_a_verified_filestorage_folder(tmp_path, postgres):
    from image import snapshot as snap
    url = postgres.url()
    copy_image(resolve(str(blob_image(tmp_path / "src"))), resolve(url))
    s = snap.create_snapshot(resolve(url), "s1", root=tmp_path / "snaps")
    assert s.verify() and s.manifest["blobs"] == 1 and s.manifest["blob_files"] == 3
    assert [x.name for x in snap.list_snapshots(resolve(url), tmp_path / "snaps")] == ["s1"]
    restored = snap.restore_snapshot(s, tmp_path / "restored")
    assert prints(restored["to"]).hashes == prints(url).hashes


def test_cli_round_trip_of_an_image_with_minds_memory_and_lineage(tmp_path, postgres,
                                                                  tiny_llama, docs):
    """The acceptance path: into PostgreSQL and back, identical records and blob bytes;
    the minds answer from the PostgreSQL image with the models folder beside."""
    folder = tmp_path / "image"
    models = tmp_path / "models"
    grow_lineage(folder, models, tiny_llama, docs, tmp_path)
    url = postgres.url()
    env = batos_env(tmp_path, BATOS_MODELS=str(models))
    out = run_batos("image", "copy", folder, url, "--json", env=env, check=True, timeout=300)
    report = json.loads(out.stdout)
    assert report["verified"] and report["copy_fingerprint"]["blobs"] >= 1
    run_batos("image", "copy", url, tmp_path / "back", env=env, check=True, timeout=300)
    a, b = prints(str(folder)), prints(str(tmp_path / "back"))
    assert a.hashes == b.hashes and a.blob_bytes == b.blob_bytes
    shown = json.loads(run_batos("lineage", "hermes", "--json", "--image", url, env=env,
                                 check=True).stdout)
    assert [r["generation"] for r in shown] == [0, 1]
    hits = json.loads(run_batos("memory", "search", "kb", "glacier ice flow", "--json",
                                "--image", url, env=env, check=True, timeout=300).stdout)
    assert hits and "glacier" in json.dumps(hits).lower()
    info = json.loads(run_batos("info", "--json", "--image", url, env=env, check=True).stdout)
    assert info["kind"] == "postgresql" and info["objects"] > 50
    asked = json.loads(run_batos("ask", "hermes", "Hi", "--max-tokens", "3", "--json",
                                 "--image", url, env=env, check=True, timeout=300).stdout)
    assert asked["answer"] is not None                 # generation 1's runtime answers
    night = run_batos("dream", "--dry-run", "--json", "--image", url, env=env, check=True,
                      timeout=300)
    assert "hermes" in night.stdout
