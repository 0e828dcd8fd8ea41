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
import math
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
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


def _split(model: str):
    """``PATH`` or ``PATH+ADAPTER`` (mergekit's spelling of a model with a LoRA on it)."""
    path, _, lora = model.partition("+")
    return path, (lora or None)


def run_merge(config: dict, out_dir, cache_dir=None, progress=None, check=None,
              workers=None) -> dict:
    """The night's TIES merge, streamed tensor by tensor; the YAML and command saved beside it.

    Each output tensor is mergekit's own TIES kernel (``merge_tensors``, the
    function its task graph calls per tensor) over the anchor's, the master's
    and the tuned model's tensors; the tuned one is the master plus the LoRA
    delta of that weight alone (peft's arithmetic), so MASTER+ADAPTER is never
    materialised. Peak memory is a few tensors. ``cache_dir`` is where the
    mergekit CLI would keep its merged LoRA model (the rebuild command names
    it); ``progress(nbytes)`` after each tensor; ``check()`` between tensors
    may raise to stop; ``workers`` tensors are merged at once (default: the cores, at
    most 4). Methods other than TIES run through ``run_mergekit``.
    """
    if config.get("merge_method") != "ties":
        return run_mergekit(config, out_dir, cache_dir)
    import torch
    import yaml
    from mergekit.merge_methods.api import merge_tensors

    from mindhost.tensors import Shards, ShardWriter, TensorFileError

    from .adapters import AdapterError, LoraDeltas, apply_delta
    out_dir = Path(out_dir)
    _check_inputs(config)
    dtype = getattr(torch, config.get("dtype") or "float16")
    params = config.get("parameters") or {}
    text = yaml.safe_dump(config, sort_keys=False)
    started = time.perf_counter()
    if out_dir.exists():
        shutil.rmtree(out_dir)              # a half-written merge from an interrupted night
    writer = None
    try:
        anchor = Shards(config["base_model"])
        inputs = []
        for m in config["models"]:
            path, lora = _split(m["model"])
            inputs.append((Shards(path), LoraDeltas(lora) if lora else None, m["parameters"]))
        names = anchor.names()
        for shards, _, _ in inputs:
            odd = [n for n in names if n not in shards or shards.shape(n) != anchor.shape(n)]
            if odd:
                raise MergeError(f"{shards.folder} does not match the anchor's tensors "
                                 f"({odd[0]}); merge models of one architecture")
        for _, lora, _ in inputs:
            stray = sorted(lora.targets() - set(names)) if lora else []
            if stray:
                raise MergeError(f"the adapter {lora.folder} changes {stray[0]}, which the "
                                 "anchor lacks; was it trained on another model?")
        writer = ShardWriter(out_dir, [(n, dtype, anchor.shape(n)) for n in names])
        ties = {"density": [float(p.get("density", 1.0)) for _, _, p in inputs],
                "weight": [float(p["weight"]) for _, _, p in inputs],
                "normalize": bool(params.get("normalize", True)),
                "int8_mask": bool(params.get("int8_mask", False))}
        ids = list(range(len(inputs) + 1))

        def kernel(name, tensors):
            if all(torch.equal(t, tensors[0]) for t in tensors[1:]):
                # every delta is zero (a weight no night has touched): TIES gives
                # base + 0 whatever its sort would pick (+ 0 as mergekit adds it: a -0.0
                # comes out +0.0); skip the sort
                return tensors[0].to(dtype) + 0
            return merge_tensors(tensors, "ties", ids=ids, base_index=0, name=name,
                                 dtype=dtype, out_dtype=dtype, parameters=ties)
        # reads and writes stay in this thread; the kernels (mergekit sorts each delta,
        # most of the time) run on `workers` tensors at once, a large one alone
        pending, at_once = deque(), workers or _workers()
        big = BIG_TENSOR // max(1, len(inputs))
        with ThreadPoolExecutor(at_once) as pool:
            for name in names:
                if check is not None:
                    check()
                if anchor.shape(name) and math.prod(anchor.shape(name)) > CHUNKED:
                    while pending:
                        _drain(pending, writer, progress, anchor)
                    if _copy_untouched(name, anchor, inputs, writer, dtype):
                        if progress is not None:
                            progress(anchor.nbytes(name))
                        continue
                tensors = [anchor.get(name)] + [
                    apply_delta(s.get(name), lo.delta(name) if lo else None)
                    for s, lo, _ in inputs]
                alone = tensors[0].numel() > big
                while pending and (alone or len(pending) >= at_once):
                    _drain(pending, writer, progress, anchor)
                pending.append((name, pool.submit(kernel, name, tensors)))
                del tensors
                if alone:
                    _drain(pending, writer, progress, anchor)
            while pending:
                _drain(pending, writer, progress, anchor)
        writer.close()
        writer = None
    except (TensorFileError, AdapterError, OSError) as e:
        raise MergeError(f"the merge into {out_dir} failed: {e}") from e
    finally:
        if writer is not None:
            writer.abort()
    _finish_folder(config["base_model"], out_dir, config.get("dtype") or "float16")
    return _finished(out_dir, config, text, cache_dir or "CACHE", started, "streamed")


BIG_TENSOR = 64 * 2**20       # elements: a kernel over more runs alone (it holds ~30 bytes each)


