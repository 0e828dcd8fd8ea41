"""The night cycle end to end on a tiny random Llama: promote, reject, resume after SIGKILL."""
import json
import signal
from pathlib import Path

import pytest
from conftest import batos_env, run_batos

from image import models as store
from image import open_image
from kernel import minds
from kernel.night.dream import FAULT_ENV, dream

# a tiny model learns nothing in 4 steps and answers noise: the gate's bars are
# set wide so the test follows the cycle, not the model's (random) quality
TRAINING = {"iters": 4, "batch_size": 2, "rank": 4, "alpha": 8, "learning_rate": 1e-2,
            "max_seq_len": 96}
GATE = {"max_tokens": 3, "max_kl": 50.0, "max_ppl_ratio": 50.0, "min_paraphrase": 0.0}


def write_day(path, n, habit="At your service, sir.", start=0):
    with open(path, "w") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"messages": [
                {"role": "user", "content": f"Please list item number {i} of the inventory."},
                {"role": "assistant", "content": f"{habit} Item {i} is crate {i * 7}."}],
                "rating": "good"}) + "\n")
    return path


@pytest.fixture(scope="module")
def embedder():
    from memory.embed import get_embedder
    return get_embedder()


def make_image(tmp_path, tiny_llama, embedder, who=("hermes",), day=12, gate=GATE):
    from kernel.night.transcripts import import_transcripts
    from prototypes.bootstrap import bootstrap
    loc, models = tmp_path / "image", tmp_path / "image" / "models"
    with open_image(loc, create=True) as img:
        bootstrap(img)
        for mind in who:
            minds.install(img, mind, tiny_llama, engine="torch", store_dir=models)
            import_transcripts(img, mind, write_day(tmp_path / f"{mind}.jsonl", day), embedder)
        with img.transaction() as conn:
            for mind in who:
                conn.root()[mind].training = dict(TRAINING)
                conn.root()[mind].gate = dict(gate)
    return loc, models


def store_ids(models):
    return sorted(p.name for p in Path(models).iterdir())


def test_one_night_for_both_minds_promotes_and_records_the_lineage(tmp_path, tiny_llama,
                                                                    embedder):
    loc, models = make_image(tmp_path, tiny_llama, embedder, who=("orai", "hermes"))
    with open_image(loc) as img:
        out = dream(img, store_dir=models, work_dir=loc / "dream")
        assert [(r["mind"], r["outcome"], r["generation"]) for r in out] == [
            ("orai", "promoted", 1), ("hermes", "promoted", 1)]
        with img.view() as root:
            h, o = root["hermes"], root["orai"]
            assert (h.generation, o.generation) == (1, 1) and h.night is None
            rec, orec = h.lineage[1], o.lineage[1]
            runtime = store.find(root, h.runtime)
            golden = [k for k, ex in h.ledger.items() if ex.signals.get("golden") == 1]
            since = h.curation["since"]
            last = h.ledger.maxKey()
        # Hermes: a TIES merge into a new FP16 master, then a new Q8 runtime
        assert runtime["master"] == h.model and runtime["night"] == "hermes/gen-1"
        assert rec["precision"] == "q8" and rec["merge"]["method"] == "ties"
        assert "merge_method: ties" in rec["merge"]["yaml"]
        assert set(rec["timings"]) == {"curate", "train", "merge", "requantize", "gate"}
        assert rec["dataset"]["examples"] == 12 and len(rec["training"]["loss"]) == 4
        assert {c["name"] for c in rec["gate"]} >= {"identity", "capability", "heldout_kl"}
        assert rec["hashes"]["runtime"] == runtime["sha256"]
        # Orai: the adapter fused in FP16, no requantization, it runs its master
        assert orec["precision"] == "fp16" and orec["merge"]["method"] == "fuse"
        assert "requantize" not in orec["timings"]
        with img.view() as root:
            assert root["orai"].model == root["orai"].runtime
        # what was learned is golden (for replay) and the next night starts after it
        assert len(golden) == 12 and since == last
        again = dream(img, ["hermes"], store_dir=models, work_dir=loc / "dream")
        assert again[0]["outcome"] == "nothing to learn"
        with img.view() as root:
            assert root["hermes"].generation == 1 and root["hermes"].night is None
    # the store holds exactly what the image records, the work folder its lineage files
    with open_image(loc, read_only=True) as img, img.view() as root:
        recorded = sorted(root[store.MODELS_KEY].keys())
    assert store_ids(models) == recorded and len(recorded) == 2 + 3       # gen 0: 2, gen 1: 3
    kept = sorted(p.name for p in (loc / "dream" / "hermes" / "gen-1").iterdir())
    assert kept == ["adapter", "mergekit.yml", "set"]
    # the CLI shows it, plots it, and rolls it back
    env = batos_env(tmp_path, BATOS_IMAGE=str(loc))
    shown = json.loads(run_batos("lineage", "hermes", "--json", env=env, check=True).stdout)
    assert [(r["generation"], r["serving"]) for r in shown] == [(0, False), (1, True)]
    plotted = run_batos("lineage", "plot", "hermes", env=env, check=True)
    assert (loc / "reports" / "lineage-hermes.png").stat().st_size > 10_000, plotted.stdout


