import json
import sys

import pytest
from conftest import run_batos


@pytest.mark.parametrize("verb", [[], ["init"], ["console"], ["snapshot", "create"],
                                  ["restore"], ["image", "pack"], ["image", "at"],
                                  ["guard", "check"]])
def test_help_explains(verb):
    proc = run_batos(*verb, "--help")
    assert proc.returncode == 0 and "usage: batos" in proc.stdout and "--image" in proc.stdout \
        or verb == ["guard", "check"] and "Exit 0" in proc.stdout


def test_init_is_idempotent_and_env_var_is_honoured(tmp_path):
    from conftest import batos_env
    env = batos_env(BATOS_IMAGE=str(tmp_path / "img"))
    first = json.loads(run_batos("init", "--json", env=env, check=True).stdout)
    assert "orai" in first["created"] and first["image"] == str(tmp_path / "img")
    size = (tmp_path / "img" / "Data.fs").stat().st_size
    again = json.loads(run_batos("init", "--json", env=env, check=True).stdout)
    assert again["created"] == [] and (tmp_path / "img" / "Data.fs").stat().st_size == size
    info = json.loads(run_batos("info", "--json", env=env, check=True).stdout)
    assert info["schema_version"] == 1 and info["objects"] > 20
    wall = info["second_wall"]      # what guardians/wall.py says this platform holds
    assert "hard limits" in wall["in_force"] and not set(wall["in_force"]) & set(wall["missing"])
    if sys.platform.startswith("linux"):
        assert "seccomp" in wall["in_force"], wall


def test_errors_are_one_clear_line_not_a_traceback(tmp_path):
    proc = run_batos("info", "--image", tmp_path / "nothing")
    assert proc.returncode == 2
    assert "batos init" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_batos("snapshot", "create", "x", "--image", "memory:")
    assert proc.returncode == 2 and "snapshots are taken of a folder, ZEO or PostgreSQL" in (
        proc.stderr)