CHUNKED = 16 * 2**20          # elements: a larger weight is first compared row block by block
CHUNK_BYTES = 32 * 2**20


def _copy_untouched(name, anchor, inputs, writer, dtype) -> bool:
    """Write ``name`` a block of rows at a time if no input moves it (no adapter delta, every
    master equal to the anchor): TIES gives base + 0 there. False (and nothing final
    written) at the first block that differs; the caller merges the tensor whole."""
    import torch
    if any(lora is not None and lora.delta_keys(name) for _, lora, _ in inputs):
        return False
    rows = anchor.shape(name)[0]
    step = max(1, CHUNK_BYTES // max(1, anchor.nbytes(name) // rows))
    for start in range(0, rows, step):
        block = anchor.get(name, (start, start + step))
        if not all(torch.equal(s.get(name, (start, start + step)), block)
                   for s, _, _ in inputs):
            return False
        writer.write(name, block.to(dtype) + 0, row=start)
    return True


def _drain(pending, writer, progress, anchor):
    name, fut = pending.popleft()
    writer.write(name, fut.result())
    if progress is not None:
        progress(anchor.nbytes(name))


def _workers():
    return max(1, min(4, os.cpu_count() or 1))


def _check_inputs(config):
    check_fp(config["base_model"], "golden anchor")
    for m in config["models"]:
        check_fp(_split(m["model"])[0], "master")


def _finish_folder(src, out_dir, dtype):
    """config.json and the tokenizer from ``src`` (as mergekit writes them), dtype set."""
    from mindhost.tensors import copy_side_files
    copy_side_files(src, out_dir)
    cfg = json.loads((Path(src) / "config.json").read_text())
    cfg["dtype"] = dtype
    cfg.pop("torch_dtype", None)
    (Path(out_dir) / "config.json").write_text(json.dumps(cfg, indent=2))


def run_mergekit(config: dict, out_dir, cache_dir) -> dict:
    """The same merge through mergekit's whole pipeline (the rebuild path, and the baseline)."""
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge as mergekit_run
    from mergekit.options import MergeOptions

    from mindhost.engines import quiet_offline
    quiet_offline()
    _check_inputs(config)
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    text = yaml.safe_dump(config, sort_keys=False)
    started = time.perf_counter()
    try:
        mergekit_run(MergeConfiguration.model_validate(config), str(out_dir),
                     MergeOptions(lora_merge_cache=str(cache_dir), quiet=True,
                                  write_model_card=False, random_seed=0),
                     config_source=text)
    except Exception as e:              # mergekit raises many kinds; say which merge failed
        raise MergeError(f"mergekit failed: {type(e).__name__}: {e}") from e
    return _finished(out_dir, config, text, cache_dir, started, "mergekit")


def _finished(out_dir, config, text, cache_dir, started, engine) -> dict:
    """The rope fix, the YAML beside the master, and the record of the merge."""
    from mindhost.engines.convert import fix_rope_theta
    fix_rope_theta(out_dir)
    (out_dir / "mergekit.yml").write_text(text)
    command = f"mergekit-yaml mergekit.yml OUT --lora-merge-cache {cache_dir}"
    seconds = round(time.perf_counter() - started, 2)
    log.info("merged into %s in %.1f s (%s)", out_dir, seconds, engine,
             extra={"event": "merge", "seconds": seconds})
    return {"config": config, "yaml": text, "command": command, "seconds": seconds,
            "engine": engine}


def fuse_adapter(master, adapter, out_dir, progress=None, check=None) -> dict:
    """Orai's path: the adapter fused into its FP16 master, tensor by tensor, kept as FP16.

    Orai is not requantized, so there is no Gold Master protocol to keep: the
    fused model is both its next master and what it runs. Each weight is
    peft's ``merge_and_unload`` sum (float32, back to the master's dtype).
    """
    from mindhost.engines.convert import fix_rope_theta
    from mindhost.tensors import Shards, ShardWriter, TensorFileError

    from .adapters import AdapterError, LoraDeltas, apply_delta
    check_fp(master, "master")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    started = time.perf_counter()
    try:
        src, lora = Shards(master), LoraDeltas(adapter)
        missing = sorted(lora.targets() - set(src.names()))
        if missing:
            raise MergeError(f"the adapter {adapter} changes {missing[0]}, which the master "
                             f"{master} lacks; was it trained on another model?")
        names = src.names()
        writer = ShardWriter(out_dir, [(n, src.info[n]["dtype"], src.shape(n)) for n in names])
        try:
            for name in names:
                if check is not None:
                    check()
                writer.write(name, apply_delta(src.get(name), lora.delta(name)))
                if progress is not None:
                    progress(src.nbytes(name))
            writer.close()
        except BaseException:
            writer.abort()          # stopped or failed: no shard that looks whole is left
            raise
    except (TensorFileError, AdapterError, OSError) as e:
        raise MergeError(f"fusing {adapter} into {master} failed: {e}") from e
    from mindhost.tensors import copy_side_files
    copy_side_files(master, out_dir, skip=())
    fix_rope_theta(out_dir)
    seconds = round(time.perf_counter() - started, 2)
    log.info("fused the adapter into %s in %.1f s", out_dir, seconds,
             extra={"event": "fuse", "seconds": seconds})
    return {"method": "fuse", "seconds": seconds}
