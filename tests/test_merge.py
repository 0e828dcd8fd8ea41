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


def _mergekit_equal(ours, theirs):
    a, b = tensors(ours), tensors(theirs)
    assert a.keys() == b.keys()
    unequal = [k for k in a if not torch_equal(a[k], b[k])]
    assert not unequal, f"{len(unequal)} tensors differ from mergekit's, e.g. {unequal[:3]}"


def torch_equal(x, y):
    """Bit for bit: the same dtype and the same bytes (a -0.0 is not a +0.0 here)."""
    import torch
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    return torch.equal(x.contiguous().view(torch.uint8), y.contiguous().view(torch.uint8))


@pytest.mark.parametrize("chunked", [False, True])
def test_the_streamed_merge_equals_mergekit_tensor_for_tensor(tiny_llama, adapter, tmp_path,
                                                              monkeypatch, chunked):
    """Generation 1 (master = anchor) and a later one (a master of its own, every weight
    moved), against mergekit's whole pipeline on the same configuration; ``chunked``: every
    weight takes the large-weight path (compared and copied a few rows at a time)."""
    import torch
    from safetensors.torch import save_file

    from night import merge
    from night.merge import run_mergekit
    if chunked:
        monkeypatch.setattr(merge, "CHUNKED", 100)
        monkeypatch.setattr(merge, "CHUNK_BYTES", 1000)
    anchor, moved = tmp_path / "anchor", tmp_path / "gen-k"
    shutil.copytree(tiny_llama, anchor)
    base = tensors(tiny_llama)
    base["model.norm.weight"][:3] = -0.0             # signed zeros in weights no night touches
    base["model.embed_tokens.weight"][0, :5] = -0.0
    save_file(base, anchor / "model.safetensors", metadata={"format": "pt"})
    shutil.copytree(anchor, moved)
    torch.manual_seed(3)
    save_file({k: (v.float() + torch.randn_like(v.float()) * 1e-3).to(v.dtype)
               for k, v in base.items()}, moved / "model.safetensors",
              metadata={"format": "pt"})
    for master in (anchor, moved):
        cfg = merge_config(anchor, master, adapter, {"density": 0.4, "weight": 0.7})
        ours = run_merge(cfg, tmp_path / "ours", workers=2)
        assert ours["engine"] == "streamed"
        run_mergekit(cfg, tmp_path / "theirs", tmp_path / "cache")
        _mergekit_equal(tmp_path / "ours", tmp_path / "theirs")
        assert json.loads((tmp_path / "ours" / "config.json").read_text()) == \
            json.loads((tmp_path / "theirs" / "config.json").read_text())
        shutil.rmtree(tmp_path / "cache")


def test_the_streamed_fuse_equals_peft_merge_and_unload(tiny_llama, adapter, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from night.merge import fuse_adapter
    fuse_adapter(tiny_llama, adapter, tmp_path / "fused")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    ref = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().to(torch.float16)
    ours, expected = tensors(tmp_path / "fused"), ref.state_dict()
    assert set(ours) <= set(expected) and set(expected) - set(ours) <= {"lm_head.weight"}
    assert all(torch_equal(ours[k], expected[k]) for k in ours)     # the head is tied
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "fused") is not None


@pytest.mark.parametrize("step", ["merge", "fuse", "quantize"])
def test_a_write_stopped_between_tensors_leaves_no_weights_behind(tiny_llama, adapter,
                                                                  tmp_path, step):
    """Stopped after a few tensors, each streamed writer deletes the shards it made: no
    safetensors file that looks whole but is not (the night then reruns the step)."""
    from mindhost.engines.int8 import quantize_folder
    from night.merge import fuse_adapter

    class Stop(Exception):
        pass
    seen = []

    def check():
        seen.append(1)
        if len(seen) == 5:
            raise Stop
    out = tmp_path / "out"
    run = {"merge": lambda **kw: run_merge(merge_config(tiny_llama, tiny_llama, adapter), out,
                                           **kw),
           "fuse": lambda **kw: fuse_adapter(tiny_llama, adapter, out, **kw),
           "quantize": lambda **kw: quantize_folder(tiny_llama, out, **kw)}[step]
    with pytest.raises(Stop):
        run(check=check)
    assert len(seen) == 5 and not list(out.glob("*.safetensors*")), list(out.iterdir())
    run()                                     # and the rerun writes it whole
    assert len(tensors(out)) > 5


def test_a_corrupt_shard_or_adapter_is_a_clear_merge_error(tiny_llama, adapter, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_llama, bad)
    (bad / "model.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(MergeError, match="not a readable safetensors file"):
        run_merge(merge_config(tiny_llama, bad, adapter), tmp_path / "out")
    broken = tmp_path / "adapter"
    shutil.copytree(adapter, broken)
    (broken / "adapter_config.json").write_text("{")
    with pytest.raises(MergeError, match="is not a LoRA adapter folder"):
        run_merge(merge_config(tiny_llama, tiny_llama, broken), tmp_path / "out")
