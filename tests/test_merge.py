"""TIES merges with mergekit on a tiny random Llama: the anchor, the rebuild, the refusals."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import write_set

from image.errors import SettingsError
from night.merge import MergeError, merge_config, run_merge
from night.train import TrainConfig, train_lora


def tensors(folder):
    from safetensors.torch import load_file
    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.fixture(scope="module")
def adapter(tiny_llama, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merge")
    train_lora(tiny_llama, write_set(tmp / "set"), tmp / "adapter",
               TrainConfig(iters=5, learning_rate=3e-2, rank=4, alpha=8,
                           target_modules=("q_proj", "v_proj", "gate_proj", "up_proj",
                                           "down_proj")))
    return tmp / "adapter"


def test_ties_merge_moves_the_master_within_the_anchor_and_yaml_rebuilds_it(
        tiny_llama, adapter, tmp_path):
    cfg = merge_config(tiny_llama, tiny_llama, adapter)
    assert cfg["merge_method"] == "ties" and cfg["base_model"] == str(tiny_llama)
    assert cfg["models"] == [{"model": f"{tiny_llama}+{adapter}",
                              "parameters": {"density": 0.3, "weight": 0.5}}]
    assert cfg["parameters"] == {"normalize": True, "int8_mask": True} and cfg["dtype"] == "float16"
    out = run_merge(cfg, tmp_path / "gen1", tmp_path / "cache")
    base, merged = tensors(tiny_llama), tensors(tmp_path / "gen1")
    changed = [k for k in base if "proj" in k and not (base[k] == merged[k]).all()]
    assert changed and all(merged[k].dtype == base[k].dtype for k in base)
    # TIES keeps about `density` of each changed tensor's delta
    k = next(k for k in changed if "q_proj" in k)
    moved = (merged[k].float() != base[k].float()).float().mean().item()
    assert 0.1 < moved < 0.5, moved
    assert (tmp_path / "gen1" / "mergekit.yml").read_text() == out["yaml"]
    # the saved YAML alone rebuilds the same tensors with the mergekit CLI
    cli = Path(sys.executable).with_name("mergekit-yaml")
    proc = subprocess.run([str(cli), str(tmp_path / "gen1" / "mergekit.yml"),
                           str(tmp_path / "rebuilt"), "--lora-merge-cache",
                           str(tmp_path / "cache2"), "--random-seed", "0"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rebuilt = tensors(tmp_path / "rebuilt")
    assert rebuilt.keys() == merged.keys()
    assert all((rebuilt[k] == merged[k]).all() for k in merged)
    # generation 2 merges against the same anchor, with the master's own delta
    cfg2 = merge_config(tiny_llama, tmp_path / "gen1", adapter)
    assert [m["model"] for m in cfg2["models"]] == [str(tmp_path / "gen1"),
                                                    f"{tmp_path / 'gen1'}+{adapter}"]


def test_merge_refuses_quantized_models_and_bad_settings(tiny_llama, adapter, tmp_path):
    q = tmp_path / "q8"
    shutil.copytree(tiny_llama, q)
    cfg = json.loads((q / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "batos-int8"}
    (q / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MergeError, match="quantized"):
        run_merge(merge_config(tiny_llama, q, adapter), tmp_path / "out", tmp_path / "c")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SettingsError, match="merge has bad settings: unknown setting 'denisty'"):
        merge_config(tiny_llama, tiny_llama, adapter, {"denisty": 0.5})
