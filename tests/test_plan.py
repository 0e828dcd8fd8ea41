"""The memory planner's arithmetic, checked against figures worked out by hand."""
import json

import pytest
from conftest import run_batos

from mindhost.budget import (
    EMBEDDER_BYTES,
    PRESETS,
    PlanError,
    parse_model,
    parse_size,
    plan,
    shape_from_config,
    what_q8_buys,
)


def test_mistral_large_2_by_hand():
    s = PRESETS["mistral-large-2"]
    embed = 32768 * 12288                                  # 402,653,184 (untied: twice)
    attn = 12288 * 12288 * 2 + 12288 * 1024 * 2           # q, o + k, v (8 KV heads x 128)
    mlp = 3 * 12288 * 28672
    per_layer = attn + mlp + 2 * 12288
    assert per_layer == 1_384_144_896
    assert s.params() == 88 * per_layer + 2 * embed + 12288 == 122_610_069_504
    assert s.params() * 2 / 1e9 == pytest.approx(245.2, abs=0.05)   # "about 246 GB" in FP16
    assert s.kv_bytes_per_token("fp16") == 2 * 88 * 8 * 128 * 2 == 360_448
    assert s.kv_bytes_per_token("q8") == 360_448 * 8.5 / 16


def test_hermes_70b_q8_by_hand():
    s = PRESETS["hermes-4-70b"]
    assert s.params() == 80 * (8192 * 8192 * 2 + 8192 * 1024 * 2 + 3 * 8192 * 28672 + 2 * 8192) \
        + 2 * 128256 * 8192 + 8192 == 70_553_706_496
    budget = plan("mistral-large-2:fp16", "hermes-4-70b:q8", context=131072, ram=512 * 2**30)
    hermes = budget["minds"]["hermes"]
    assert hermes["weights_bytes"] == 70_553_706_496 * 8.5 / 8        # ~75.0 GB: "75-78 GB in Q8"
    assert hermes["kv_bytes"] == 2 * 80 * 8 * 128 * 2 * 131072          # 42.9 GB at 128k
    assert hermes["weights_bytes"] / 1e9 == pytest.approx(75.0, abs=0.05)


def test_tied_embeddings_and_gqa():
    smol = PRESETS["smollm2-135m"]
    assert smol.params() == 134_515_008                    # SmolLM2-135M's published size
    assert smol.kv_bytes_per_token() == 2 * 30 * 3 * 64 * 2  # 3 KV heads, not 9


def test_totals_add_up_and_headroom():
    ram = 512 * 2**30
    b = plan("mistral-large-2:fp16", "hermes-4-70b:q8", context=4096, kv="q8", ram=ram,
             reserve=10 * 10**9)
    minds = sum(m["weights_bytes"] + m["kv_bytes"] for m in b["minds"].values())
    assert b["total_bytes"] == minds + EMBEDDER_BYTES + 10 * 10**9
    assert b["headroom_bytes"] == ram - b["total_bytes"] and b["fits"]
    small = plan("mistral-large-2:fp16", "hermes-4-70b:fp16", ram=256 * 2**30)
    assert not small["fits"] and small["headroom_bytes"] < 0


def test_what_q8_buys():
    got = what_q8_buys("hermes-4-70b", 131072)
    assert got["weights_saved_bytes"] == 70_553_706_496 * (2 - 8.5 / 8)
    assert got["kv_saved_bytes"] == 327_680 * 131072 * (1 - 8.5 / 16)


