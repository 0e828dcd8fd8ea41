"""Train a LoRA adapter on a curated set, against the mind's FP16 master.

transformers + peft on the torch engine; mlx-lm's LoRA on the mlx engine
(``train_mlx``, the default on Apple Silicon). Never against a quantized
copy unless ``qlora`` is set (mlx only): the adapter is trained on, and later
merged into, the FP16 master, which is held in its own half precision, so
training needs about the model's bytes plus activations and the adapter.

The set is chat JSONL (``train.jsonl``, ``valid.jsonl``). With prompt
masking (the default) only the assistant's tokens are learned: the labels
of the system and user tokens are -100. Runs outside any transaction; the
caller records the adapter and its ``training.json`` (config, loss curve,
timings) in the image afterwards.
"""
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path

from image.errors import ImageError
from prototypes import settings as st

log = logging.getLogger(__name__)


class TrainingError(ImageError):
    """The set or the model cannot be trained on."""


class TrainingDiverged(TrainingError):
    """The loss (or a gradient) became NaN or infinite; the adapter is not kept."""

    def __init__(self, step, loss, what="loss"):
        self.step, self.loss = step, loss
        super().__init__(f"training diverged at step {step}: the {what} is {loss}; nothing "
                         "was merged. Lower training.learning_rate, or check the set with "
                         "`batos curate`")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A mind's ``training`` slot. Nightly defaults: small rank on the attention projections,
    50 steps (measured on the bundled 135M model, 2 cores: about 2 minutes; it learns a
    habit, 200 steps overfit and lost capability)."""
    rank: int = st.number(8, min=1)
    alpha: int = st.number(16, min=1)
    dropout: float = st.number(0.05, min=0.0, max=1.0)
    target_modules: tuple[str, ...] = st.listing(("q_proj", "k_proj", "v_proj", "o_proj"))
    learning_rate: float = st.number(2e-4, min=0.0)
    iters: int = st.number(50, min=1)
    batch_size: int = st.number(4, min=1)
    max_seq_len: int = st.number(512, min=8)
    mask_prompt: bool = True
    seed: int = 0
    base_dtype: str = st.choice("float16", ("float16", "bfloat16", "float32"))
    qlora: bool = False             # mlx only: train on a 4-bit copy (opt-in; the brief's trap)
    grad_checkpoint: bool = False   # recompute each layer in backward: far fewer activations

    @classmethod
    def from_settings(cls, settings=None, *, where="training", **overrides):
        """From a mind's ``training`` slot (plain data); SettingsError if it is wrong."""
        return st.check(cls, settings, where=where, **overrides)


def read_set(path) -> list:
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no training file {path}; write one with `batos curate`")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            msgs = json.loads(line)["messages"]
            assert msgs and msgs[-1]["role"] == "assistant"
        except (ValueError, KeyError, TypeError, AssertionError):
            raise TrainingError(f"{path}:{n} is not a chat example ending with an assistant "
                                "turn") from None
        rows.append(msgs)
    return rows


