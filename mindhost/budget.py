"""Memory budget planner: will both minds fit, at what context, with what headroom?

From a model's shape (layers, hidden size, attention and KV heads, head dim,
MLP size, vocabulary) this computes the parameter count, the weight memory at
a precision, the KV cache per token (GQA-aware: only the KV heads are
cached) and at a context length, then totals for both minds plus the
embedding model and an OS reserve, against the machine's RAM.

Bits per weight: fp16/bf16 16; q8 8.5 and q4 4.5 (affine quantization in
groups of 64 with an fp16 scale and bias per group, as mlx-lm stores it;
GGUF Q8_0 is also 8.5). The KV cache uses the engines' own format
(``engines/kv.py``): 8 or 4 bits per element in groups along the head
dimension, plus a scale and a bias per group in the compute dtype, so 8.5
and 4.5 bits where the model computes in float16 (Metal, CUDA).
"""
import dataclasses
import json
import os
from pathlib import Path

from image.errors import SettingsError

from .engines.kv import KV_CHOICES, bits_per_element, group_size

BITS = {"fp32": 32.0, "fp16": 16.0, "bf16": 16.0, "q8": 8.5, "q4": 4.5}
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

    def kv_bytes_per_token(self, kv="fp16", compute_bits=16) -> float:
        """Keys and values of every layer's KV heads, as the engines hold them."""
        group = group_size(self.head_dim) if kv != "fp16" else 64
        return (2 * self.layers * self.kv_heads * self.head_dim
                * bits_per_element(kv, compute_bits, group) / 8)


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
    """The whole budget. ``orai``/``hermes`` are ``NAME[:PRECISION]`` strings; ``kv`` one
    KV precision for both, or ``{"orai": ..., "hermes": ...}``."""
    if context <= 0:
        raise PlanError("context must be a positive number of tokens")
    kvs = kv if isinstance(kv, dict) else {"orai": kv, "hermes": kv}
    for k in kvs.values():
        if k not in KV_CHOICES:
            raise PlanError(f"unknown KV precision {k!r}; use one of {', '.join(KV_CHOICES)}")
    ram = machine_ram() if ram is None else ram
    reserve = max(8 * GB, 0.10 * ram) if reserve is None else reserve
    minds = {name: mind_budget(*parse_model(spec), context, kvs[name])
             for name, spec in (("orai", orai), ("hermes", hermes))}
    total = sum(m["total_bytes"] for m in minds.values()) + EMBEDDER_BYTES + reserve
    return {"context": context, "ram_bytes": ram, "reserve_bytes": reserve,
            "embedder_bytes": EMBEDDER_BYTES, "minds": minds, "total_bytes": total,
            "headroom_bytes": ram - total, "fits": total <= ram}


def what_q8_buys(hermes: str, context: int) -> dict:
    """The owner's question in bytes: Hermes in Q8 vs FP16, and 8- or 4-bit vs FP16 KV."""
    shape, _ = parse_model(hermes)
    fp16 = mind_budget(shape, "fp16", context, "fp16")
    q8 = mind_budget(shape, "q8", context, "fp16")
    try:
        kv = {k: mind_budget(shape, "q8", context, k)["kv_bytes"] for k in KV_CHOICES}
    except SettingsError:           # heads too narrow to quantize: the cache stays fp16
        kv = dict.fromkeys(KV_CHOICES, q8["kv_bytes"])
    return {"weights_saved_bytes": fp16["weights_bytes"] - q8["weights_bytes"],
            "kv_saved_bytes": kv["fp16"] - kv["q8"], "kv_q4_saved_bytes": kv["fp16"] - kv["q4"]}


# -- the night ------------------------------------------------------------------------
# A process that has imported torch, transformers, peft and mergekit holds this much
# anonymous memory before it touches a model (measured here: 0.34 GB).
RUNTIME_BYTES = 0.35 * GB
MERGE_BYTES_PER_ELEMENT = 30     # mergekit's TIES kernel: deltas, |delta| in float32, argsort
MERGE_WORKERS = 4                # at most; night.merge runs min(4, cores) kernels at once
BIG_TENSOR = 64 * 2**20          # elements; a larger kernel runs alone (night.merge)
QUANT_CHUNK_ROWS = 4096          # the int8 requantize works this many rows at a time
TRAIN_DEFAULTS = {"batch_size": 4, "max_seq_len": 512, "rank": 8,
                  "target_modules": ("q_proj", "k_proj", "v_proj", "o_proj"),
                  "qlora": False, "base_dtype": "float16", "grad_checkpoint": False}


def _module_elements(shape: Shape) -> dict:
    h, hd = shape.hidden, shape.head_dim
    return {"q_proj": h * shape.heads * hd, "o_proj": h * shape.heads * hd,
            "k_proj": h * shape.kv_heads * hd, "v_proj": h * shape.kv_heads * hd,
            "gate_proj": h * shape.intermediate, "up_proj": h * shape.intermediate,
            "down_proj": h * shape.intermediate, "embed_tokens": shape.vocab * h,
            "lm_head": shape.vocab * h}


def _lora_params(shape: Shape, rank: int, targets) -> int:
    h, hd = shape.hidden, shape.head_dim
    dims = {"q_proj": (h, shape.heads * hd), "o_proj": (shape.heads * hd, h),
            "k_proj": (h, shape.kv_heads * hd), "v_proj": (h, shape.kv_heads * hd),
            "gate_proj": (h, shape.intermediate), "up_proj": (h, shape.intermediate),
            "down_proj": (shape.intermediate, h)}
    return shape.layers * sum(rank * sum(dims[t]) for t in targets if t in dims)


