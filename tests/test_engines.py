"""The engines on a tiny random Llama built in the test: the interface, Q8, parity."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mindhost.engines import ENGINES, EngineError, default_engine_name, get_engine, register
from mindhost.engines.base import Detokenizer

ENGINE_NAMES = ["torch", "mlx"]
CONV = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say something about rivers."}]


@pytest.fixture(params=ENGINE_NAMES)
def engine(request):
    return get_engine(request.param)


def test_interface(engine, tiny_llama):
    m = engine.load(tiny_llama)
    try:
        text = m.chat_template(CONV)
        assert "Say something about rivers." in text and "You are terse." in text
        assert m.count_tokens("hello world") == len(m._encode("hello world")) > 0
        pieces = list(m.stream(CONV, max_tokens=12))
        stats = m.last_stats
        assert 0 < stats["tokens"] <= 12 and stats["prompt_tokens"] == m.count_tokens(text)
        assert "".join(pieces) == m.generate(CONV, max_tokens=12)      # greedy repeats
        full = m.generate(CONV, max_tokens=12, ignore_eos=True)
        assert m.last_stats["tokens"] == 12 and full.startswith("".join(pieces)[:5])
        tokens, chosen, dist = m.logprobs(text, " The river flows.", full=True)
        assert list(tokens) == m._encode(" The river flows.")
        assert np.allclose(np.exp(dist).sum(axis=1), 1.0, atol=1e-4)
        assert np.allclose(chosen, dist[np.arange(len(tokens)), tokens])
        assert (chosen <= 0).all() and m.memory_bytes() > 0
        # The greedy first token is the most likely one under logprobs.
        first = m._encode(m.generate(text, max_tokens=1, ignore_eos=True))
        _, _, d = m.logprobs(text, m.tokenizer.decode(first), full=True)
        assert d[0].argmax() == first[0]
    finally:
        m.unload()


def test_sampling_is_seeded(engine, tiny_llama):
    m = engine.load(tiny_llama)
    a = m.generate(CONV, max_tokens=10, temperature=1.0, seed=7, ignore_eos=True)
    b = m.generate(CONV, max_tokens=10, temperature=1.0, seed=7, ignore_eos=True)
    assert a == b
    m.unload()


def test_quantize_to_8_bits(engine, tiny_llama, tmp_path):
    dest = tmp_path / "q8"
    info = engine.quantize(tiny_llama, dest)
    assert info["bits"] == 8
    cfg = json.loads((dest / "config.json").read_text())
    assert cfg["quantization_config"]["bits"] == 8 and cfg["rope_theta"] == 10000.0
    fp, q8 = engine.load(tiny_llama), engine.load(dest)
    try:
        assert q8.quantized and not fp.quantized
        assert q8.memory_bytes() < fp.memory_bytes() / 2
        prompt = fp.chat_template(CONV)
        _, _, d_fp = fp.logprobs(prompt, " The river flows to the sea.", full=True)
        _, _, d_q8 = q8.logprobs(prompt, " The river flows to the sea.", full=True)
        kl = (np.exp(d_fp) * (d_fp - d_q8)).sum(axis=1)
        assert 0 < kl.max() < 0.05          # really quantized, and close
        assert q8.generate(CONV, max_tokens=8, ignore_eos=True)
    finally:
        fp.unload()
        q8.unload()


def test_engines_agree_on_the_same_weights(tiny_llama):
    """torch and mlx compute the same float model: their logits match."""
    t, m = get_engine("torch").load(tiny_llama), get_engine("mlx").load(tiny_llama)
    ids = t._encode(t.chat_template(CONV))
    assert ids == m._encode(m.chat_template(CONV))
    lt, lm = t._logits(ids), m._logits(ids)
    assert np.abs(lt - lm).max() < 1e-3 * max(1.0, np.abs(lt).max())
    assert t.generate(CONV, max_tokens=10) == m.generate(CONV, max_tokens=10)


def test_int8_rows_and_tied_head(tiny_llama, tmp_path):
    import torch

    from mindhost.engines.int8 import (
        Int8Embedding,
        Int8Linear,
        int8_nbytes,
        load_int8,
        quantize_rows,
    )
    w = torch.randn(32, 16)
    q, s = quantize_rows(w)
    assert q.dtype == torch.int8 and (q.float() * s[:, None] - w).abs().max() <= s.max() / 2 + 1e-6
    get_engine("torch").quantize(tiny_llama, tmp_path / "q8")
    model = load_int8(tmp_path / "q8")
    assert isinstance(model.lm_head, Int8Linear) and isinstance(model.get_input_embeddings(), Int8Embedding)
    assert model.lm_head.qweight is model.get_input_embeddings().qweight    # tied: one copy
    assert int8_nbytes(model) < 49152 * 64 * 2      # less than the embedding in FP16
    with pytest.raises(ValueError, match="already quantized"):
        get_engine("torch").quantize(tmp_path / "q8", tmp_path / "again")


@pytest.fixture(scope="session")
def smol_runtime(tmp_path_factory, smol_master):
    """The bundled model's batos-int8 runtime, as `batos init` makes Hermes's."""
    out = tmp_path_factory.mktemp("smol-q8") / "q8"
    get_engine("torch").quantize(smol_master["path"], out)
    return out


def test_every_runtime_linear_shape_matches_the_float_path(smol_runtime):
    """Issue 33: the int8 GEMM segfaulted on safetensors' unaligned weights for 2 to 16 rows.
    In a subprocess: a crash fails this test instead of ending the session."""
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("int8_shapes_run.py")),
                           str(smol_runtime)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"rc {proc.returncode}: {proc.stderr[-2000:]}"
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(map(tuple, r["shapes"])) == [(192, 576), (576, 576), (576, 1536),
                                                (1536, 576), (49152, 576)], r
    assert r["calls"] == 5 * 32 * 5 and r["worst"] < 0.02, r


def test_the_int8_gemm_refuses_what_its_kernel_would_misread():
    import torch

    from mindhost.engines.int8 import ALIGN, Int8Linear, int8pack_mm, packable
    q = torch.randint(-127, 127, (64, 32), dtype=torch.int8)
    s = torch.rand(64, dtype=torch.bfloat16)
    x = torch.randn(3, 32, dtype=torch.bfloat16)
    assert torch.equal(int8pack_mm(x, q, s), torch.ops.aten._weight_int8pack_mm(x, q, s))
    buf = torch.empty(64 * 32 + ALIGN, dtype=torch.int8)
    odd = buf[8:8 + 64 * 32].view(64, 32)
    odd.copy_(q)
    with pytest.raises(ValueError, match="aligned"):
        int8pack_mm(x, odd, s)
    with pytest.raises(ValueError, match="aligned"):
        int8pack_mm(x.t().contiguous().t(), q, s)          # transposed: not contiguous
    with pytest.raises(ValueError, match="dtypes"):
        int8pack_mm(x.float(), q, s)
    with pytest.raises(ValueError, match="width"):
        int8pack_mm(torch.randn(3, 16, dtype=torch.bfloat16), q, s)
    assert packable(odd).data_ptr() % ALIGN == 0 and torch.equal(packable(odd), q)
    assert packable(q) is q
    layer = Int8Linear(odd, s.float())
    assert layer.qweight.data_ptr() % ALIGN == 0
    with pytest.raises(ValueError, match="one scale per output row"):
        Int8Linear(q, s[:3].float())


def test_registry_and_selection():
    get_engine("torch")          # the built-in engines register on first use (alone in a lane too)
    with pytest.raises(ValueError, match="registered twice"):
        @register
        class Again:
            name = "torch"
    with pytest.raises(EngineError, match="no engine 'nope'"):
        get_engine("nope")
    assert set(ENGINE_NAMES) <= set(ENGINES)
    import platform
    if platform.system() == "Linux":
        assert default_engine_name() == "torch" and get_engine("auto").name == "torch"


def test_detokenizer_holds_back_half_characters():
    decode = lambda ids: bytes(ids).decode("utf-8", errors="replace")
    d = Detokenizer(decode)
    pieces = [d.add(b) for b in "né€".encode()] + [d.flush()]
    assert "".join(pieces) == "né€" and "\ufffd" not in "".join(pieces)


def test_bad_model_folders(tiny_llama, tmp_path):
    from mindhost.engines.convert import fix_rope_theta, gguf_to_folder
    from mindhost.store import ModelStoreError
    bad = tmp_path / "bad"
    shutil.copytree(tiny_llama, bad)
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EngineError, match="could not load"):
        get_engine("torch").load(bad)
    (tmp_path / "x.gguf").write_bytes(b"nope")
    with pytest.raises(ModelStoreError, match="not a GGUF file"):
        gguf_to_folder(tmp_path / "x.gguf", tmp_path / "out")
    cfg = json.loads((tiny_llama / "config.json").read_text())
    cfg.pop("rope_theta")
    cfg["rope_parameters"] = {"rope_theta": 5.0, "rope_type": "default"}
    (bad / "config.json").write_text(json.dumps(cfg))
    assert fix_rope_theta(bad) and json.loads((bad / "config.json").read_text())["rope_theta"] == 5.0
    assert not fix_rope_theta(bad)


def test_every_engine_honours_the_interface(tiny_llama):
    from scripted_engine import ScriptedEngine
    from zope.interface.verify import verifyObject

    from mindhost.engines.interfaces import IEngine, ILoadedModel
    for engine in (get_engine("torch"), get_engine("mlx"), ScriptedEngine(["hi"])):
        assert verifyObject(IEngine, engine)
        model = engine.load(tiny_llama)
        assert verifyObject(ILoadedModel, model)
        model.unload()


def test_scripted_double():
    from scripted_engine import WIDTH, ScriptedEngine, ScriptError
    model = ScriptedEngine(["Paris is the capital.", "Rome."]).load()
    assert list(model.stream(CONV)) == ["Paris", " is", " the", " capital."]
    assert model.last_stats["tokens"] == 4 and "Say something about rivers." in model.calls[0]
    assert model.generate("plain prompt", max_tokens=1) == "Rome." and model.calls[1] == "plain prompt"
    with pytest.raises(ScriptError, match="no answer left"):
        model.generate(CONV)
    echo = ScriptedEngine(lambda text: text.split()[-1]).load()
    assert echo.generate("one two three") == "three"
    tokens, lp = echo.logprobs("a b", "c d")
    assert len(tokens) == 2 and np.allclose(lp, -np.log(WIDTH))     # a fixed vocabulary
