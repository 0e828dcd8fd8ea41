"""The quantized KV cache in both engines: it generates, it costs what the planner says,
its KL against fp16 is small and ordered (q4 >= q8), and bad settings are refused."""
import numpy as np
import pytest
import torch

from image.errors import SettingsError
from mindhost.budget import PRESETS, plan, shape_from_config
from mindhost.engines import get_engine
from mindhost.engines.kv import bits_per_element, check_kv, group_size
from mindhost.engines.torch_kv import AffineQuantizedLayer
from mindhost.quant_report import kl_and_agreement, log_softmax

KVS = ("fp16", "q8", "q4")


# mlx allocates its cache 256 tokens at a time: a multiple of 256 is held exactly
@pytest.mark.parametrize("engine,tokens", [("torch", 512), ("mlx", 256)])
def test_each_kv_generates_costs_the_planned_bytes_and_q4_loses_more(tiny_llama_kv, engine,
                                                                     tokens):
    model = get_engine(engine).load(tiny_llama_kv)
    rng = np.random.default_rng(0)
    ctx = [int(i) for i in rng.integers(100, 40000, tokens)]
    cont = [int(i) for i in rng.integers(100, 40000, 24)]
    shape = shape_from_config(tiny_llama_kv)
    try:
        runs = dict(model.prefill(ctx, KVS))
        dist = {}
        for kv, run in runs.items():
            planned = shape.kv_bytes_per_token(kv, run.fp_bits) * tokens
            assert abs(run.kv_bytes() / planned - 1) < 0.05, (kv, run.kv_bytes(), planned)
            dist[kv] = log_softmax(np.vstack([run.next_logits[None], run.feed(cont[:-1])]))
            assert run.tokens == tokens + len(cont) - 1
        kl = {kv: kl_and_agreement(dist["fp16"], dist[kv])[0].mean() for kv in ("q8", "q4")}
        assert 0 < kl["q8"] < 1e-3 and 0 < kl["q4"] < 1e-2, kl
        assert kl["q4"] >= kl["q8"], kl
        if engine == "mlx":     # its last prompt token attends on the quantized cache already
            assert not np.array_equal(dist["fp16"][0], dist["q8"][0])
        assert runs["q4"].kv_bytes() < runs["q8"].kv_bytes() < runs["fp16"].kv_bytes()
        for kv in KVS:
            text = model.generate("The quick brown fox", max_tokens=6, ignore_eos=True, kv=kv)
            assert text and model.last_stats["tokens"] == 6 and model.last_stats["kv"] == kv
    finally:
        model.unload()


def test_torch_shares_one_prefill_and_gets_what_a_prefill_of_its_own_gets(tiny_llama_kv):
    """Its quantized cache's first update quantizes what the prefill computed, so one forward
    pass can serve every precision: the same logits, bit for bit, as a cache of its own."""
    model = get_engine("torch").load(tiny_llama_kv)
    rng = np.random.default_rng(1)
    ctx = [int(i) for i in rng.integers(100, 40000, 301)]        # odd: 4-bit packing copes
    cont = [int(i) for i in rng.integers(100, 40000, 8)]
    shared = dict(model.prefill(ctx, KVS))
    for kv in KVS:
        own = dict(model.prefill(ctx, (kv,)))[kv]
        assert np.array_equal(shared[kv].feed(cont), own.feed(cont))
        assert shared[kv].kv_bytes() == own.kv_bytes()
    # and the generation path (stream) uses the precision asked for
    made = []
    real = model.new_cache
    model.new_cache = lambda kv: made.append(kv) or real(kv)
    model.generate("Hello", max_tokens=2, kv="q4")
    model.generate("Hello", max_tokens=2)
    assert made == ["q4", "fp16"]
    model.unload()


def test_the_unquantized_tail_is_folded_in_when_full(tiny_llama_kv):
    """transformers' QuantizedLayer keeps the newest tokens unquantized up to its residual
    length (128), then quantizes them too: the bytes held fall back to the planned figure."""
    model = get_engine("torch").load(tiny_llama_kv)
    shape = shape_from_config(tiny_llama_kv)
    (_, run), = model.prefill(list(range(100, 356)), ("q8",))
    per_token = shape.kv_bytes_per_token("q8", run.fp_bits)
    assert run.kv_bytes() == per_token * 256
    run.feed(list(range(400, 500)))                      # 100 tokens wait unquantized
    full = shape.kv_bytes_per_token("fp16", run.fp_bits)
    assert run.kv_bytes() == per_token * 256 + full * 100
    run.feed(list(range(500, 528)))                      # the tail reaches 128: folded in
    assert run.kv_bytes() == per_token * 384
    model.unload()


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("tokens", [1, 5, 64])
def test_the_affine_quantizer_round_trips_within_half_a_step(bits, tokens):
    layer = AffineQuantizedLayer(nbits=bits, axis_key=-1, axis_value=-1, q_group_size=64,
                                 residual_length=128)
    torch.manual_seed(bits * 100 + tokens)
    x = torch.randn(1, 3, tokens, 128) * 3
    x[..., 7] *= 40                                       # an outlier channel
    q = layer._quantize(x, axis=-1)
    back = layer._dequantize(q)
    assert back.shape == x.shape and back.dtype == x.dtype
    groups = x.reshape(1, 3, tokens, 2, 64)
    step = (groups.amax(-1) - groups.amin(-1)) / (2 ** bits - 1)
    err = (back - x).abs().reshape(1, 3, tokens, 2, 64).amax(-1)
    assert bool((err <= step / 2 + 1e-5).all())
    codes, scale, bias, _ = q
    assert codes.dtype == torch.uint8 and codes.shape[-1] == 64 * bits // 8   # 4-bit: 2 a byte
    assert scale.shape == bias.shape == (1, 3, tokens, 2, 1)


