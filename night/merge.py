"""Merge a night's adapter into the FP16 Gold Master with mergekit (TIES).

The generation-0 base is the golden anchor (``base_model``): task vectors
are taken against it and trimmed to ``density`` each night, so the lineage
cannot drift from it without bound. The tuned model is mergekit's own
``MASTER+ADAPTER`` reference, so the saved YAML rebuilds the generation with
the mergekit CLI alone (``mergekit-yaml mergekit.yml OUT --lora-merge-cache
DIR``). Never merges into, or from, a quantized model.
"""
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from image.errors import ImageError
from prototypes import settings as st

log = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class MergeSettings:
    """A mind's ``merge`` slot; the owner's defaults."""
    method: str = "ties"            # a mergekit merge method; the night is built for TIES
    density: float = st.number(0.3, min=0.0, max=1.0)
    weight: float = st.number(0.5, min=0.0)
    normalize: bool = True
    int8_mask: bool = True
    dtype: str = st.choice("float16", ("float16", "bfloat16", "float32"))


DEFAULTS = st.defaults(MergeSettings)


class MergeError(ImageError):
    """A merge that must not (a quantized input) or cannot run."""


def merge_config(anchor, master, adapter, settings=None) -> dict:
    """The mergekit configuration (plain data) for one night."""
    s = st.plain(st.check(MergeSettings, settings, where="merge"))
    params = {"density": s["density"], "weight": s["weight"]}
    models = [{"model": f"{master}+{adapter}", "parameters": dict(params)}]
    if Path(master).resolve() != Path(anchor).resolve():
        # the master's own delta from the anchor takes part, trimmed like the new one
        models.insert(0, {"model": str(master), "parameters": dict(params)})
    return {"merge_method": s["method"], "base_model": str(anchor), "models": models,
            "parameters": {"normalize": s["normalize"], "int8_mask": s["int8_mask"]},
            "dtype": s["dtype"]}


def check_fp(folder, role):
    """Refuse a quantized model folder (the brief: never fuse into a quantized base)."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    q = cfg.get("quantization_config") or cfg.get("quantization")
    if q:
        raise MergeError(f"the {role} at {folder} is quantized ({q}); merges run on FP16 "
                         "masters only: point at the mind's master, not its runtime")


def run_merge(config: dict, out_dir, cache_dir) -> dict:
    """Run mergekit on ``config`` into ``out_dir``; save the YAML and the command beside it."""
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge as mergekit_run
    from mergekit.options import MergeOptions

    from mindhost.engines import quiet_offline
    from mindhost.engines.convert import fix_rope_theta
    quiet_offline()
    check_fp(config["base_model"], "golden anchor")
    for m in config["models"]:
        check_fp(m["model"].split("+")[0], "master")
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)              # a half-written merge from an interrupted night
    text = yaml.safe_dump(config, sort_keys=False)
    started = time.perf_counter()
    try:
        mergekit_run(MergeConfiguration.model_validate(config), str(out_dir),
                     MergeOptions(lora_merge_cache=str(cache_dir), quiet=True,
                                  write_model_card=False, random_seed=0),
                     config_source=text)
    except Exception as e:              # mergekit raises many kinds; say which merge failed
        raise MergeError(f"mergekit failed: {type(e).__name__}: {e}") from e
    fix_rope_theta(out_dir)
    (out_dir / "mergekit.yml").write_text(text)
    command = f"mergekit-yaml mergekit.yml OUT --lora-merge-cache {cache_dir}"
    seconds = round(time.perf_counter() - started, 2)
    log.info("merged into %s in %.1f s", out_dir, seconds, extra={"event": "merge",
                                                                  "seconds": seconds})
    return {"config": config, "yaml": text, "command": command, "seconds": seconds}


def fuse_adapter(master, adapter, out_dir) -> dict:
    """Orai's path: the adapter fused into its FP16 master (peft), saved as FP16.

    Orai is not requantized, so there is no Gold Master protocol to keep: the
    fused FP16 model is both its next master and what it runs.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mindhost.engines import quiet_offline
    from mindhost.engines.convert import fix_rope_theta
    quiet_offline()
    check_fp(master, "master")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(master, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.to(torch.float16).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(master).save_pretrained(out_dir)
    fix_rope_theta(out_dir)
    seconds = round(time.perf_counter() - started, 2)
    log.info("fused the adapter into %s in %.1f s", out_dir, seconds,
             extra={"event": "fuse", "seconds": seconds})
    return {"method": "fuse", "seconds": seconds}
