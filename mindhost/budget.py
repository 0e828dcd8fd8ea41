"""Memory budget planner: will both minds fit, at what context, with what headroom?

From a model's shape (layers, hidden size, attention and KV heads, head dim,
MLP size, vocabulary) this computes the parameter count, the weight memory at
a precision, the KV cache per token (GQA-aware: only the KV heads are
cached) and at a context length, then totals for both minds plus the
embedding model and an OS reserve, against the machine's RAM.

Bits per weight: fp16/bf16 16; q8 8.5 and q4 4.5 (affine quantization in
groups of 64 with an fp16 scale and bias per group, as mlx-lm stores it;
GGUF Q8_0 is also 8.5). The same 8.5 bits apply to an 8-bit KV cache.
"""
import dataclasses
import json
import os
from pathlib import Path

BITS = {"fp32": 32.0, "fp16": 16.0, "bf16": 16.0, "q8": 8.5, "q4": 4.5}
KV_BITS = {"fp16": 16.0, "q8": 8.5}
GB = 1e9
EMBEDDER_BYTES = 22_713_216 * 4     # all-MiniLM-L6-v2, fp32


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied_embeddings: bool = False
    qk_norm: bool = False

    def params(self) -> int:
        """Parameters of a Llama-style decoder (GQA attention, gated MLP, RMSNorm)."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        norms = 2 * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        embed = self.vocab * self.hidden
        head = 0 if self.tied_embeddings else embed
        return self.layers * (q + kv + o + mlp + norms) + embed + head + self.hidden

    def kv_bytes_per_token(self, kv="fp16") -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * KV_BITS[kv] / 8


# Shapes from each model's published config.json (Hermes 4 70B is a Llama 3.1
# 70B, Hermes 4 14B a Qwen3 14B).
PRESETS = {s.name: s for s in (
    Shape("mistral-large-2", 32768, 12288, 88, 96, 8, 128, 28672),
    Shape("hermes-4-70b", 128256, 8192, 80, 64, 8, 128, 28672),
    Shape("hermes-4-14b", 151936, 5120, 40, 40, 8, 128, 17408, qk_norm=True),
    Shape("command-r-plus", 256000, 12288, 64, 96, 8, 128, 33792, tied_embeddings=True,
          qk_norm=True),
    Shape("smollm2-135m", 49152, 576, 30, 9, 3, 64, 1536, tied_embeddings=True),
)}


class PlanError(ValueError):
    """A model or precision the planner cannot read."""


def shape_from_config(path) -> Shape:
    """Read a Hugging Face config.json (or a model folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise PlanError(f"cannot read a model config at {p}: {e}") from e
    cfg = cfg.get("text_config", cfg)
    try:
        heads = cfg["num_attention_heads"]
        return Shape(
            name=p.parent.name, vocab=cfg["vocab_size"],
            hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"], heads=heads,
            kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            intermediate=cfg["intermediate_size"],
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qk_norm=bool(cfg.get("use_qk_norm") or cfg.get("model_type") == "qwen3"))
    except KeyError as e:
        raise PlanError(f"{p} lacks {e.args[0]!r}; is it a decoder-only LLM config?") from None


def parse_model(spec: str):
    """``NAME[:PRECISION]`` (a preset or a path) -> (Shape, precision)."""
    name, _, precision = spec.rpartition(":") if ":" in spec else (spec, "", "fp16")
    precision = (precision or "fp16").lower()
    if precision not in BITS:
        raise PlanError(f"unknown precision {precision!r} in {spec!r}; use one of {', '.join(BITS)}")
    if name in PRESETS:
        return PRESETS[name], precision
    if os.path.exists(name):
        return shape_from_config(name), precision
    raise PlanError(f"unknown model {name!r}: use a preset ({', '.join(PRESETS)}) "
                    "or the path of a model folder / config.json")


def parse_size(text: str) -> int:
    """A size in bytes. RAM is sold in binary units, so '512G' and '512GiB' are
    512 * 2**30; '512GB' is 512 * 10**9; plain numbers are bytes."""
    t = text.strip().upper()
    prefixes = {"K": 1, "M": 2, "G": 3, "T": 4}
    for suffix, base in (("IB", 1024), ("B", 1000), ("", 1024)):
        if t.endswith(suffix) and t[:len(t) - len(suffix)][-1:] in prefixes:
            number, prefix = t[:len(t) - len(suffix) - 1], t[len(t) - len(suffix) - 1]
            try:
                return int(float(number) * base ** prefixes[prefix])
            except ValueError:
                break
    try:
        return int(float(t))
    except ValueError:
        raise PlanError(f"cannot read the size {text!r}; write it like 512G, 64GiB or 500GB") from None


def machine_ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def mind_budget(shape: Shape, precision: str, context: int, kv: str) -> dict:
    params = shape.params()
    per_token = shape.kv_bytes_per_token(kv)
    weights = params * BITS[precision] / 8
    return {"model": shape.name, "precision": precision, "params": params,
            "weights_bytes": weights, "kv": kv, "kv_bytes_per_token": per_token,
            "kv_bytes": per_token * context, "total_bytes": weights + per_token * context}


def plan(orai, hermes, *, context=131072, kv="fp16", ram=None, reserve=None) -> dict:
    """The whole budget. ``orai``/``hermes`` are ``NAME[:PRECISION]`` strings."""
    if context <= 0:
        raise PlanError("context must be a positive number of tokens")
    if kv not in KV_BITS:
        raise PlanError(f"unknown KV precision {kv!r}; use fp16 or q8")
    ram = machine_ram() if ram is None else ram
    reserve = max(8 * GB, 0.10 * ram) if reserve is None else reserve
    minds = {name: mind_budget(*parse_model(spec), context, kv)
             for name, spec in (("orai", orai), ("hermes", hermes))}
    total = sum(m["total_bytes"] for m in minds.values()) + EMBEDDER_BYTES + reserve
    return {"context": context, "ram_bytes": ram, "reserve_bytes": reserve,
            "embedder_bytes": EMBEDDER_BYTES, "minds": minds, "total_bytes": total,
            "headroom_bytes": ram - total, "fits": total <= ram}


def what_q8_buys(hermes: str, context: int) -> dict:
    """The owner's question in bytes: Hermes in Q8 vs FP16, and 8-bit vs FP16 KV."""
    shape, _ = parse_model(hermes)
    fp16 = mind_budget(shape, "fp16", context, "fp16")
    q8 = mind_budget(shape, "q8", context, "fp16")
    q8kv = mind_budget(shape, "q8", context, "q8")
    return {"weights_saved_bytes": fp16["weights_bytes"] - q8["weights_bytes"],
            "kv_saved_bytes": q8["kv_bytes"] - q8kv["kv_bytes"]}