def encode(tokenizer, messages, max_len, mask_prompt):
    """``(input_ids, labels)``: labels are -100 on the prompt when masking."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False,
                                           add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise TrainingError("the chat template does not extend the prompt with the answer; "
                            "prompt masking cannot tell them apart")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_len]
    labels = list(ids)
    if mask_prompt:
        labels[:min(len(p_ids), len(ids))] = [-100] * min(len(p_ids), len(ids))
    return ids, labels


def prepare(tok, data_dir, cfg: TrainConfig):
    """The encoded sets ``(train, valid)``; refuses, before any model is loaded, a set or a
    setting that leaves nothing to learn, and drops examples whose answer the sequence
    limit cuts off entirely (each would be a loss over no tokens: NaN)."""
    data_dir = Path(data_dir)
    train_rows = read_set(data_dir / "train.jsonl")
    valid_rows = read_set(data_dir / "valid.jsonl") if (data_dir / "valid.jsonl").exists() else []
    if not train_rows:
        raise TrainingError(f"{data_dir / 'train.jsonl'} has no examples")

    def learnable(rows):
        enc = [encode(tok, m, cfg.max_seq_len, cfg.mask_prompt) for m in rows]
        return [e for e in enc if any(x != -100 for x in e[1][1:])]
    train, valid = learnable(train_rows), learnable(valid_rows)
    if not train:
        longest = max(len(encode(tok, m, 10**9, cfg.mask_prompt)[0]) for m in train_rows)
        raise TrainingError(
            f"nothing to learn: with training.max_seq_len = {cfg.max_seq_len} no example keeps "
            f"an answer token (the longest example is {longest} tokens"
            + (", the prompt is masked" if cfg.mask_prompt else "") + "); raise max_seq_len")
    dropped = len(train_rows) - len(train)
    if dropped:
        log.warning("%d of %d examples dropped: max_seq_len %d cuts off their answers",
                    dropped, len(train_rows), cfg.max_seq_len,
                    extra={"event": "train_dropped", "dropped": dropped})
    return train, valid, dropped


def train_lora(master, data_dir, out_dir, cfg: TrainConfig, progress=None,
               engine="torch") -> dict:
    """Train, save the adapter (peft format) to ``out_dir``, return the record (plain data).

    ``engine`` "mlx" trains with mlx-lm (``train_mlx``); "torch" with peft.
    TrainingDiverged when the loss or a gradient is not finite."""
    if engine == "mlx":
        from .train_mlx import train_mlx
        return train_mlx(master, data_dir, out_dir, cfg, progress)
    if cfg.qlora:
        raise TrainingError("training.qlora is an mlx-engine setting; the torch engine trains "
                            "LoRA on the FP16 master only (set it false)")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mindhost.engines import quiet_offline
    quiet_offline()
    out_dir = Path(out_dir)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(master)
    train, valid, dropped = prepare(tok, data_dir, cfg)
    device = _device()
    model = AutoModelForCausalLM.from_pretrained(master, dtype=getattr(torch, cfg.base_dtype))
    if device == "cpu" and cfg.base_dtype != "float32":
        float32_compute(model)      # half-precision kernels are ~40x slower on a CPU
    model.to(device)
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in cfg.target_modules if m not in present]
    if missing:
        raise TrainingError(f"the model has no module(s) {', '.join(missing)} to adapt; set "
                            "training.target_modules to names it has")
    # peft keeps the adapter's own weights in float32 over a half-precision base
    model = get_peft_model(model, LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
    if cfg.grad_checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    curve = []
    model.train()
    order = []
    for step in range(cfg.iters):
        if len(order) < cfg.batch_size:
            order += random.sample(range(len(train)), len(train))
        batch = [train[order.pop()] for _ in range(min(cfg.batch_size, len(train)))]
        loss = _loss(model, batch, pad)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(step + 1, value)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))   # measures, clips nothing
        if not math.isfinite(norm.item()):
            raise TrainingDiverged(step + 1, norm.item(), "gradient norm")
        opt.step()
        opt.zero_grad()
        curve.append(round(value, 5))
        if progress is not None:
            progress(step + 1, cfg.iters, curve[-1])
    model.eval()
    with torch.no_grad():
        val = [float(_loss(model, [v], pad)) for v in valid]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return _record(out_dir, cfg, train, valid, dropped, curve, val, started, "torch+peft")


def _record(out_dir, cfg, train, valid, dropped, curve, val, started, engine):
    record = {"config": st.plain(cfg), "examples": len(train), "valid": len(valid),
              "dropped": dropped, "loss": curve,
              "valid_loss": round(sum(val) / len(val), 5) if val else None,
              "valid_ppl": round(math.exp(sum(val) / len(val)), 4) if val else None,
              "seconds": round(time.perf_counter() - started, 2), "engine": engine}
    record["config"]["target_modules"] = list(cfg.target_modules)
    (Path(out_dir) / "training.json").write_text(json.dumps(record, indent=1))
    log.info("trained a LoRA adapter (%s): %d steps, loss %.3f -> %.3f", engine, cfg.iters,
             curve[0], curve[-1], extra={"event": "train", "seconds": record["seconds"]})
    return record


def _device():
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


class _Float32Linear:
    """``y = x W^T + b`` with W kept in half precision and used in float32: what backward
    saves is the half-precision weight, never a float32 copy, so the base costs its own
    bytes (the values are exactly the FP16 master's; the upcast is exact)."""

    @staticmethod
    def make():
        import torch

        class Fn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, b):
                ctx.save_for_backward(w)
                return torch.nn.functional.linear(x, w.to(x.dtype),
                                                  None if b is None else b.to(x.dtype))

            @staticmethod
            def backward(ctx, grad):
                (w,) = ctx.saved_tensors
                return grad @ w.to(grad.dtype), None, None
        return Fn


def float32_compute(model):
    """Run a half-precision model's frozen layers in float32 without a float32 copy of it:
    linears upcast their weight per call, the embedding's output is upcast, norms are
    float32 (they are small)."""
    import torch
    fn = _Float32Linear.make()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.forward = (lambda m: lambda x: fn.apply(x.float(), m.weight, m.bias))(module)
        elif isinstance(module, torch.nn.Embedding):
            module.register_forward_hook(lambda m, args, out: out.float())
        elif not any(True for _ in module.children()):
            for p in module.parameters(recurse=False):
                p.data = p.data.float()
    return model


def _loss(model, batch, pad):
    import torch
    width = max(len(ids) for ids, _ in batch)
    device = next(model.parameters()).device
    ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch], device=device)
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss
