"""LoRA adapters as the night reads them: one weight's delta at a time, in either format.

The lineage keeps peft's format (``adapter_config.json`` +
``adapter_model.safetensors``), which the mergekit CLI reads to rebuild a
generation. mlx-lm writes its own (``adapters.safetensors``, ``lora_a``
(in, r) / ``lora_b`` (r, out), a plain ``scale``); ``mlx_to_peft`` converts it.
The delta of a weight is peft's own arithmetic, ``(B @ A) * scaling`` in float32,
so a streamed merge adds exactly what ``merge_and_unload`` adds.
"""
import json
import math
from pathlib import Path

from image.errors import ImageError

PEFT_PREFIX = "base_model.model."


class AdapterError(ImageError):
    """An adapter folder the night cannot read or merge."""


class LoraDeltas:
    """A peft LoRA folder: ``delta(weight_name)`` or None for a weight it does not touch."""

    def __init__(self, folder):
        from safetensors import safe_open
        self.folder = Path(folder)
        try:
            cfg = json.loads((self.folder / "adapter_config.json").read_text())
        except (OSError, ValueError) as e:
            raise AdapterError(f"{self.folder} is not a LoRA adapter folder ({e})") from None
        if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora"):
            raise AdapterError(f"{self.folder}: only plain LoRA adapters merge (got "
                               f"{cfg.get('peft_type')}{', DoRA' if cfg.get('use_dora') else ''})")
        if cfg.get("modules_to_save"):
            raise AdapterError(f"{self.folder} saves whole modules ({cfg['modules_to_save']}); "
                               "the night merges LoRA deltas only")
        r, alpha = cfg["r"], cfg["lora_alpha"]
        self.scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        self.fan_in_fan_out = bool(cfg.get("fan_in_fan_out"))
        path = self.folder / "adapter_model.safetensors"
        if not path.is_file():
            raise AdapterError(f"{self.folder} has no adapter_model.safetensors")
        self._file = safe_open(str(path), framework="pt")
        self.pairs = {}
        for key in self._file.keys():
            if ".lora_A." not in key:
                continue
            module = key.split(".lora_A.")[0].removeprefix(PEFT_PREFIX)
            b = key.replace(".lora_A.", ".lora_B.")
            if b not in self._file.keys():
                raise AdapterError(f"{path}: {key} has no lora_B")
            self.pairs[module + ".weight"] = (key, b)

    def targets(self):
        return set(self.pairs)

    def delta_keys(self, weight_name):
        """The adapter's (A, B) keys for ``weight_name``, or None: it leaves the weight alone."""
        return self.pairs.get(weight_name)

    def delta(self, weight_name):
        """float32 ``(B @ A) * scaling`` for ``weight_name``, or None."""
        keys = self.pairs.get(weight_name)
        if keys is None:
            return None
        a, b = (self._file.get_tensor(k).float() for k in keys)
        d = b @ a
        if self.fan_in_fan_out:
            d = d.T
        return d * self.scale


def apply_delta(weight, delta):
    """``weight`` with ``delta`` added the way peft merges (float32 sum, back to its dtype)."""
    return (weight.float() + delta).to(weight.dtype) if delta is not None else weight


def mlx_to_peft(mlx_dir, out_dir, base_model=None) -> Path:
    """An mlx-lm LoRA adapter folder as a peft one (the lineage's and mergekit's format)."""
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from safetensors.torch import save_file
    mlx_dir, out_dir = Path(mlx_dir), Path(out_dir)
    try:
        cfg = json.loads((mlx_dir / "adapter_config.json").read_text())
        weights = load_file(str(mlx_dir / "adapters.safetensors"))
    except (OSError, ValueError) as e:
        raise AdapterError(f"{mlx_dir} is not an mlx-lm adapter folder ({e})") from None
    lp = cfg.get("lora_parameters") or {}
    if cfg.get("fine_tune_type", "lora") != "lora":
        raise AdapterError(f"{mlx_dir}: a {cfg.get('fine_tune_type')} adapter; only LoRA merges")
    rank, scale = int(lp["rank"]), float(lp["scale"])
    out, modules = {}, set()
    for key, a in weights.items():
        if not key.endswith(".lora_a"):
            continue
        module = key[: -len(".lora_a")]
        b = weights[module + ".lora_b"]
        # mlx: y = x W^T + scale (x a) b, so delta = scale * (a b)^T = scale * b^T a^T
        out[f"{PEFT_PREFIX}{module}.lora_A.weight"] = torch.from_numpy(
            np.ascontiguousarray(a.T.astype(np.float32)))
        out[f"{PEFT_PREFIX}{module}.lora_B.weight"] = torch.from_numpy(
            np.ascontiguousarray(b.T.astype(np.float32)))
        modules.add(module.rsplit(".", 1)[-1])
    if not out:
        raise AdapterError(f"{mlx_dir}/adapters.safetensors holds no LoRA weights")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(out, out_dir / "adapter_model.safetensors", metadata={"format": "pt"})
    (out_dir / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": scale * rank,
        "lora_dropout": float(lp.get("dropout", 0.0)), "target_modules": sorted(modules),
        "base_model_name_or_path": str(base_model or ""), "bias": "none",
        "fan_in_fan_out": False, "use_rslora": False, "inference_mode": True}, indent=1))
    return out_dir
