"""mlx-lm's LoRA adapters become peft's: the same delta, fused either way."""
import json

import numpy as np
import pytest

from night.adapters import AdapterError, LoraDeltas, mlx_to_peft


def test_an_mlx_adapter_converts_to_peft_and_fuses_as_mlx_lm_fuses_it(tiny_llama, tmp_path):
    pytest.importorskip("mlx_lm")
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.lora import LoRALinear
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from safetensors.torch import load_file

    from night.merge import fuse_adapter
    model, _ = load(str(tiny_llama))
    model.set_dtype(mx.float32)
    lora = {"rank": 4, "scale": 2.5, "dropout": 0.0, "keys": ["self_attn.q_proj", "mlp.down_proj"]}
    linear_to_lora_layers(model, len(model.layers), lora)
    mx.random.seed(0)
    for _, m in model.named_modules():
        if isinstance(m, LoRALinear):
            m.lora_b = mx.random.normal(m.lora_b.shape) * 0.05
    mlx_dir = tmp_path / "mlx"
    mlx_dir.mkdir()
    mx.save_safetensors(str(mlx_dir / "adapters.safetensors"),
                        dict(tree_flatten(model.trainable_parameters())))
    (mlx_dir / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "lora_parameters": lora}))
    peft_dir = mlx_to_peft(mlx_dir, tmp_path / "peft", base_model=tiny_llama)
    assert LoraDeltas(peft_dir).targets() == {f"model.layers.{i}.{k}.weight"
                                              for i in range(2) for k in lora["keys"]}
    # mlx-lm's own fuse, against ours over the converted adapter
    fused = [(n, m.fuse()) for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    theirs = {f"{n}.weight": np.array(m.weight) for n, m in fused}
    fuse_adapter(tiny_llama, peft_dir, tmp_path / "ours")
    ours = load_file(tmp_path / "ours" / "model.safetensors")
    for name, w in theirs.items():
        assert np.allclose(ours[name].float().numpy(), w, atol=2e-3), name
    # and peft reads it
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), str(peft_dir))


def test_adapters_the_merge_cannot_take_are_refused(tmp_path):
    (tmp_path / "dora").mkdir()
    (tmp_path / "dora" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": True}))
    with pytest.raises(AdapterError, match="only plain LoRA"):
        LoraDeltas(tmp_path / "dora")
    (tmp_path / "mlx").mkdir()
    (tmp_path / "mlx" / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "full", "lora_parameters": {"rank": 4, "scale": 1.0}}))
    with pytest.raises(AdapterError):
        mlx_to_peft(tmp_path / "mlx", tmp_path / "out")