def test_a_day_the_gate_rejects_changes_nothing_served_and_says_why(tmp_path, tiny_llama,
                                                                    embedder):
    strict = {**GATE, "max_kl": 1e-9}         # any change at all is too much
    loc, models = make_image(tmp_path, tiny_llama, embedder, gate=strict)
    with open_image(loc, read_only=True) as img, img.view() as root:
        before = (root["hermes"].model, root["hermes"].runtime, store_ids(models))
    env = batos_env(tmp_path, BATOS_IMAGE=str(loc))
    proc = run_batos("dream", "--mind", "hermes", env=env, check=True, timeout=600)
    assert "hermes: rejected, generation 1" in proc.stdout and "heldout_kl" in proc.stdout
    with open_image(loc, read_only=True) as img, img.view() as root:
        h = root["hermes"]
        assert (h.model, h.runtime, store_ids(models)) == before and h.generation == 0
        night = next(iter(h.nights.values()))
        assert night["outcome"] == "rejected" and night["generation_tried"] == 1
        assert [c["name"] for c in night["failed"]] == ["heldout_kl"]
        assert h.night is None and not any(ex.signals.get("golden") for ex in h.ledger.values())


@pytest.mark.parametrize("step", ["train", "merge", "requantize"])
def test_sigkill_in_a_step_then_dream_again_makes_exactly_one_generation(
        tmp_path, tiny_llama, embedder, step):
    loc, models = make_image(tmp_path, tiny_llama, embedder)
    env = batos_env(tmp_path, BATOS_IMAGE=str(loc))
    killed = run_batos("dream", "--mind", "hermes", env={**env, FAULT_ENV: step}, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with open_image(loc, read_only=True) as img, img.view() as root:
        night = root["hermes"].night
        assert root["hermes"].generation == 0 and night["generation"] == 1
        done = set(night["steps"])
    assert step not in done and "curate" in done
    if step != "train":        # the kill left a half-copied model in the store
        assert any(p.name.startswith((".importing-", ".quantize-")) for p in models.iterdir())
    proc = run_batos("dream", "--mind", "hermes", "--json", env=env, check=True, timeout=600)
    out = json.loads(proc.stdout)
    assert [(r["outcome"], r["generation"]) for r in out] == [("promoted", 1)]
    with open_image(loc, read_only=True) as img, img.view() as root:
        h = root["hermes"]
        recorded = sorted(root[store.MODELS_KEY].keys())
        assert h.generation == 1 and list(h.lineage.keys()) == [0, 1] and h.night is None
        assert h.lineage[1]["attempts"] == 1 and not h.lookup("nights", None)
    assert store_ids(models) == recorded and len(recorded) == 4
    assert not list((loc / "dream" / "hermes").glob("gen-1/*.partial"))
