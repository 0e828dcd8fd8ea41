"""Promotion, rollback and the lineage record, on a tiny random Llama in a real store."""
import json
import shutil

import pytest
from conftest import batos_env, run_batos

from mindhost import minds, store
from mindhost.engines import get_engine
from night.lineage import LineageError, promote, record_night, rollback, rows, unpack_adapter


@pytest.fixture
def gen0(folder_image, tiny_llama, tmp_path):
    img, models = folder_image, tmp_path / "models"
    minds.install(img, "hermes", tiny_llama, engine="torch", store_dir=models)
    return img, models


def next_master(tiny_llama, models, tmp_path):
    """A 'merged' master: the tiny model with one tensor moved."""
    import torch
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "gen1"
    shutil.copytree(tiny_llama, folder)
    path = next(folder.glob("*.safetensors"))
    t = load_file(path)
    key = next(k for k in t if "q_proj" in k)
    t[key] = t[key] + torch.full_like(t[key], 0.01)
    save_file(t, path, metadata={"format": "pt"})
    master = store.import_folder(folder, models, name="hermes-gen1")
    return master, minds.build_runtime(master, models, get_engine("torch"))


def fake_adapter(tmp_path, config, weights):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(config)
    (adapter / "adapter_model.safetensors").write_bytes(weights)
    return adapter


def test_promote_is_one_transaction_and_rollback_restores(gen0, tiny_llama, tmp_path):
    img, models = gen0
    master, runtime = next_master(tiny_llama, models, tmp_path)
    adapter = fake_adapter(tmp_path, '{"r": 4}', b"\0" * 1000)
    with img.view() as root:
        old = (root["hermes"].model, root["hermes"].runtime)
    before = img.last_transaction()
    n = promote(img, "hermes", master=master, runtime=runtime, adapter=adapter,
                record={"engine": "torch", "precision": "q8", "dataset": 30,
                        "gate": [{"name": "identity", "passed": True}]})
    assert n == 1 and len(list(img.storage.iterator(start=before))) == 2   # before + one
    with img.view() as root:
        m = root["hermes"]
        assert (m.generation, m.model, m.runtime) == (1, master["id"], runtime["id"])
        p = minds.plan(root, "hermes")
        listed = rows(root, "hermes")
        blob = m.lineage[1]["adapter"]
        got = unpack_adapter(blob, tmp_path / "back")
    assert p["record"]["id"] == runtime["id"] and minds.load(p).generate("Hi", max_tokens=2) is not None
    assert [(r["generation"], r["serving"], r.get("deployed")) for r in listed] == [
        (0, False, False), (1, True, True)]
    assert listed[1]["parent"] == 0 and listed[1]["adapter_bytes"] > 1000
    assert (got / "adapter_config.json").read_text() == '{"r": 4}'
    key = record_night(img, "hermes", {"reason": "gate: capability lost"})
    with img.view() as root:
        assert root["hermes"].nights[key]["generation_tried"] == 2 and root["hermes"].generation == 1
    out = rollback(img, "hermes")
    assert out == {"mind": "hermes", "from": 1, "to": 0, "runtime": old[1]}
    with img.view() as root:
        m = root["hermes"]
        assert (m.generation, m.model, m.runtime) == (0, *old)
        assert m.lineage[1]["rolled_back"] and m.lineage[0]["deployed"] is True
    with pytest.raises(LineageError, match="no earlier generation"):
        rollback(img, "hermes")
    promote(img, "hermes", master=master, runtime=runtime, record={"engine": "torch"})
    with img.view() as root:                  # the rolled-back record is kept, superseded
        assert any(v.get("superseded") for v in root["hermes"].nights.values())


def test_cli_lineage_and_rollback(tmp_path, tiny_llama):
    env = batos_env(tmp_path, BATOS_IMAGE=str(tmp_path / "image"),
                    BATOS_MODELS=str(tmp_path / "models"))
    run_batos("init", "--no-models", env=env, check=True)
    run_batos("mind", "set", "hermes", "--model", tiny_llama, "--engine", "torch", env=env,
              check=True, timeout=300)
    shown = json.loads(run_batos("lineage", "hermes", "--json", env=env, check=True).stdout)
    assert [r["generation"] for r in shown] == [0] and shown[0]["serving"]
    bad = run_batos("lineage", "rollback", "hermes", env=env)
    assert bad.returncode == 2 and "no earlier generation" in bad.stderr
    assert run_batos("lineage", "nobody", env=env).returncode == 2


def test_promote_retried_after_a_real_conflict_keeps_its_adapter_blob(gen0, tiny_llama,
                                                                      tmp_path):
    """Another writer commits to the mind while the promotion is in flight (a console
    `:rate`, a `mind set`): the promotion is retried and its adapter blob survives."""
    img, models = gen0
    master, runtime = next_master(tiny_llama, models, tmp_path)
    adapter = fake_adapter(tmp_path, '{"r": 8}', b"\1" * 5000)
    calls = []

    def interfere(root, generation):
        calls.append(generation)
        if len(calls) == 1:           # first attempt only: a second connection commits
            import transaction
            tm = transaction.TransactionManager()
            conn = img.db.open(tm)
            try:
                conn.root()["hermes"].temperature_note = "changed by another writer"
                tm.commit()
            finally:
                conn.close()
    n = promote(img, "hermes", master=master, runtime=runtime, adapter=adapter,
                record={"engine": "torch"}, also=interfere)
    assert n == 1 and len(calls) == 2          # it conflicted once and was retried
    with img.view() as root:
        m = root["hermes"]
        assert m.generation == 1 and m.temperature_note == "changed by another writer"
        got = unpack_adapter(m.lineage[1]["adapter"], tmp_path / "back")
    assert (got / "adapter_config.json").read_text() == '{"r": 8}'
    assert (got / "adapter_model.safetensors").read_bytes() == b"\1" * 5000
