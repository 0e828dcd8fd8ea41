"""Bring foreign weights into the store's layout: GGUF -> FP16 Hugging Face folder.

transformers reads the GGUF and dequantizes every tensor; we save FP16
safetensors with the tokenizer and chat template. The brief's pitfall:
transformers 5 writes ``rope_parameters`` but mlx-lm reads ``rope_theta``
and, without it, silently uses RoPE base 10000 and babbles. ``fix_rope_theta``
writes it back (mergekit's output needs the same fix).
"""
import json
import logging
import os
import shutil
from pathlib import Path

from ..store import ModelStoreError

log = logging.getLogger(__name__)


def fix_rope_theta(folder) -> bool:
    """Copy ``rope_parameters.rope_theta`` to top-level ``rope_theta``; True if it changed the file."""
    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta")
    if theta is None or cfg.get("rope_theta") == theta:
        return False
    cfg["rope_theta"] = theta
    path.write_text(json.dumps(cfg, indent=2))
    return True


def gguf_to_folder(gguf, dest, dtype="float16") -> Path:
    """Dequantize a GGUF file into an HF folder at ``dest`` (created; must not exist)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from . import quiet_offline
    quiet_offline()
    gguf, dest = Path(gguf), Path(dest)
    if not gguf.is_file():
        raise ModelStoreError(f"{gguf} is not a file; give the path of a .gguf model")
    with open(gguf, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelStoreError(f"{gguf} is not a GGUF file (no GGUF magic at its start)")
    torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                   "float32": torch.float32}[dtype]
    tmp = dest.with_name(dest.name + f".part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        log.info("dequantizing %s to %s", gguf.name, dtype)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch_dtype,
            quantization_config=GgufConfig(dequantize=True))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        del model
        fix_rope_theta(tmp)
        os.replace(tmp, dest)
    except (OSError, ValueError, KeyError) as e:
        raise ModelStoreError(f"could not convert {gguf}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
