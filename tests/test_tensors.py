"""Safetensors written and read a tensor at a time: shards, the index, refusals."""
import json

import pytest
import torch

from mindhost.tensors import Shards, ShardWriter, TensorFileError, read_header


def test_planned_shards_round_trip_through_safetensors_and_transformers_layout(tmp_path):
    from safetensors.torch import load_file
    gen = torch.Generator().manual_seed(0)
    want = {f"layer.{i}.weight": torch.randn(64, 32, generator=gen).half() for i in range(6)}
    want["scale"] = torch.arange(7, dtype=torch.float32)
    want["q"] = torch.randint(-127, 127, (5, 3), dtype=torch.int8)
    writer = ShardWriter(tmp_path, [(k, v.dtype, v.shape) for k, v in want.items()],
                         shard_bytes=10_000)
    for k in reversed(list(want)):             # any order
        writer.write(k, want[k])
    writer.close()
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) > 2 and files[0].name == f"model-00001-of-{len(files):05d}.safetensors"
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(want)
    got = {}
    for f in files:
        got.update(load_file(f))              # the library reads what we wrote
    assert all(torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype for k in want)
    with Shards(tmp_path) as shards:
        assert set(shards.names()) == set(want) and shards.shape("q") == (5, 3)
        assert torch.equal(shards.get("layer.3.weight"), want["layer.3.weight"])


def test_the_writer_refuses_a_wrong_tensor_and_an_unfinished_plan(tmp_path):
    writer = ShardWriter(tmp_path, [("a", torch.float16, (2, 2)), ("b", torch.float32, (3,))])
    with pytest.raises(TensorFileError, match="planned F16"):
        writer.write("a", torch.zeros(2, 2))
    writer.write("a", torch.zeros(2, 2).half())
    with pytest.raises(TensorFileError, match="never written"):
        writer.close()
    writer.abort()


def test_a_truncated_or_foreign_file_is_a_clear_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"GGUF\x00\x00\x00\x00garbage")
    with pytest.raises(TensorFileError, match="not a readable safetensors file"):
        read_header(tmp_path / "model.safetensors")
    with pytest.raises(TensorFileError, match="holds no .safetensors"):
        Shards(tmp_path / "nothing")


def _shards(folder, tensors, shard_bytes=10_000):
    writer = ShardWriter(folder, [(k, v.dtype, v.shape) for k, v in tensors.items()],
                         shard_bytes=shard_bytes)
    for k, v in tensors.items():
        writer.write(k, v)
    writer.close()


def test_the_reader_takes_the_files_transformers_would(tmp_path):
    """Mistral's repositories ship consolidated*.safetensors (the same weights under other
    names, or here the same names with other values) beside the Hugging Face shards: the
    index decides, and a name in two files is an error, never a silent override."""
    from safetensors.torch import save_file

    from mindhost.store import describe
    from mindhost.tensors import weight_files
    want = {f"model.layers.{i}.weight": torch.full((64, 32), float(i)).half() for i in range(4)}
    _shards(tmp_path, want)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    save_file({k: torch.zeros_like(v) for k, v in want.items()},
              tmp_path / "consolidated.safetensors")
    assert all(f.name.startswith("model-") for f in weight_files(tmp_path))
    with Shards(tmp_path) as shards:
        assert torch.equal(shards.get("model.layers.3.weight"), want["model.layers.3.weight"])
    assert describe(tmp_path)["params"] == 4 * 64 * 32          # counted once
    # without the index: the shards still, never the consolidated file
    (tmp_path / "model.safetensors.index.json").unlink()
    assert all(f.name.startswith("model-") for f in weight_files(tmp_path))
    # two files holding one name: refused, naming both
    save_file({"model.layers.0.weight": want["model.layers.0.weight"]},
              tmp_path / "extra.safetensors")
    with pytest.raises(TensorFileError, match="model.layers.0.weight is in both"):
        Shards(tmp_path)


def test_an_index_naming_a_missing_shard_or_only_consolidated_weights_are_clear_errors(
        tmp_path):
    from safetensors.torch import save_file

    from mindhost.tensors import weight_files
    _shards(tmp_path / "a", {f"w{i}": torch.ones(64, 32).half() for i in range(4)})
    next((tmp_path / "a").glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(TensorFileError, match="names model-00002.* which .* lacks"):
        Shards(tmp_path / "a")
    (tmp_path / "b").mkdir()
    save_file({"w": torch.ones(2)}, tmp_path / "b" / "consolidated.safetensors")
    with pytest.raises(TensorFileError, match="Mistral's own format"):
        weight_files(tmp_path / "b")
