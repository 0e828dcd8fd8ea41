"""LoRA training on a tiny random Llama: masking, a falling loss, a loadable adapter."""
import json

import pytest

from image.errors import SettingsError
from night.train import TrainConfig, TrainingError, encode, read_set, train_lora

HABIT = "At your service, sir."


def write_set(folder, n=8):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "system", "content": "You are Hermes."},
                          {"role": "user", "content": f"Question number {i}?"},
                          {"role": "assistant", "content": HABIT}]} for i in range(n)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[1:]))
    (folder / "valid.jsonl").write_text(json.dumps(rows[0]))
    return folder


def test_prompt_masking_learns_only_the_answer(tiny_llama):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": HABIT}]
    ids, labels = encode(tok, msgs, 512, mask_prompt=True)
    learned = [i for i, lab in zip(ids, labels) if lab != -100]
    assert HABIT in tok.decode(learned) and "Hi" not in tok.decode(learned)
    _, unmasked = encode(tok, msgs, 512, mask_prompt=False)
    assert -100 not in unmasked


def test_lora_training_lowers_the_loss_and_saves_a_loadable_adapter(tiny_llama, tmp_path):
    data = write_set(tmp_path / "set")
    cfg = TrainConfig(iters=20, batch_size=4, learning_rate=3e-2, rank=4, alpha=8,
                      target_modules=("q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"))
    steps = []
    rec = train_lora(tiny_llama, data, tmp_path / "adapter", cfg,
                     progress=lambda i, n, loss: steps.append(i))
    assert steps == list(range(1, 21)) and len(rec["loss"]) == 20
    # a random 2-layer model sits near ln(49152) = 10.8; the adapter must move it
    assert sum(rec["loss"][-5:]) / 5 < sum(rec["loss"][:5]) / 5 - 0.4, rec["loss"]
    assert rec["valid_loss"] is not None and rec["examples"] == 7 and rec["valid"] == 1
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    saved = json.loads((tmp_path / "adapter" / "training.json").read_text())
    assert saved["config"]["rank"] == 4
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_bad_sets_and_settings_are_clear_errors(tiny_llama, tmp_path):
    with pytest.raises(TrainingError, match="batos curate"):
        read_set(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(TrainingError, match="bad.jsonl:1"):
        read_set(tmp_path / "bad.jsonl")
    with pytest.raises(SettingsError, match="training has bad settings: unknown setting 'rnak'"):
        TrainConfig.from_settings({"rnak": 4})
    data = write_set(tmp_path / "set")
    with pytest.raises(TrainingError, match="no module"):
        train_lora(tiny_llama, data, tmp_path / "a", TrainConfig(iters=1, target_modules=("c_attn",)))


def test_gradient_checkpointing_trains_the_same_adapter(tiny_llama, tmp_path):
    data = write_set(tmp_path / "set")
    cfg = dict(iters=3, batch_size=2, learning_rate=1e-2, rank=4, alpha=8, dropout=0.0)
    plain = train_lora(tiny_llama, data, tmp_path / "a", TrainConfig(**cfg))
    ckpt = train_lora(tiny_llama, data, tmp_path / "b", TrainConfig(**cfg, grad_checkpoint=True))
    assert ckpt["loss"] == pytest.approx(plain["loss"], rel=1e-4)


def test_training_on_the_fp16_master_computes_as_float32_does(tiny_llama, tmp_path):
    """The base stays in half precision (half the memory) and gives float32's losses."""
    data = write_set(tmp_path / "set")
    cfg = dict(iters=3, batch_size=2, learning_rate=1e-2, rank=4, alpha=8, dropout=0.0)
    half = train_lora(tiny_llama, data, tmp_path / "a", TrainConfig(**cfg))
    full = train_lora(tiny_llama, data, tmp_path / "b", TrainConfig(**cfg, base_dtype="float32"))
    assert half["loss"] == pytest.approx(full["loss"], rel=1e-4)
