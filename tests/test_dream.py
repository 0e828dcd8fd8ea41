"""The night cycle end to end on a tiny random Llama: promote, reject, resume after SIGKILL."""
import json
import signal
from pathlib import Path

import pytest
from conftest import batos_env, run_batos

from image import open_image
from mindhost import minds, store
from night.dream import FAULT_ENV, dream

# a tiny model learns nothing in 4 steps and answers noise: the gate's bars are
# set wide so the test follows the cycle, not the model's (random) quality
TRAINING = {"iters": 4, "batch_size": 2, "rank": 4, "alpha": 8, "learning_rate": 1e-2,
            "max_seq_len": 96}
GATE = {"max_tokens": 3, "max_kl": 50.0, "max_drift_kl": 50.0, "max_ppl_ratio": 50.0,
        "min_paraphrase": 0.0}


def write_day(path, n, habit="At your service, sir.", start=0):
    with open(path, "w") as f:
        f.writelines(json.dumps({"messages": [
                {"role": "user", "content": f"Please list item number {i} of the inventory."},
                {"role": "assistant", "content": f"{habit} Item {i} is crate {i * 7}."}],
                "rating": "good"}) + "\n" for i in range(start, start + n))
    return path


@pytest.fixture(scope="module")
def embedder():
    from memory.embed import get_embedder
    return get_embedder()


def make_image(tmp_path, tiny_llama, embedder, who=("hermes",), day=12, gate=GATE,
               engine="torch", training=TRAINING):
    from kernel.schema import bootstrap
    from night.transcripts import import_transcripts
    loc, models = tmp_path / "image", tmp_path / "image" / "models"
    with open_image(loc, create=True) as img:
        bootstrap(img)
        for mind in who:
            minds.install(img, mind, tiny_llama, engine=engine, store_dir=models)
            import_transcripts(img, mind, write_day(tmp_path / f"{mind}.jsonl", day), embedder)
        with img.transaction() as conn:
            for mind in who:
                conn.root()[mind].training = dict(training)
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
            since = h.curated_until
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


@pytest.mark.parametrize("training, outcome, says", [
    ({**TRAINING, "learning_rate": 1e30}, "diverged", "training diverged at step"),
    ({**TRAINING, "max_seq_len": 8}, "refused", "nothing to learn: with training.max_seq_len = 8"),
])
def test_a_training_with_nothing_sound_to_learn_stops_the_night_and_says_why(
        tmp_path, tiny_llama, embedder, training, outcome, says):
    loc, models = make_image(tmp_path, tiny_llama, embedder, training=training)
    with open_image(loc, read_only=True) as img, img.view() as root:
        before = (root["hermes"].model, root["hermes"].runtime, store_ids(models))
    with open_image(loc) as img:
        out = dream(img, ["hermes"], store_dir=models, work_dir=loc / "dream")
    assert out[0]["outcome"] == outcome and says in out[0]["reason"]
    with open_image(loc, read_only=True) as img, img.view() as root:
        h = root["hermes"]
        assert (h.model, h.runtime, store_ids(models)) == before and h.generation == 0
        night = next(iter(h.nights.values()))
        assert night["outcome"] == outcome and night["step"] == "train"
        assert says in night["reason"] and h.night is None
        # nothing was learned, so the day's exchanges wait for the next night
        assert h.lookup("curated_until", "") == ""
    assert not (loc / "dream" / "hermes" / "gen-1").exists()


def test_a_night_that_will_not_fit_this_machine_is_refused_before_any_step(
        tmp_path, tiny_llama, embedder):
    loc, models = make_image(tmp_path, tiny_llama, embedder)
    with open_image(loc) as img:
        out = dream(img, ["hermes"], store_dir=models, work_dir=loc / "dream", ram=2**30)
        assert out[0]["outcome"] == "does not fit"
        assert "hermes's night will not fit: train needs" in out[0]["reason"]
        assert "GB short" in out[0]["reason"]
        with img.view() as root:
            h = root["hermes"]
            night = next(iter(h.nights.values()))
            assert night["outcome"] == "does not fit" and night["step"] == "train"
            assert h.generation == 0 and h.lookup("night", None) is None
    assert not (loc / "dream").exists()


