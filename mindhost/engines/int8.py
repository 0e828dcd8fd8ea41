"""The torch engine's 8-bit runtime format ("batos-int8").

A model folder like any other (config.json, model.safetensors, tokenizer),
where every linear layer's weight, and the input embedding, are int8 with one
float32 scale per output channel (symmetric, ``w ≈ q * scale``). Per-channel
scales because per-tensor ones cost far more quality (the brief measured a
last-token KL of ~0.8 nats with torch's per-tensor default).

Weight-only (W8A16): at run time on a CPU, decoding runs torch's int8
weight GEMM; on other devices the weight is dequantized per call. A tied LM head reuses the embedding's int8
rows: per-row scales of the embedding are per-channel scales of the head.
config.json carries ``quantization_config.quant_method = "batos-int8"``.
"""
import json
from pathlib import Path

import torch
from torch import nn

QUANT_METHOD = "batos-int8"
SCALE = ".scale"


def quantize_rows(w: torch.Tensor, chunk=4096):
    """int8 weights and float32 per-row scales, symmetric; ``chunk`` rows at a time (each
    row is its own, so the result is the same and the float32 copies stay small)."""
    q = torch.empty(w.shape, dtype=torch.int8)
    scale = torch.empty(w.shape[0], dtype=torch.float32)
    for i in range(0, w.shape[0], chunk):
        rows = w[i:i + chunk].float()
        s = (rows.abs().amax(dim=1) / 127.0).clamp(min=1e-10)
        q[i:i + chunk] = torch.round(rows / s[:, None]).clamp(-127, 127).to(torch.int8)
        scale[i:i + chunk] = s
    return q, scale


# torch's CPU allocator aligns every new buffer to 64 bytes, and the int8 weight GEMM's
# vector loads rely on it: a weight at an 8-byte or an input at a 16-byte boundary
# segfaults (measured on torch 2.13 with AVX-512). safetensors' tensors are not aligned.
ALIGN = 64


