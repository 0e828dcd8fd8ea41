"""The minds on real weights: the bundled SmolLM2 end to end, the CLI, and bad input."""
import json
import shutil
from pathlib import Path

import pytest
from conftest import batos_env, run_batos

from mindhost import minds
from mindhost.engines import get_engine

QUESTION = "What is the capital of France?"


def test_gguf_import_writes_rope_theta(smol_master):
    cfg = json.loads((Path(smol_master["path"]) / "config.json").read_text())
    assert cfg["rope_theta"] == cfg["rope_parameters"]["rope_theta"] == 100000.0
    assert smol_master["converted_from"] == "gguf" and smol_master["dtype"] == "F16"
    assert smol_master["params"] == 134_515_008
    # Importing the same GGUF again reuses the conversion.
    # (other tests may have added measured stats to its manifest meanwhile)
    again = minds.import_model(minds.bundled_gguf(), Path(smol_master["path"]).parent)
    assert (again["id"], again["path"], again["files"]) == (
        smol_master["id"], smol_master["path"], smol_master["files"])


@pytest.mark.parametrize("mind", ["orai", "hermes"])
def test_bundled_model_answers_on_torch(smol_master, model_store, mind):
    from mindhost.schema import HERMES_IDENTITY, ORAI_IDENTITY
    identity = {"orai": ORAI_IDENTITY, "hermes": HERMES_IDENTITY}[mind]
    engine = get_engine("torch")
    rec = smol_master if mind == "orai" else minds.build_runtime(smol_master, model_store, engine)
    model = engine.load(rec["path"])
    assert model.quantized == (mind == "hermes")
    answer = model.generate(minds.messages(identity, QUESTION), max_tokens=24)
    model.unload()
    assert "Paris" in answer


def test_bundled_model_answers_on_mlx(smol_master):
    """mlx-lm reads rope_theta: a sensible answer proves the GGUF import got RoPE right."""
    model = get_engine("mlx").load(smol_master["path"])
    answer = model.generate([{"role": "user", "content": QUESTION}], max_tokens=10)
    model.unload()
    assert "Paris" in answer


