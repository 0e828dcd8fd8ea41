"""The image benchmark runs end to end and prints its ratios (no timing asserts)."""
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


@pytest.mark.slow
def test_bench_memory_quick_prints_ratios():
    proc = subprocess.run([sys.executable, "bench/memory.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, env=batos_env(), timeout=1800)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any("MRR@10" in line for line in lines)
    assert sum("ratio" in line for line in lines) >= 2
    assert lines[-1].startswith("summary:")
