"""Train a LoRA adapter with mlx-lm (the mlx engine's night), saved in peft's format.

mlx-lm's own pieces through its Python API: ``linear_to_lora_layers`` turns
the target projections of every layer into LoRA layers, ``tuner.train`` runs
the loop (its loss, batching and prompt masking), and the adapter it saves
(``adapters.safetensors``) is converted to peft's format for the merge, the
mergekit rebuild and the lineage (``adapters.mlx_to_peft``). The base is the
FP16 master as stored; ``qlora`` (opt-in) quantizes it to 4 bits in memory
first, which costs less memory and trains against weights the merge will not
see (the brief's re-quantization trap).
"""
import contextlib
import io
import json
import logging
import math
import time
from pathlib import Path

from .train import TrainConfig, TrainingDiverged, TrainingError, _record, prepare

log = logging.getLogger(__name__)


class _Stop(Exception):
    pass


def train_mlx(master, data_dir, out_dir, cfg: TrainConfig, progress=None) -> dict:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm import load
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.trainer import TrainingArgs, evaluate, train
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from mindhost.engines import has_metal

    from .adapters import mlx_to_peft
    out_dir = Path(out_dir)
    mx.random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    started = time.perf_counter()
    model, tok = load(str(master))
    train_set, valid_set, dropped = prepare(getattr(tok, "_tokenizer", tok), data_dir, cfg)
    if cfg.qlora:
        nn.quantize(model, group_size=64, bits=4)
    elif not has_metal():
        model.set_dtype(mx.float32)     # mlx's CPU backend: half precision is slow and unstable
    elif cfg.base_dtype != "float16":
        model.set_dtype(getattr(mx, cfg.base_dtype))
    model.freeze()
    keys = set()
    for name, module in model.layers[0].named_modules():
        if name.rsplit(".", 1)[-1] in cfg.target_modules:
            keys.add(name)
    found = {k.rsplit(".", 1)[-1] for k in keys}
    missing = [m for m in cfg.target_modules if m not in found]
    if missing:
        raise TrainingError(f"the model has no module(s) {', '.join(missing)} to adapt; set "
                            "training.target_modules to names it has")
    lora = {"rank": cfg.rank, "scale": cfg.alpha / cfg.rank, "dropout": cfg.dropout,
            "keys": sorted(keys)}
    linear_to_lora_layers(model, len(model.layers), lora)

    def as_offsets(rows):
        # mlx-lm masks targets before the offset: the first unmasked label of ours
        return [(ids, next(i for i, x in enumerate(labels) if x != -100))
                for ids, labels in rows]
    train_data, valid_data = as_offsets(train_set), as_offsets(valid_set)
    batch = min(cfg.batch_size, len(train_data))
    staging = out_dir.with_name(out_dir.name + ".mlx")
    staging.mkdir(parents=True, exist_ok=True)
    curve = []

    class Watch(TrainingCallback):
        def on_train_loss_report(self, info):
            loss = float(info["train_loss"])
            if not math.isfinite(loss):
                raise TrainingDiverged(info["iteration"], loss)
            curve.append(round(loss, 5))
            if progress is not None:
                progress(info["iteration"], cfg.iters, curve[-1])

    args = TrainingArgs(batch_size=batch, iters=cfg.iters, val_batches=0,
                        steps_per_report=1, steps_per_eval=10**9, steps_per_save=10**9,
                        max_seq_length=cfg.max_seq_len, grad_checkpoint=cfg.grad_checkpoint,
                        adapter_file=str(staging / "adapters.safetensors"))
    opt = optim.AdamW(learning_rate=cfg.learning_rate)
    with contextlib.redirect_stdout(io.StringIO()):     # mlx-lm draws its own progress
        train(model, opt, train_data, None, args=args, training_callback=Watch())
        val = []
        if valid_data:
            val = [float(evaluate(model, [v], batch_size=1, num_batches=-1,
                                  max_seq_length=cfg.max_seq_len)) for v in valid_data]
    (staging / "adapter_config.json").write_text(json.dumps({
        "fine_tune_type": "lora", "num_layers": len(model.layers),
        "lora_parameters": lora, "qlora": cfg.qlora}, indent=1))
    mlx_to_peft(staging, out_dir, base_model=master)
    record = _record(out_dir, cfg, train_set, valid_set, dropped, curve, val, started,
                     "mlx-lm" + (" (qlora)" if cfg.qlora else ""))
    import shutil
    shutil.rmtree(staging, ignore_errors=True)
    return record