@pytest.mark.slow
def test_without_rope_theta_mlx_babbles(smol_master, tmp_path):
    """The brief's pitfall, shown: drop rope_theta and mlx-lm uses the wrong RoPE base."""
    bad = tmp_path / "no-rope-theta"
    shutil.copytree(smol_master["path"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    del cfg["rope_theta"]
    (bad / "config.json").write_text(json.dumps(cfg))
    model = get_engine("mlx").load(bad)
    answer = model.generate([{"role": "user", "content": QUESTION}], max_tokens=10)
    assert "The capital of France is Paris" not in answer


@pytest.fixture(scope="module")
def inited(tmp_path_factory, model_store, smol_master):
    """`batos init` on a fresh image: both minds get generation 0."""
    tmp = tmp_path_factory.mktemp("minds")
    env = batos_env(tmp, BATOS_IMAGE=str(tmp / "image"), BATOS_MODELS=str(model_store))
    proc = run_batos("init", "--json", env=env, check=True, timeout=600)
    return env, json.loads(proc.stdout), tmp


def test_init_gives_both_minds_generation_0(inited):
    env, out, _ = inited
    by_mind = {m["mind"]: m for m in out["models"]}
    assert set(by_mind) == {"orai", "hermes"}
    assert by_mind["orai"]["precision"] == "fp16" and by_mind["hermes"]["precision"] == "q8"
    assert by_mind["orai"]["master"] == by_mind["hermes"]["master"] == by_mind["orai"]["runtime"]
    assert by_mind["hermes"]["runtime"] != by_mind["hermes"]["master"]
    shown = {r["mind"]: r for r in json.loads(run_batos("mind", "show", "--json", env=env,
                                                        check=True).stdout)}
    rt = shown["hermes"]["runtime"]
    assert rt["quantization"]["bits"] == 8 and rt["engine"] == "torch"
    assert rt["stats"]["tokens_per_s"] > 0 and rt["stats"]["load_seconds"] > 0
    fp = shown["orai"]["runtime"]
    assert fp["quantization"] is None and fp["stats"]["memory_bytes"] > rt["stats"]["memory_bytes"]
    again = json.loads(run_batos("init", "--json", env=env, check=True).stdout)
    assert again["models"] == [] and again["created"] == []


@pytest.mark.parametrize("mind", ["orai", "hermes"])
def test_ask_streams_a_sensible_answer(inited, mind):
    env, _, _ = inited
    proc = run_batos("ask", mind, QUESTION, env=env, check=True)
    assert "Paris" in proc.stdout
    assert f"{mind} gen 0" in proc.stderr
    data = json.loads(run_batos("ask", mind, QUESTION, "--json", "--max-tokens", "12",
                                env=env, check=True).stdout)
    assert data["tokens"] <= 12 and data["engine"] == "torch" and data["answer"]


def test_library_warnings_go_to_the_log_not_the_terminal(inited):
    """transformers warns (FutureWarning about past_key_values) in the middle of a streamed
    answer; a user sees only the answer, the warning lands in the log file."""
    env, _, tmp = inited
    log = Path(env["BATOS_LOG_FILE"])
    log.unlink(missing_ok=True)
    proc = run_batos("ask", "orai", QUESTION, "--max-tokens", "6", env=env, check=True)
    assert "Warning" not in proc.stdout + proc.stderr, proc.stderr
    assert "past_key_values" in log.read_text()


def test_report_quant_hermes(inited):
    env, _, tmp = inited
    prompts = tmp / "prompts.txt"
    prompts.write_text("What is the capital of France?\nName a large planet.\n"
                       "Write one sentence about rain.\n")
    png = tmp / "quant.png"
    proc = run_batos("report", "quant", "hermes", "--json", "--prompts", prompts,
                     "--max-tokens", "16", "--png", png, env=env, check=True, timeout=300)
    r = json.loads(proc.stdout)
    assert r["prompts"] == 3 and r["prompt_source"] == "file" and r["tokens"] > 10
    assert 0 <= r["kl_mean"] < 0.1 and 0.5 < r["top1_agreement"] <= 1.0
    assert r["memory_bytes"]["q8"] < r["memory_bytes"]["fp16"] and r["memory_bytes"]["saved"] > 0
    assert r["tokens_per_s"]["fp16"] > 0 and r["tokens_per_s"]["ratio"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run_batos("report", "quant", "hermes", "--prompts", prompts, "--max-tokens", "8",
                      "--png", tmp / "q2.png", env=env, check=True, timeout=300).stdout
    assert "top-1 agreement" in table and "KL" in table and "speed ratio" in table


def test_report_context_hermes(inited):
    """Both weights x every KV precision on real text: the reference finds every needle at
    short lengths, its KL is 0 by definition, the others' small; the bytes held are the
    planner's."""
    env, _, tmp = inited
    png = tmp / "context.png"
    proc = run_batos("report", "context", "hermes", "--json", "--lengths", "256,512",
                     "--depths", "0.2,0.8", "--continuation", "32", "--seed", "3", "--png", png,
                     env=env, check=True, timeout=600)
    r = json.loads(proc.stdout)
    assert r["lengths"] == [256, 512] and r["depths"] == [0.2, 0.8] and r["seed"] == 3
    assert r["model_limit"] == 8192 and "Python Language Reference" in r["text_source"]
    combos = {(c["weights"], c["kv"]): c for c in r["combos"]}
    assert set(combos) == {(w, k) for w in ("master", "runtime") for k in ("fp16", "q8", "q4")}
    ref = combos[("master", "fp16")]
    assert ref["reference"] and [x["needle_recall"] for x in ref["by_length"]] == [1.0, 1.0]
    for c in r["combos"]:
        assert [x["length"] for x in c["by_length"]] == [256, 512]
        for x in c["by_length"]:
            assert set(x) >= {"kl_mean", "kl_p95", "top1_agreement", "needle_recall",
                              "needles", "tokens_per_s", "kv_bytes", "planned_kv_bytes"}
            assert len(x["needles"]) == 2 and x["tokens_per_s"] > 0
            assert abs(x["kv_ratio"] - 1) < 0.05, (c["label"], x)
            if c["reference"]:
                assert x["kl_mean"] == 0 and x["top1_agreement"] == 1.0
            else:
                assert 0 < x["kl_mean"] < 0.5 and x["top1_agreement"] > 0.5
    q8, q4 = combos[("master", "q8")]["by_length"], combos[("master", "q4")]["by_length"]
    assert all(a["kv_bytes"] > b["kv_bytes"] for a, b in zip(q8, q4))
    assert r["kv_format"]["bits_per_element"]["q8"] == 8 + 2 * r["kv_format"]["compute_bits"] / 64
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run_batos("report", "context", "hermes", "--lengths", "128", "--depths", "0.5",
                      "--continuation", "8", "--kv", "q8", "--png", tmp / "c2.png", env=env,
                      check=True, timeout=300).stdout
    assert "KL mean" in table and "needles" in table and "bits per element" in table
    assert "ref" in table and "q8" in table
    bad = run_batos("report", "context", "hermes", "--lengths", "9000", env=env)
    assert bad.returncode == 2 and "must be from 64 to" in bad.stderr and "8192" in bad.stderr
    for args, says in ((("--text", tmp / "missing.txt"), "cannot read the text"),
                       (("--depths", "0.5,2"), "from 0 to 1"), (("--kv", "q3"), "use one of"),
                       (("--lengths", "512,abc"), "comma-separated")):
        bad = run_batos("report", "context", "hermes", *args, env=env)
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)


def test_kv_setting_is_shown_and_used_by_ask(inited):
    env, _, _ = inited
    out = json.loads(run_batos("mind", "set", "hermes", "--kv", "q8", "--json", env=env,
                               check=True).stdout)
    assert out == {"mind": "hermes", "kv": "q8"}
    shown = {r["mind"]: r for r in json.loads(run_batos("mind", "show", "--json", env=env,
                                                        check=True).stdout)}
    assert shown["hermes"]["engine"]["kv"] == "q8" and shown["orai"]["engine"]["kv"] == "fp16"
    assert shown["hermes"]["generation"] == 0          # a setting, not a new generation
    data = json.loads(run_batos("ask", "hermes", QUESTION, "--json", "--max-tokens", "12",
                                env=env, check=True).stdout)
    assert data["kv"] == "q8" and "Paris" in data["answer"]
    assert "q8" in run_batos("mind", "show", env=env, check=True).stdout
    bad = run_batos("mind", "set", "hermes", "--kv", "q5", env=env)
    assert bad.returncode == 2 and "q8" in bad.stderr
    run_batos("mind", "set", "hermes", "--kv", "fp16", env=env, check=True)


# -- pointing minds at other weights, and bad input ---------------------------------------

def _env(tmp_path):
    return batos_env(tmp_path, BATOS_IMAGE=str(tmp_path / "image"),
                     BATOS_MODELS=str(tmp_path / "models"))


def test_mind_set_with_engine_override(tiny_llama, tmp_path):
    env = _env(tmp_path)
    run_batos("init", "--no-models", env=env, check=True)
    out = json.loads(run_batos("mind", "set", "hermes", "--model", tiny_llama, "--engine", "mlx",
                               "--json", env=env, check=True, timeout=300).stdout)
    assert out["engine"] == "mlx" and out["precision"] == "q8"
    shown = json.loads(run_batos("mind", "show", "hermes", "--json", env=env, check=True).stdout)[0]
    assert shown["runtime"]["quantization"]["quant_method"] == "mlx-affine"
    assert shown["engine"]["name"] == "mlx"
    data = json.loads(run_batos("ask", "hermes", "hi", "--json", "--max-tokens", "4", env=env,
                                check=True).stdout)
    assert data["engine"] == "mlx" and data["tokens"] <= 4
    # Orai keeps FP16: its runtime is its master.
    out = json.loads(run_batos("mind", "set", "orai", "--model", tiny_llama, "--json", env=env,
                               check=True).stdout)
    assert out["runtime"] == out["master"] and out["precision"] == "fp16"


def test_tampered_model_file_is_detected(tiny_llama, tmp_path):
    env = _env(tmp_path)
    run_batos("init", "--no-models", env=env, check=True)
    out = json.loads(run_batos("mind", "set", "orai", "--model", tiny_llama, "--json", env=env,
                               check=True).stdout)
    weights = tmp_path / "models" / out["runtime"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF                                  # same size, one bit pattern changed
    weights.write_bytes(bytes(data))
    proc = run_batos("ask", "orai", "hi", env=env)
    assert proc.returncode == 2 and "model.safetensors" in proc.stderr
    assert "no longer matches its manifest" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("damage", ["missing", "malformed"])
def test_malformed_model_folder_is_refused(tiny_llama, tmp_path, damage):
    env = _env(tmp_path)
    run_batos("init", "--no-models", env=env, check=True)
    before = run_batos("mind", "show", "--json", env=env, check=True).stdout
    bad = tmp_path / "bad"
    shutil.copytree(tiny_llama, bad)
    if damage == "missing":
        (bad / "config.json").unlink()
    else:
        (bad / "config.json").write_text("{not json")
    proc = run_batos("mind", "set", "orai", "--model", bad, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("no config.json" if damage == "missing" else "not valid JSON") in proc.stderr
    assert run_batos("mind", "show", "--json", env=env, check=True).stdout == before
    ask = run_batos("ask", "orai", "hi", env=env)
    assert ask.returncode == 2 and "batos init" in ask.stderr


def test_unknown_engine_is_a_clear_error(tiny_llama, tmp_path):
    env = _env(tmp_path)
    run_batos("init", "--no-models", env=env, check=True)
    proc = run_batos("mind", "set", "orai", "--model", tiny_llama, "--engine", "tpu", env=env)
    assert proc.returncode == 2 and "no engine 'tpu'" in proc.stderr


def test_console_ask_streams(folder_image, tiny_llama, tmp_path):
    import io

    from rich.console import Console as RichConsole

    from batos.console import Console
    entry = minds.install(folder_image, "orai", tiny_llama, store_dir=tmp_path / "models")
    with folder_image.view() as root:
        assert root["orai"].runtime == entry["runtime"] and root["orai"].lineage[0]["engine"] == "torch"
    buf = io.StringIO()
    con = Console(folder_image, out=RichConsole(file=buf, width=200, highlight=False))
    con.execute(":ask orai hello there")
    con.execute(":ask hermes hello")          # Hermes has no model yet: a clear error
    con.close()
    text = buf.getvalue()
    assert "tokens at" in text and "hermes has no model yet" in text


def test_report_quant_orai_measures_a_scratch_q8(tiny_llama, tmp_path):
    """Orai runs FP16: the report quantizes a scratch copy, measures it, and deploys nothing."""
    env = _env(tmp_path)
    run_batos("init", "--no-models", env=env, check=True)
    run_batos("mind", "set", "orai", "--model", tiny_llama, env=env, check=True)
    before = run_batos("mind", "show", "--json", env=env, check=True).stdout
    models_before = sorted(p.name for p in (tmp_path / "models").iterdir())
    r = json.loads(run_batos("report", "quant", "orai", "--json", "--max-tokens", "8",
                             env=env, check=True, timeout=300).stdout)
    assert r["runtime"].startswith("scratch Q8") and r["prompt_source"] == "bundled"
    assert r["prompts"] == 12 and r["kl_max"] > 0 and r["memory_bytes"]["saved"] > 0
    assert Path(r["png"]).is_file() and Path(r["png"]).parent == tmp_path / "image" / "reports"
    assert run_batos("mind", "show", "--json", env=env, check=True).stdout == before
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == models_before


def test_report_prompts_come_from_the_ledger(mem_image):
    from mindhost.quant_report import ledger_prompts
    with mem_image.transaction() as conn:
        ledger = conn.root()["hermes"].ledger
        ledger["1"] = {"prompt": "Where is Lyon?", "answer": "In France."}
        ledger["2"] = {"answer": "no prompt here"}
    with mem_image.view() as root:
        assert ledger_prompts(root, "hermes") == ["Where is Lyon?"]
        assert ledger_prompts(root, "orai") == []