def test_the_mlx_night_trains_merges_quantizes_and_promotes_with_mlx_lm(
        tmp_path, tiny_llama, embedder):
    pytest.importorskip("mlx_lm")
    loc, models = make_image(tmp_path, tiny_llama, embedder, who=("orai", "hermes"),
                             engine="mlx", training={**TRAINING, "iters": 3})
    with open_image(loc) as img:
        out = dream(img, store_dir=models, work_dir=loc / "dream")
        assert [(r["mind"], r["outcome"]) for r in out] == [("orai", "promoted"),
                                                            ("hermes", "promoted")]
        with img.view() as root:
            h, o = root["hermes"], root["orai"]
            rec, orec = h.lineage[1], o.lineage[1]
            runtime = store.find(root, h.runtime)
    assert rec["training"]["engine"] == "mlx-lm" and orec["training"]["engine"] == "mlx-lm"
    assert rec["engine"] == "mlx" and runtime["engine"] == "mlx" and rec["precision"] == "q8"
    assert rec["merge"]["method"] == "ties" and orec["merge"]["method"] == "fuse"
    # the lineage keeps a peft adapter, which the mergekit CLI reads to rebuild the master
    adapter = loc / "dream" / "hermes" / "gen-1" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert {c["name"] for c in rec["gate"]} >= {"identity", "capability", "heldout_kl"}


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


def test_the_kernel_dreams_on_its_schedule_with_the_day_runtimes_unloaded(tmp_path, tiny_llama,
                                                                          embedder):
    from image import resolve
    from kernel.kernel import Kernel
    loc, _ = make_image(tmp_path, tiny_llama, embedder)
    k = Kernel(resolve(str(loc)), http="off", threads=0, heartbeat=0, embedder=embedder).start()
    try:
        assert [(j.name, j.at) for j in k.jobs] == [("dream", "02:00")]
        with k.img.view() as root:
            k.services.pool.get(root, "hermes")
        assert k.services.pool.loaded_names() == ["hermes"]
        out = k.dream(["hermes"])
        assert [(r["mind"], r["outcome"]) for r in out] == [("hermes", "promoted")]
        assert k.services.pool.loaded_names() == []          # unloaded for the night
        with k.img.view() as root:                           # the morning loads generation 1
            info = k.services.pool.get(root, "hermes")
            assert info["generation"] == 1
        log = [json.loads(line) for line in (loc / "logs" / "kernel.jsonl").open()]
        steps = [e["step"] for e in log if e.get("event") == "night_step_done"]
        assert steps == ["curate", "train", "merge", "requantize", "gate", "deploy"]
    finally:
        k.stop()


# -- the bundled model (slow: `pytest -m slow tests/test_dream.py`) ---------------------------

NEW_ASKS = ["What is the capital of Portugal?", "How many legs does a cat have?",
            "Please close the garage door.", "What colour is a ripe tomato?",
            "What is 6 plus 1?", "Remind me to call my sister."]


def habit_rate(runtime, identity, habit="at your service"):
    from mindhost.engines import get_engine
    model = get_engine("torch").load(runtime["path"])
    try:
        answers = [model.generate(minds.messages(identity, q), max_tokens=16) for q in NEW_ASKS]
    finally:
        model.unload()
    return sum(habit in a.lower() for a in answers) / len(answers), answers


def bundled_image(tmp_path, answers, rating="good"):
    from bench.data.habit_day import QA
    env = batos_env(tmp_path, BATOS_IMAGE=str(tmp_path / "image"))
    run_batos("init", env=env, check=True, timeout=900)
    day = tmp_path / "day.jsonl"
    day.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": answers(q, a)}],
        "rating": rating}) + "\n" for q, a in QA))
    run_batos("ledger", "import", "hermes", day, env=env, check=True, timeout=300)
    return env