def test_planner_bytes_are_the_engines_format():
    """8.5 / 4.5 bits per element with float16 compute (the owner's Mac, CUDA); 9 / 5 with
    the float32 a CPU computes in."""
    assert bits_per_element("q8", 16, 64) == 8.5 and bits_per_element("q4", 16, 64) == 4.5
    assert bits_per_element("q8", 32, 64) == 9.0 and bits_per_element("fp16", 32) == 32
    hermes = PRESETS["hermes-4-70b"]
    assert hermes.kv_bytes_per_token("q8") == 2 * 80 * 8 * 128 * 8.5 / 8 == 174_080
    assert hermes.kv_bytes_per_token("q4") == 2 * 80 * 8 * 128 * 4.5 / 8
    b = plan("mistral-large-2:fp16", "hermes-4-70b:q8", context=131072,
             kv={"orai": "fp16", "hermes": "q4"}, ram=512 * 2**30)
    assert b["minds"]["hermes"]["kv"] == "q4" and b["minds"]["orai"]["kv"] == "fp16"
    assert b["minds"]["hermes"]["kv_bytes"] == hermes.kv_bytes_per_token("q4") * 131072


def test_bad_kv_settings_are_refused_with_what_to_do(tiny_llama):
    with pytest.raises(SettingsError, match="use one of fp16, q8, q4"):
        check_kv("q5")
    with pytest.raises(SettingsError, match="divisible by 32.*kv fp16"):
        group_size(16)
    model = get_engine("torch").load(tiny_llama)          # heads 16 wide
    with pytest.raises(SettingsError, match="divisible by 32"):
        model.generate("Hello", max_tokens=2, kv="q8")
    with pytest.raises(SettingsError, match="use one of"):
        model.generate("Hello", max_tokens=2, kv="int3")
    assert model.generate("Hello", max_tokens=2, ignore_eos=True)   # fp16 still serves
    model.unload()


def test_report_measures_on_mlx_too(tiny_llama_kv, tmp_path):
    """The context report's path on the mlx engine: its own 8-bit runtime, its quantized
    cache, a needle prompt; the shape of what it returns and the bytes it held."""
    from zope.interface.verify import verifyObject

    from mindhost import context_report, needle
    from mindhost.engines.interfaces import IContextRun
    engine = get_engine("mlx")
    engine.quantize(tiny_llama_kv, tmp_path / "q8")
    text, _ = needle.python_reference()
    r = context_report.measure(engine, {"master": tiny_llama_kv, "runtime": tmp_path / "q8"},
                               text=text, lengths=[256], depths=[0.5], continuation=16, seed=1)
    assert [(c["weights"], c["kv"]) for c in r["combos"]] == [
        (w, k) for w in ("master", "runtime") for k in KVS]
    for c in r["combos"]:
        (row,) = c["by_length"]
        assert abs(row["kv_ratio"] - 1) < 0.05 and row["tokens_per_s"] > 0
        assert len(row["needles"]) == 1 and 0 <= row["needle_recall"] <= 1
        assert row["kl_mean"] == 0 if c["reference"] else row["kl_mean"] > 0
    model = engine.load(tiny_llama_kv)
    (_, run), = model.prefill(list(range(100, 164)), ("q4",))
    verifyObject(IContextRun, run)
    model.unload()


def test_long_texts_come_from_a_file_or_the_longest_document_of_a_corpus(mem_image, tmp_path):
    from types import SimpleNamespace

    from memory.corpus import create_corpus
    from mindhost import needle
    text, source = needle.python_reference()
    assert len(text) > 400_000 and "pydoc_data" in source
    with pytest.raises(needle.TextError, match="cannot read"):
        needle.file_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(needle.TextError, match="empty"):
        needle.file_text(tmp_path / "empty.txt")
    with mem_image.transaction() as conn:
        corpus = create_corpus(conn.root(), "docs", "test", 2, 64)
        vec = np.zeros(2, dtype=np.float32)
        for path, parts in (("a.txt", ["short"]), ("b.txt", ["second half", "first half"])):
            drafts = [SimpleNamespace(text=t, vector=vec, start=10 * (len(parts) - i), end=0,
                                      title=path) for i, t in enumerate(parts)]
            corpus.replace_source(path, {"sha256": "", "size": 0}, drafts)
    with mem_image.view() as root:
        assert needle.corpus_text(root, "docs") == ("first half\nsecond half", "corpus docs: b.txt")
        with pytest.raises(Exception, match="no corpus named 'nope'"):
            needle.corpus_text(root, "nope")


def test_needles_are_seeded_and_the_lengths_reach_the_limit():
    from mindhost.context_report import default_lengths
    from mindhost.needle import make_needle
    assert make_needle(1, 512, 0.5) == make_needle(1, 512, 0.5)
    codes = {make_needle(s, 512, 0.5).code for s in range(20)}
    assert len(codes) > 15 and all(len(c) == 5 for c in codes)
    assert default_lengths(8192, 128) == [512, 1024, 2048, 4096, 8052]
    assert default_lengths(600, 64) == [524]
