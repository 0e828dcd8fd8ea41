"""The image benchmark runs end to end and prints its ratios (no timing asserts).

A smoke test of the bench's plumbing and output format only: it is no evidence for
any figure the docs quote; those come from running the bench itself."""
import subprocess
import sys

import pytest
from conftest import ROOT, batos_env


@pytest.mark.slow
def test_bench_image_quick_prints_ratios():
    proc = subprocess.run([sys.executable, "bench/image.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, env=batos_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert sum("ratio" in line for line in lines) >= 5
    assert lines[-1].startswith("summary:")


def test_bench_storage_quick_prints_ratios(postgres):
    """``postgres`` only makes the test skip (or fail, in CI) where no server can start."""
    proc = subprocess.run([sys.executable, "bench/storage.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, env=batos_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-2:]
    assert last[0].startswith("ZEO / FileStorage") and last[1].startswith("PostgreSQL / File")
    assert "commits/s, 1 object" in last[1] and "x" in last[1]


@pytest.mark.slow
def test_bench_memory_quick_prints_ratios():
    proc = subprocess.run([sys.executable, "bench/memory.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, env=batos_env(), timeout=1800)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any("MRR@10" in line for line in lines)
    assert sum("ratio" in line for line in lines) >= 2
    assert lines[-1].startswith("summary:")


@pytest.mark.slow
def test_bench_bitrot_tiny_prints_the_ratio(tmp_path):
    proc = subprocess.run([sys.executable, "bench/bitrot.py", "--model", "tiny", "-k", "2",
                           "--iters", "2", "--examples", "4", "--out",
                           str(tmp_path / "bitrot.png")], cwd=ROOT, capture_output=True,
                          text=True, env=batos_env(), timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("ratio (shortcut KL / Gold Master")
    assert (tmp_path / "bitrot.png").stat().st_size > 10_000


def test_bench_methods_quick_prints_ratios():
    proc = subprocess.run([sys.executable, "bench/methods.py", "--calls", "50", "--n", "20000",
                           "--repeat", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("ratios: isolated call p50") and "in process" in last


def test_bench_scale_streamed_steps_print_their_peaks(tmp_path):
    proc = subprocess.run([sys.executable, "bench/scale.py", "--size", "0.1B", "--steps",
                           "merge,fuse,requantize", "--work", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "merge / disk floor" in out and "requantize" in out
    assert out.strip().splitlines()[-1].startswith("worst peak ratio: ")


def test_the_cuda_check_says_plainly_when_there_is_no_gpu():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: bench/device.sh checks it for real")
    import os
    proc = subprocess.run(["bash", "bench/device.sh"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 2 and "no CUDA device visible" in proc.stdout


def _tiny_memorybank(tmp_path):
    """Two users in MemoryBank's shape, with labels: enough to run the bench's plumbing."""
    import json
    bank = {"Ada": {"history": {"2023-05-01": [
        {"query": "I adopted a grey cat called Pixel.", "response": "Pixel is a lovely name."},
        {"query": "Recommend me a film.", "response": "Try Spirited Away."}],
        "2023-05-02": [{"query": "I ran five kilometres today.", "response": "Well done!"}]}},
        "Bo": {"history": {"2023-05-01": [
            {"query": "I bake sourdough bread every Sunday.", "response": "Delicious."}]}}}
    (tmp_path / "memory_bank_en.json").write_text(json.dumps(bank))
    labels = [
        {"user": "Ada", "q": 0, "question": "What is my cat called?", "kind": "user_fact",
         "answer": "Pixel", "evidence": [{"date": "2023-05-01", "turn": 0, "side": "query",
                                          "span": "grey cat called Pixel"}]},
        {"user": "Ada", "q": 1, "question": "On May 2nd, how far did I run?", "kind": "dated",
         "answer": "5 km", "evidence": [{"date": "2023-05-02", "turn": 0, "side": "query",
                                         "span": "ran five kilometres"}]},
        {"user": "Bo", "q": 0, "question": "What do I bake?", "kind": "aggregate",
         "answer": "sourdough", "evidence": [{"date": "2023-05-01", "turn": 0, "side": "query",
                                              "span": "sourdough bread"}]}]
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    return tmp_path


def test_bench_recall_scale_prints_its_figures():
    proc = subprocess.run([sys.executable, "bench/recall.py", "--scale", "2000"], cwd=ROOT,
                          capture_output=True, text=True, env=batos_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert any("p95" in line for line in lines) and any("recording one" in line for line in lines)
    assert lines[-1].startswith("recall: 2000-exchange p95")


@pytest.mark.slow
def test_bench_recall_quality_runs_on_memorybank_shaped_data(tmp_path):
    data = _tiny_memorybank(tmp_path)
    proc = subprocess.run([sys.executable, "bench/recall.py", "--data", str(data), "--labels",
                           str(data / "labels.jsonl"), "--budgets", "100"], cwd=ROOT,
                          capture_output=True, text=True, env=batos_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("dated") for line in lines)
    assert lines[-1].startswith("recall: 100 tokens:")