def train_bytes(shape: Shape, training=None, engine="torch") -> float:
    """LoRA training's working set: the frozen base at its stored precision (4.5 bits for
    QLoRA), resident whether mapped from its file or copied; the adapter with its gradient
    and AdamW moments (float32); the activations kept for backward at the configured batch
    and sequence length (float32 on the torch engine's CPU path, float16 on mlx; with
    ``grad_checkpoint`` only each layer's input, plus one layer recomputed); and on the
    torch CPU path the float32 copy of the widest weight, twice (forward and backward)."""
    t = {**TRAIN_DEFAULTS, **(training or {})}
    bits = 4.5 if t["qlora"] else {"float16": 16, "bfloat16": 16, "float32": 32}[t["base_dtype"]]
    weights = shape.params() * bits / 8
    adapter = _lora_params(shape, t["rank"], t["target_modules"]) * 16
    tokens = t["batch_size"] * t["max_seq_len"]
    act = 4 if engine == "torch" else 2
    # per layer per token: the block's inputs, norms, q/k/v/o, the attention rows and the
    # gated MLP's wide tensors; then the logits and what the loss keeps of them. The
    # multipliers are fitted to bench/scale.py at 0.5B, batch 4 x 512 (12.4 GB resident)
    per_layer = act * (12 * shape.hidden + 6 * shape.intermediate +
                       3 * shape.heads * t["max_seq_len"])
    layers = (shape.layers * 2 * act * shape.hidden + per_layer) if t["grad_checkpoint"] \
        else shape.layers * per_layer
    acts = tokens * (layers + 5 * 4 * shape.vocab)
    upcast = 2 * 4 * max(_module_elements(shape).values()) \
        if engine == "torch" and t["base_dtype"] != "float32" else 0
    return RUNTIME_BYTES + weights + adapter + acts + upcast


def night_steps(shape: Shape, *, training=None, engine="torch", gate_precision="q8",
                cores=None) -> dict:
    """Each night step's peak memory (bytes) for a mind on ``shape``: the streamed steps
    hold a few tensors, training and the gate a model."""
    t = {**TRAIN_DEFAULTS, **(training or {})}
    elements = _module_elements(shape)
    largest = max(elements.values())
    touched = max((elements[m] for m in t["target_modules"] if m in elements), default=0)
    workers = 1 if touched > BIG_TENSOR else min(MERGE_WORKERS, cores or os.cpu_count() or 1)
    merge = RUNTIME_BYTES + workers * MERGE_BYTES_PER_ELEMENT * touched + 3 * 2 * largest
    fuse = RUNTIME_BYTES + 2 * 2 * largest + 3 * 4 * touched
    # the widest weight read (2 bytes/element) with its int8 copy and transients: ~5 bytes
    requantize = RUNTIME_BYTES + 5 * largest + 3 * 4 * QUANT_CHUNK_ROWS * shape.hidden
    # the gate holds one generation at a time, as it serves: the torch engine on a CPU
    # computes an FP16 model in float32; int8 and mlx keep their bytes
    bits = BITS[gate_precision]
    if engine == "torch" and gate_precision in ("fp16", "bf16"):
        bits = 32.0
    # its weights, +10% for what loading and the KV cache add, and the logits it scores
    gate = RUNTIME_BYTES + 1.1 * shape.params() * bits / 8 + 3 * 4 * shape.vocab * 512
    return {"train": train_bytes(shape, t, engine), "merge": merge, "fuse": fuse,
            "requantize": requantize, "gate": gate}


NIGHT_STEPS = {"orai": ("train", "fuse", "gate"), "hermes": ("train", "merge", "requantize", "gate")}


def night_plan(orai, hermes, *, ram=None, reserve=None, engine="torch", training=None,
               cores=None) -> dict:
    """Every night step's peak for both minds, against the machine: the night runs with the
    day's runtimes unloaded, one step at a time, beside the embedder and the reserve. A step
    that does not fit is named with its shortfall (``refused``)."""
    ram = machine_ram() if ram is None else ram
    reserve = max(8 * GB, 0.10 * ram) if reserve is None else reserve
    room = ram - reserve - EMBEDDER_BYTES
    minds, refused = {}, []
    for name, spec in (("orai", orai), ("hermes", hermes)):
        shape, precision = parse_model(spec)
        peaks = night_steps(shape, training=(training or {}).get(name), engine=engine,
                            gate_precision=precision, cores=cores)
        steps = {s: peaks[s] for s in NIGHT_STEPS[name]}
        minds[name] = {"model": shape.name, "fp16_bytes": shape.params() * 2, "steps": steps}
        for step, need in steps.items():
            if need > room:
                refused.append({"mind": name, "step": step, "needs_bytes": need,
                                "short_bytes": need - room})
    return {"ram_bytes": ram, "reserve_bytes": reserve, "room_bytes": room, "engine": engine,
            "minds": minds, "refused": refused, "fits": not refused}


def check_night(shape: Shape, mind: str, *, training=None, engine="torch", precision="fp16",
                ram=None, reserve=None):
    """None if every step of ``mind``'s night fits this machine, else ``{step, reason}``."""
    ram = machine_ram() if ram is None else ram
    reserve = max(8 * GB, 0.10 * ram) if reserve is None else reserve
    room = ram - reserve - EMBEDDER_BYTES
    peaks = night_steps(shape, training=training, engine=engine, gate_precision=precision)
    for step in NIGHT_STEPS[mind]:
        if peaks[step] > room:
            return {"step": step, "reason": (
                f"{mind}'s night will not fit: {step} needs {peaks[step] / GB:.1f} GB and "
                f"{room / GB:.1f} GB is free after the reserve ({(peaks[step] - room) / GB:.1f}"
                " GB short); lower training.batch_size or max_seq_len, or run `batos plan` "
                "to see every step")}
    return None