def packable(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if contiguous and 64-byte aligned, else a fresh (aligned) copy."""
    if t.is_contiguous() and t.data_ptr() % ALIGN == 0:
        return t
    return t.clone(memory_format=torch.contiguous_format)


def int8pack_mm(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x @ (qweight * scale).T`` through torch's private ``_weight_int8pack_mm``, called only
    under the contract its CPU kernel assumes (it checks some of it and reads memory on trust
    for the rest): 2-D bfloat16 rows, an int8 [out, in] weight, a bfloat16 [out] scale, all on
    the CPU, contiguous and 64-byte aligned. Anything else is a ValueError, never a crash."""
    if not (x.device.type == qweight.device.type == scale.device.type == "cpu"):
        raise ValueError("the int8 weight GEMM runs on the CPU only")
    if x.dim() != 2 or qweight.dim() != 2 or scale.dim() != 1:
        raise ValueError(f"int8 GEMM shapes: rows {tuple(x.shape)}, weight "
                         f"{tuple(qweight.shape)}, scale {tuple(scale.shape)}")
    if (x.dtype, qweight.dtype, scale.dtype) != (torch.bfloat16, torch.int8, torch.bfloat16):
        raise ValueError(f"int8 GEMM dtypes: {x.dtype}, {qweight.dtype}, {scale.dtype} "
                         "(bfloat16, int8, bfloat16 wanted)")
    if x.shape[1] != qweight.shape[1] or scale.shape[0] != qweight.shape[0]:
        raise ValueError(f"int8 GEMM: rows of width {x.shape[1]} against a weight "
                         f"{tuple(qweight.shape)} with {scale.shape[0]} scales")
    for name, t in (("rows", x), ("weight", qweight), ("scale", scale)):
        if not t.is_contiguous() or t.data_ptr() % ALIGN:
            raise ValueError(f"int8 GEMM: the {name} are not contiguous and {ALIGN}-byte "
                             "aligned (pass them through packable())")
    return torch.ops.aten._weight_int8pack_mm(x, qweight, scale)


class Int8Linear(nn.Module):
    """Weight-only int8 (W8A16): weights stay int8 in memory, activations keep their precision.

    Decoding (a few rows) runs torch's int8 weight GEMM with bfloat16 inputs
    (``int8pack_mm``: ~3x less memory traffic than float32 on the LM
    head); longer prompts dequantize the weight once per call and use the
    float GEMM, which is faster there. Dynamic int8 *activations* were tried
    and rejected: per-tensor activation scales break on LLM outlier channels.
    """

    DECODE_ROWS = 16

    def __init__(self, qweight, scale, bias=None):
        super().__init__()
        if qweight.dtype != torch.int8 or qweight.dim() != 2 or scale.shape != qweight.shape[:1]:
            raise ValueError(f"an int8 linear layer needs an int8 [out, in] weight and one "
                             f"scale per output row, not {qweight.dtype} {tuple(qweight.shape)} "
                             f"with scales {tuple(scale.shape)}")
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", packable(qweight), persistent=False)
        self.register_buffer("scale", scale.float(), persistent=False)
        self.register_buffer("scale_bf16", packable(scale.to(torch.bfloat16)), persistent=False)
        self.bias = None if bias is None else nn.Parameter(bias.float(), requires_grad=False)

    def forward(self, x):
        rows = x.numel() // x.shape[-1]
        if x.device.type == "cpu" and rows <= self.DECODE_ROWS:
            flat = packable(x.reshape(rows, x.shape[-1]).to(torch.bfloat16))
            y = int8pack_mm(flat, self.qweight, self.scale_bf16)
            y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        else:
            w = self.qweight.to(x.dtype) * self.scale.to(x.dtype)[:, None]
            y = nn.functional.linear(x, w)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def nbytes(self):
        return self.qweight.numel() + self.scale.numel() * 6


class Int8Embedding(nn.Module):
    def __init__(self, qweight, scale, dtype=torch.float32):
        super().__init__()
        self.register_buffer("qweight", qweight, persistent=False)
        self.register_buffer("scale", scale.float(), persistent=False)
        self.dtype = dtype

    def forward(self, ids):
        return (self.qweight[ids].to(self.dtype) * self.scale[ids][..., None].to(self.dtype))

    def nbytes(self):
        return self.qweight.numel() + self.scale.numel() * 4


def _skeleton(config):
    """The model class with parameters on 'meta' (no memory) but real buffers (RoPE)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM
    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(config)


def _linear_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def _read_config(folder):
    from transformers import AutoConfig
    raw = json.loads((Path(folder) / "config.json").read_text())
    quant = raw.pop("quantization_config", None)
    raw.pop("quantization", None)
    model_type = raw.pop("model_type")
    return quant, AutoConfig.for_model(model_type, **raw)


def _state_dict(folder):
    from safetensors.torch import load_file

    from ..tensors import Shards
    with Shards(folder) as shards:      # which files, and no name in two of them
        files = sorted(set(shards.where.values()))
    tensors = {}
    for f in files:
        tensors.update(load_file(f))
    return tensors


def quantize_folder(src, dest, progress=None, check=None) -> dict:
    """Write the batos-int8 runtime of the float model folder ``src`` into ``dest``.

    Streamed: one tensor is read, quantized and written at a time (the shards'
    layout is planned from the headers first), so memory stays a few tensors
    whatever the model's size. ``progress(n)`` after each tensor, ``check()``
    before each may raise to stop."""
    from ..tensors import Shards, ShardWriter, copy_side_files
    src, dest = Path(src), Path(dest)
    quant, config = _read_config(src)
    if quant:
        raise ValueError(f"{src} is already quantized ({quant}); quantize from the FP16 master")
    model = _skeleton(config)
    linears = set(_linear_names(model))
    embed = next(n for n, m in model.named_modules() if m is model.get_input_embeddings())
    tied = bool(getattr(config, "tie_word_embeddings", False))
    del model
    with Shards(src) as tensors:
        def quantized(name):
            module = name.rsplit(".", 1)[0]
            return name.endswith(".weight") and (module in linears or module == embed) \
                and len(tensors.shape(name)) == 2
        plan = []
        for name in tensors.names():
            if quantized(name):
                plan += [(name, "I8", tensors.shape(name)),
                         (name + SCALE, "F32", tensors.shape(name)[:1])]
            else:
                plan.append((name, tensors.info[name]["dtype"], tensors.shape(name)))
        writer = ShardWriter(dest, plan)
        try:
            for name in tensors.names():
                if check is not None:
                    check()
                t = tensors.get(name)
                if quantized(name):
                    q, s = quantize_rows(t)
                    writer.write(name, q)
                    writer.write(name + SCALE, s)
                else:
                    writer.write(name, t.contiguous())
                if progress:
                    progress(1)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        names = set(tensors.names())
    copy_side_files(src, dest)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {
        "quant_method": QUANT_METHOD, "bits": 8, "group_size": None,
        "scheme": "weight-only symmetric int8, one float32 scale per output channel",
        "modules": len([n for n in linears | {embed} if n + ".weight" in names]),
        "tied_head": tied}
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    return cfg["quantization_config"]


def is_int8_folder(folder) -> bool:
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (cfg.get("quantization_config") or {}).get("quant_method") == QUANT_METHOD


def load_int8(folder, device="cpu", dtype=torch.float32):
    """A transformers model whose linear layers and embedding run in int8."""
    _, config = _read_config(folder)
    model = _skeleton(config)
    tensors = _state_dict(folder)
    qnames = {n[: -len(SCALE)] for n in tensors if n.endswith(SCALE)}
    embed_module = model.get_input_embeddings()
    embed_name = next(n for n, m in model.named_modules() if m is embed_module)
    for wname in sorted(qnames):
        module = wname.rsplit(".", 1)[0]
        # aligned once here, so that a tied head and the embedding share one copy
        q = packable(tensors.pop(wname).to(device))
        s = tensors.pop(wname + SCALE).to(device)
        if module == embed_name:
            model.set_submodule(module, Int8Embedding(q, s, dtype))
            if getattr(config, "tie_word_embeddings", False):
                model.set_submodule("lm_head", Int8Linear(q, s))
        else:
            bias = tensors.pop(module + ".bias", None)
            model.set_submodule(module, Int8Linear(q, s, bias))
    rest = {k: v.to(device=device, dtype=dtype) for k, v in tensors.items()}
    missing = [n for n, p in model.named_parameters() if p.is_meta and n not in rest]
    if missing:
        raise ValueError(f"{folder}: the int8 checkpoint lacks {', '.join(missing[:5])}")
    model.load_state_dict(rest, strict=False, assign=True)
    if hasattr(model.config, "tie_word_embeddings"):
        model.config.tie_word_embeddings = False   # the head is already set; don't re-tie
    return model.to(device).eval()


def int8_nbytes(model) -> int:
    total, seen = 0, set()
    for m in model.modules():
        if isinstance(m, (Int8Linear, Int8Embedding)) and id(m.qweight) not in seen:
            seen.add(id(m.qweight))      # a tied head shares the embedding's rows
            total += m.nbytes()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total


def dequantize_folder(src, dest, dtype=torch.float16) -> Path:
    """The float model folder back out of a batos-int8 one (``w = q * scale``).

    Only for studying the shortcut the Gold Master protocol avoids
    (``bench/bitrot.py``): quantization error does not come back out.
    """
    from safetensors.torch import save_file
    src, dest = Path(src), Path(dest)
    if not is_int8_folder(src):
        raise ValueError(f"{src} is not a batos-int8 folder")
    tensors = _state_dict(src)
    out = {}
    for name, t in tensors.items():
        if name.endswith(SCALE):
            continue
        scale = tensors.get(name + SCALE)
        out[name] = (t.float() * scale[:, None]).to(dtype) if scale is not None \
            else t.to(dtype) if t.is_floating_point() else t
    dest.mkdir(parents=True, exist_ok=True)
    save_file(out, dest / "model.safetensors", metadata={"format": "pt"})
    from ..tensors import copy_side_files
    copy_side_files(src, dest)
    cfg = json.loads((src / "config.json").read_text())
    cfg.pop("quantization_config", None)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    return dest
