"""The content-addressed model store: import, record, check, refuse bad folders."""
import json
import os

import numpy as np
import pytest
from conftest import batos_env, run_batos
from safetensors.numpy import save_file

from image.files import sha256_file
from mindhost import store
from mindhost.store import ModelStoreError


def tiny_model(folder, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 16,
        "intermediate_size": 12}))
    save_file({"embed.weight": rng.standard_normal((16, 8)).astype(np.float16),
               "mlp.weight": rng.standard_normal((12, 8)).astype(np.float16),
               "norm.weight": np.ones(8, dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    return folder


def test_import_records_hashes_and_facts(tmp_path):
    src = tiny_model(tmp_path / "src")
    rec = store.import_folder(src, tmp_path / "models")
    assert rec["params"] == 16 * 8 + 12 * 8 + 8 and rec["dtype"] == "F16"
    assert rec["architecture"] == "LlamaForCausalLM"
    assert set(rec["files"]) == {"config.json", "model.safetensors", "tokenizer.json"}
    assert rec["files"]["model.safetensors"]["sha256"] == sha256_file(src / "model.safetensors")
    again = store.import_folder(src, tmp_path / "models")
    assert again["id"] == rec["id"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == [rec["id"]]   # nothing twice
    other = store.import_folder(tiny_model(tmp_path / "other", seed=1), tmp_path / "models")
    assert other["id"] != rec["id"]


def test_changed_or_missing_files_are_named(tmp_path):
    rec = store.import_folder(tiny_model(tmp_path / "src"), tmp_path / "models")
    weights = tmp_path / "models" / rec["id"] / "model.safetensors"
    assert store.open_checked(rec) == weights.parent
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF                                     # same size, one byte flipped
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match="model.safetensors: SHA-256 differs"):
        store.open_checked(rec)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))   # hide the edit from the fast check
    assert store.check(rec) == []
    assert store.check(rec, full=True) == [("model.safetensors", "SHA-256 differs from the manifest")]
    (weights.parent / "tokenizer.json").unlink()
    with pytest.raises(ModelStoreError, match="tokenizer.json: missing") as e:
        store.open_checked(rec)
    assert "batos model import" in str(e.value)


@pytest.mark.parametrize("breakage,message", [
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "model.safetensors").unlink(), "no \\*.safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage"),
     "not a readable safetensors file"),
])
def test_malformed_folders_are_refused_and_leave_nothing(tmp_path, breakage, message):
    src = tiny_model(tmp_path / "src")
    breakage(src)
    with pytest.raises(ModelStoreError, match=message):
        store.import_folder(src, tmp_path / "models")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_image_records_plain_data_and_finds_by_name(mem_image, tmp_path):
    rec = store.import_folder(tiny_model(tmp_path / "src"), tmp_path / "models", name="tiny")
    mem_image.run(store.record_in_image, rec)
    with mem_image.view() as root:
        found = store.find(root, "tiny")
        assert found["id"] == rec["id"] and type(found) is dict
        assert store.find(root, rec["id"][:6])["name"] == "tiny"
        with pytest.raises(ModelStoreError, match="known: tiny"):
            store.find(root, "nope")


def test_cli_import_list_verify(tmp_path):
    src = tiny_model(tmp_path / "src")
    image = tmp_path / "img"
    env = batos_env(tmp_path)
    proc = run_batos("model", "import", src, "--image", image, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert (image / "models" / rec["id"] / "model.safetensors").exists()
    listed = json.loads(run_batos("model", "list", "--json", "--image", image, env=env).stdout)
    assert [r["id"] for r in listed] == [rec["id"]]
    assert run_batos("model", "verify", "src", "--image", image, env=env).returncode == 0
    (image / "models" / rec["id"] / "config.json").write_text("{}")
    proc = run_batos("model", "verify", rec["id"], "--image", image, env=env)
    assert proc.returncode == 2 and "config.json" in proc.stderr
    proc = run_batos("model", "import", tmp_path / "nowhere", "--image", image, env=env)
    assert proc.returncode == 2 and "not a folder" in proc.stderr