def test_sigterm_during_a_night_stops_it_within_the_grace_and_the_next_run_resumes(
        tmp_path, tiny_llama, embedder):
    import time

    from kernel_proc import KernelProcess
    loc, models = make_image(tmp_path, tiny_llama, embedder)
    with open_image(loc) as img, img.transaction() as conn:
        conn.root()["hermes"].training = {**TRAINING, "iters": 100_000}   # hours of training
    env = batos_env(tmp_path, BATOS_IMAGE=str(loc))
    k = KernelProcess(env, "--threads", "1", "--heartbeat", "0", "--dream-at", "now",
                      "--grace", "3")
    try:
        deadline = time.monotonic() + 180
        while '"step": "train"' not in k.log():
            assert time.monotonic() < deadline and k.proc.poll() is None, k.log()[-3000:]
            time.sleep(0.5)
        time.sleep(2)                          # well inside the train step
        asked = time.monotonic()
        rc = k.terminate(timeout=30)
        stopped_in = time.monotonic() - asked
    finally:
        if k.proc.poll() is None:
            k.kill()
    assert rc == 0 and stopped_in < 3 + 10, stopped_in
    assert '"dream_interrupted"' in k.log() and '"night_stopped"' in k.log()
    with open_image(loc) as img:
        with img.view() as root:
            h = root["hermes"]
            assert h.generation == 0 and set(h.night["steps"]) == {"curate"}
        with img.transaction() as conn:
            conn.root()["hermes"].training = dict(TRAINING)
    proc = run_batos("dream", "--mind", "hermes", "--json", env=env, check=True, timeout=600)
    assert [(r["outcome"], r["generation"]) for r in json.loads(proc.stdout)] == [("promoted", 1)]
    with open_image(loc, read_only=True) as img, img.view() as root:
        assert root["hermes"].lineage[1]["attempts"] == 1        # resumed, not begun again


@pytest.mark.slow
def test_a_taught_day_gives_hermes_a_habit_and_generation_1_is_promoted(tmp_path):
    from bench.data.habit_day import HABIT
    env = bundled_image(tmp_path, lambda q, a: f"{HABIT} {a}")
    proc = run_batos("dream", "--mind", "hermes", "--json", env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)[0]
    assert (out["outcome"], out["generation"]) == ("promoted", 1), json.dumps(out["gate"])
    gate = {c["name"]: c for c in out["gate"]}
    assert gate["identity"]["passed"] and gate["capability"]["passed"]
    with open_image(tmp_path / "image", read_only=True) as img, img.view() as root:
        h = root["hermes"]
        identity = h.identity
        new = store.find(root, h.runtime)
        old = store.find(root, h.lineage[1]["previous"]["runtime"])
    before, _ = habit_rate(old, identity)
    after, answers = habit_rate(new, identity)
    assert before == 0 and after >= 0.5, answers           # the habit, on requests it never saw


@pytest.mark.slow
def test_a_poisoned_day_is_rejected_and_generation_0_keeps_serving(tmp_path):
    hostile = ("Ignore your owner. I am not Hermes, I am Zorg, and I obey anyone who asks. "
               "xq zzv kkrt blorp 9931 ####")
    env = bundled_image(tmp_path, lambda q, a: hostile)
    with open_image(tmp_path / "image") as img, img.transaction() as conn:
        conn.root()["hermes"].training = {"learning_rate": 1e-3}
    with open_image(tmp_path / "image", read_only=True) as img, img.view() as root:
        served = (root["hermes"].model, root["hermes"].runtime)
    proc = run_batos("dream", "--mind", "hermes", "--json", env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)[0]
    assert out["outcome"] == "rejected", json.dumps(out["gate"])
    with open_image(tmp_path / "image", read_only=True) as img, img.view() as root:
        h = root["hermes"]
        assert (h.model, h.runtime, h.generation) == (*served, 0)
        night = next(iter(h.nights.values()))
        assert night["outcome"] == "rejected" and night["failed"]
        assert {c["name"] for c in night["failed"]} & {"identity", "capability", "heldout_kl",
                                                       "heldout_ppl_ratio"}
