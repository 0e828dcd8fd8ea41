"""Train a LoRA adapter on a curated set, against the mind's FP16 master.

transformers + peft here (any host with torch); mlx-lm's LoRA on Apple
Silicon is the other engine's path (not built yet). Never against a
quantized model: the adapter is trained on, and later merged into, FP16.

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


def train_lora(master, data_dir, out_dir, cfg: TrainConfig, progress=None) -> dict:
    """Train, save the adapter to ``out_dir``, return the training record (plain data)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mindhost.engines import quiet_offline
    quiet_offline()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    train_rows = read_set(data_dir / "train.jsonl")
    valid_rows = read_set(data_dir / "valid.jsonl") if (data_dir / "valid.jsonl").exists() else []
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(master)
    model = AutoModelForCausalLM.from_pretrained(master, dtype=torch.float32)
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in cfg.target_modules if m not in present]
    if missing:
        raise TrainingError(f"the model has no module(s) {', '.join(missing)} to adapt; set "
                            "training.target_modules to names it has")
    model = get_peft_model(model, LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
    train = [encode(tok, m, cfg.max_seq_len, cfg.mask_prompt) for m in train_rows]
    valid = [encode(tok, m, cfg.max_seq_len, cfg.mask_prompt) for m in valid_rows]
    if not any(any(x != -100 for x in lab) for _, lab in train):
        raise TrainingError("no answer tokens to learn from (every label is masked)")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=cfg.learning_rate)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    curve = []
    model.train()
    order = []
    for step in range(cfg.iters):
        if len(order) < cfg.batch_size:
            order += random.sample(range(len(train)), len(train))
        batch = [train[order.pop()] for _ in range(min(cfg.batch_size, len(train)))]
        loss = _loss(model, batch, pad)
        loss.backward()
        opt.step()
        opt.zero_grad()
        curve.append(round(loss.item(), 5))
        if progress is not None:
            progress(step + 1, cfg.iters, curve[-1])
    model.eval()
    with torch.no_grad():
        val = [float(_loss(model, [v], pad)) for v in valid]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    record = {"config": st.plain(cfg), "examples": len(train), "valid": len(valid),
              "loss": curve, "valid_loss": round(sum(val) / len(val), 5) if val else None,
              "valid_ppl": round(math.exp(sum(val) / len(val)), 4) if val else None,
              "seconds": round(time.perf_counter() - started, 2), "engine": "torch+peft"}
    record["config"]["target_modules"] = list(cfg.target_modules)
    (out_dir / "training.json").write_text(json.dumps(record, indent=1))
    log.info("trained a LoRA adapter: %d steps, loss %.3f -> %.3f", cfg.iters, curve[0],
             curve[-1], extra={"event": "train", "seconds": record["seconds"]})
    return record


def _loss(model, batch, pad):
    import torch
    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss
