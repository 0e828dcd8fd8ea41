"""The lineage's rules on a folder image with model records only (no weights): what a
promotion, a rejected night and a rollback write, and what they refuse. The same paths
on a real tiny model: test_lineage.py."""
import datetime
import tarfile

import pytest

from mindhost.store import ModelStoreError
from night import lineage
from night.lineage import LineageError, promote, record_night, rollback, rows, unpack_adapter


def model(name):
    return {"id": f"id-{name}", "name": name, "path": f"/store/{name}"}


@pytest.fixture
def gen0(folder_image):
    """Hermes at generation 0, served by recorded (weightless) models."""
    from mindhost import store
    img = folder_image

    def write(root):
        for rec in (model("m0"), model("r0")):
            store.record_in_image(root, rec)
        m = root["hermes"]
        m.model, m.runtime, m.generation = "id-m0", "id-r0", 0
        m.lineage[0] = {"generation": 0, "master": "id-m0", "runtime": "id-r0"}
    img.run(write)
    return img


def adapter(tmp_path, payload=b"\1" * 3000):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "b_weights.safetensors").write_bytes(payload)
    (folder / "a_config.json").write_text('{"r": 4}')
    return folder


def served(img):
    with img.view() as root:
        m = root["hermes"]
        return m.generation, m.model, m.runtime


def test_a_promotion_serves_the_new_generation_and_records_it_in_one_transaction(gen0,
                                                                                tmp_path):
    img = gen0
    before = img.last_transaction()
    seen = []
    n = promote(img, "hermes", master=model("m1"), runtime=model("r1"),
                record={"dataset": 30, "gate": [{"name": "identity", "passed": True}],
                        "accuracy": 0.9},
                adapter=adapter(tmp_path), also=lambda root, g: seen.append(
                    (g, root["hermes"].generation)))
    assert n == 1 and seen == [(1, 1)]                  # `also` sees the promotion itself
    assert len(list(img.storage.iterator(start=before))) == 2       # that one, and no other
    assert served(img) == (1, "id-m1", "id-r1")
    with img.view() as root:
        m = root["hermes"]
        rec = m.lineage[1]
        assert {k: rec[k] for k in ("generation", "parent", "master", "runtime", "dataset",
                                    "deployed")} == {
            "generation": 1, "parent": 0, "master": "id-m1", "runtime": "id-r1",
            "dataset": 30, "deployed": True}
        assert rec["previous"] == {"model": "id-m0", "runtime": "id-r0"}
        assert rec["gate"] == [{"name": "identity", "passed": True}]
        assert datetime.datetime.fromisoformat(rec["promoted"]).tzinfo is not None
        assert m.lineage[0]["deployed"] is False
        assert set(root["models"]) == {"id-m0", "id-r0", "id-m1", "id-r1"}
        got = unpack_adapter(rec["adapter"], tmp_path / "back")
        listed = rows(root, "hermes")
    assert sorted(p.name for p in got.iterdir()) == ["a_config.json", "b_weights.safetensors"]
    assert (got / "b_weights.safetensors").read_bytes() == b"\1" * 3000
    assert [(r["generation"], r["serving"]) for r in listed] == [(0, False), (1, True)]
    assert "adapter" not in listed[1] and listed[1]["adapter_bytes"] > 3000
    assert listed[1]["accuracy"] == 0.9 and listed[1]["dataset"] == 30    # the rest, kept
    assert "adapter_bytes" not in listed[0]


def test_the_adapter_tar_holds_the_folder_flat_and_in_name_order(tmp_path):
    tar = lineage.adapter_tar(adapter(tmp_path), tmp_path / "a.tar")
    with tarfile.open(tar) as t:
        assert t.getnames() == ["a_config.json", "b_weights.safetensors"]


def test_a_promotion_without_an_adapter_keeps_no_blob(gen0):
    promote(gen0, "hermes", master=model("m1"), runtime=model("r1"), record={})
    with gen0.view() as root:
        assert root["hermes"].lineage[1]["adapter"] is None
        assert "adapter_bytes" not in rows(root, "hermes")[1]


def test_a_rejected_night_changes_nothing_served(gen0):
    calls = []
    key = record_night(gen0, "hermes", {"reason": "gate: capability lost"},
                       also=lambda root, g: calls.append(g))
    assert calls == [None] and served(gen0) == (0, "id-m0", "id-r0")
    with gen0.view() as root:
        night = root["hermes"].nights[key]
        assert night["reason"] == "gate: capability lost" and night["generation_tried"] == 1
        assert datetime.datetime.fromisoformat(night["recorded"]).tzinfo is not None
        assert list(root["hermes"].lineage) == [0]
    second = record_night(gen0, "hermes", {"reason": "again"})
    with gen0.view() as root:                    # the nights table is made once, then kept
        assert list(root["hermes"].nights) == sorted([key, second])


def test_rollback_serves_the_parent_and_refuses_at_generation_zero(gen0):
    promote(gen0, "hermes", master=model("m1"), runtime=model("r1"), record={})
    out = rollback(gen0, "hermes")
    assert out == {"mind": "hermes", "from": 1, "to": 0, "runtime": "id-r0"}
    assert served(gen0) == (0, "id-m0", "id-r0")
    with gen0.view() as root:
        m = root["hermes"]
        assert m.lineage[1]["deployed"] is False and m.lineage[1]["rolled_back"]
        assert m.lineage[0]["deployed"] is True
        assert [r["serving"] for r in rows(root, "hermes")] == [True, False]
    with pytest.raises(LineageError, match="generation 0; there is no earlier"):
        rollback(gen0, "hermes")


def test_rollback_from_a_generation_with_no_record_is_refused(gen0):
    with gen0.transaction() as conn:
        conn.root()["hermes"].generation = 3
    with pytest.raises(LineageError, match="generation 3"):
        rollback(gen0, "hermes")


def test_rollback_to_a_model_no_longer_recorded_is_refused_and_changes_nothing(gen0):
    promote(gen0, "hermes", master=model("m1"), runtime=model("r1"), record={})
    with gen0.transaction() as conn:
        del conn.root()["models"]["id-r0"]
    with pytest.raises(ModelStoreError, match="r0"):
        rollback(gen0, "hermes")
    assert served(gen0) == (1, "id-m1", "id-r1")
    with gen0.view() as root:
        assert root["hermes"].lineage[1]["deployed"] is True


def test_rollback_two_generations_deep_walks_back_one_at_a_time(gen0):
    promote(gen0, "hermes", master=model("m1"), runtime=model("r1"), record={})
    promote(gen0, "hermes", master=model("m2"), runtime=model("r2"), record={})
    assert rollback(gen0, "hermes")["to"] == 1 and served(gen0) == (1, "id-m1", "id-r1")
    with gen0.view() as root:
        assert [r["deployed"] for r in rows(root, "hermes")] == [False, True, False]
    assert rollback(gen0, "hermes")["to"] == 0 and served(gen0) == (0, "id-m0", "id-r0")


def test_promoting_over_a_rolled_back_generation_keeps_it_among_the_nights(gen0):
    promote(gen0, "hermes", master=model("m1"), runtime=model("r1"), record={"note": "first"})
    rollback(gen0, "hermes")
    promote(gen0, "hermes", master=model("m2"), runtime=model("r2"), record={"note": "second"})
    with gen0.view() as root:
        m = root["hermes"]
        (old,) = m.nights.values()
        assert old["note"] == "first" and old["runtime"] == "id-r1" and old["superseded"]
        assert m.lineage[1]["note"] == "second" and m.lineage[1]["runtime"] == "id-r2"
    assert served(gen0) == (1, "id-m2", "id-r2")


def test_a_promotion_retried_after_a_conflict_makes_a_fresh_adapter_blob(gen0, tmp_path):
    calls = []

    def interfere(root, generation):
        calls.append(generation)
        if len(calls) == 1:                      # the first attempt only
            with gen0.transaction() as other:
                other.root()["hermes"].note = "another writer"
    promote(gen0, "hermes", master=model("m1"), runtime=model("r1"), record={},
            adapter=adapter(tmp_path, b"\2" * 100), also=interfere)
    assert calls == [1, 1]
    with gen0.view() as root:
        got = unpack_adapter(root["hermes"].lineage[1]["adapter"], tmp_path / "back")
        assert root["hermes"].note == "another writer"
    assert (got / "b_weights.safetensors").read_bytes() == b"\2" * 100
    with gen0.view() as root:                    # into a folder that is there already,
        blob = root["hermes"].lineage[1]["adapter"]
        assert unpack_adapter(blob, tmp_path / "back") == got
        deep = unpack_adapter(blob, tmp_path / "a" / "b")       # and one that is not, deep
    assert (deep / "b_weights.safetensors").read_bytes() == b"\2" * 100