@pytest.mark.parametrize("text,expected", [
    ("512G", 512 * 2**30), ("512GiB", 512 * 2**30), ("500GB", 500 * 10**9),
    ("1.5T", int(1.5 * 2**40)), ("2048M", 2048 * 2**20), ("1000", 1000),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_bad_inputs_are_clear():
    with pytest.raises(PlanError, match="512G"):
        parse_size("lots")
    with pytest.raises(PlanError, match="preset"):
        parse_model("gpt-9")
    with pytest.raises(PlanError, match="precision"):
        parse_model("hermes-4-70b:q3")


def test_config_json_is_read(tmp_path):
    cfg = {"vocab_size": 49152, "hidden_size": 576, "num_hidden_layers": 30,
           "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
           "tie_word_embeddings": True, "model_type": "llama"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    shape = shape_from_config(tmp_path)                    # head_dim = 576 / 9
    assert shape.params() == PRESETS["smollm2-135m"].params()
    del cfg["intermediate_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PlanError, match="intermediate_size"):
        shape_from_config(tmp_path)


def test_cli_plan():
    # the owner's machine runs the night on mlx; the torch engine's CPU path computes in
    # float32, and Orai's 123B training would not fit 512G that way
    proc = run_batos("plan", "--ram", "512G", "--engine", "mlx", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["fits"] and data["minds"]["orai"]["precision"] == "fp16"
    assert data["night"]["fits"]
    torch_cpu = json.loads(run_batos("plan", "--ram", "512G", "--engine", "torch",
                                     "--json").stdout)
    assert torch_cpu["fits"] and not torch_cpu["night"]["fits"]
    assert torch_cpu["night"]["refused"][0]["step"] == "train"
    proc = run_batos("plan", "--ram", "64G")
    assert proc.returncode == 1 and "does not fit" in proc.stdout
    proc = run_batos("plan", "--orai", "gpt-9")
    assert proc.returncode == 2 and "unknown model 'gpt-9'" in proc.stderr


def test_the_night_is_planned_step_by_step_and_a_night_that_cannot_fit_is_refused():
    from mindhost.budget import GB, night_plan, night_steps
    owner = night_plan("mistral-large-2:fp16", "hermes-4-70b:q8", ram=512 * 2**30,
                       engine="mlx")
    assert owner["fits"] and set(owner["minds"]["hermes"]["steps"]) == {
        "train", "merge", "requantize", "gate"}
    assert set(owner["minds"]["orai"]["steps"]) == {"train", "fuse", "gate"}
    hermes = owner["minds"]["hermes"]["steps"]
    # streamed steps hold a few tensors; training holds the FP16 base, the gate one runtime
    fp16 = PRESETS["hermes-4-70b"].params() * 2
    assert hermes["merge"] < 0.1 * fp16 and hermes["requantize"] < 0.1 * fp16
    assert fp16 < hermes["train"] < 2.5 * fp16
    assert 0.5 * fp16 < hermes["gate"] < 0.65 * fp16
    # a longer sequence costs more; QLoRA less; the torch engine on a CPU computes FP16 in fp32
    s = PRESETS["hermes-4-70b"]
    assert night_steps(s, training={"max_seq_len": 2048})["train"] > hermes["train"]
    qlora = night_steps(s, training={"qlora": True}, engine="mlx")["train"]
    assert hermes["train"] - qlora == pytest.approx(s.params() * (16 - 4.5) / 8)
    checkpointed = night_steps(s, training={"grad_checkpoint": True}, engine="mlx")["train"]
    assert fp16 < checkpointed < 1.15 * fp16 < hermes["train"]
    assert night_steps(s, gate_precision="fp16", engine="torch")["gate"] > 2 * fp16
    small = night_plan("mistral-large-2:fp16", "hermes-4-70b:q8", ram=256 * 2**30,
                       engine="mlx")
    assert not small["fits"]
    first = small["refused"][0]
    assert first["mind"] == "orai" and first["step"] == "train" and first["short_bytes"] > 0
    assert first["needs_bytes"] - first["short_bytes"] == pytest.approx(small["room_bytes"])
    assert small["room_bytes"] < 256 * 2**30 - 25 * GB


def test_batos_plan_prints_the_night_and_refuses_what_does_not_fit():
    ok = run_batos("plan", "--ram", "512G", "--engine", "mlx", check=True)
    assert "the night, one step at a time" in ok.stdout and "every night step fits" in ok.stdout
    bad = run_batos("plan", "--ram", "300G", "--engine", "mlx")
    assert bad.returncode == 1 and "train does not fit" in bad.stdout


def test_plan_reads_each_minds_kv_setting_from_the_image(folder_image, image_dir, tmp_path):
    from batos.plan_cmd import image_kv, parse_kv
    with folder_image.transaction() as conn:
        conn.root()["hermes"].engine["kv"] = "q4"
    folder_image.close()
    assert image_kv(str(image_dir)) == {"orai": "fp16", "hermes": "q4"}
    assert image_kv(str(tmp_path / "no-image-here")) == {"orai": "fp16", "hermes": "fp16"}
    assert not (tmp_path / "no-image-here").exists()            # looking creates nothing
    assert parse_kv("q8") == {"orai": "q8", "hermes": "q8"}
    assert parse_kv("hermes=q8") == {"orai": "fp16", "hermes": "q8"}
    with pytest.raises(ValueError, match="not a mind"):
        parse_kv("athena=q8")
