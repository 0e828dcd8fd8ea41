"""The second wall (guardians/wall.py): what a method that escaped RestrictedPython can do.

The attacks run as plain Python in a call's real process (tests/wall_run.py,
in a subprocess with a hard timeout): read or write a file, open a socket,
start a process, signal or trace the host, raise a hard limit, outlive the
deadline, or speak for a later call. Each must fail, and the host, the image
and the calls after it must be untouched.
"""
import json
import pathlib
import subprocess
import sys

import pytest

from guardians import landlock, seccomp, wall

RUNNER = pathlib.Path(__file__).with_name("wall_run.py")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux wall")


def _available():
    rules = {"hard limits", "another user", "not dumpable", "seccomp"}
    try:
        landlock.abi()
        rules.add("landlock")
    except OSError:
        pass
    return rules


@pytest.fixture(scope="module")
def bypass(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wall") / "image"
    proc = subprocess.run([sys.executable, str(RUNNER), str(folder)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@linux
def test_every_rule_the_platform_has_is_in_force(bypass):
    assert set(bypass["wall"]) >= _available(), bypass["wall"]


@linux
def test_a_bypassed_method_can_do_none_of_what_it_tries(bypass):
    got = {name: r for name, r in bypass["attempts"].items() if not r.startswith("refused")}
    assert not got, got
    assert len(bypass["attempts"]) >= 20
    assert set(bypass["next"]) == {7}, "a call after an attempt got another answer"


@linux
def test_the_image_and_its_folder_are_untouched(bypass):
    assert bypass["unchanged"] and bypass["size_unchanged"] and not bypass["planted"], bypass
    assert not bypass["planted_default"], "a default value ran in the worker, outside the wall"
    assert all("PermissionError" in r for r in bypass["default"]), bypass["default"]


@linux
def test_frames_after_an_answer_never_answer_a_later_call(bypass):
    frames = bypass["frames"]
    for name, r in frames.items():
        assert r["next"] == [7, 7, 7], (name, r)
    assert "hijacked" not in json.dumps(bypass)


@linux
def test_nothing_outlives_the_deadline(bypass):
    r = bypass["frames"]["outlive"]
    assert "LimitExceeded" in r["result"] and r["seconds"] <= 1.1 + 0.15, r
    assert bypass["leftover"] == [], bypass["leftover"]


@linux
def test_the_filter_denies_each_family_and_jumps_stay_in_range():
    prog = seccomp.program()
    col = 0 if seccomp.arch()[0] == 0 else 1
    checked = {k for (_, _, _, k) in prog}
    for name in ("socket", "execve", "clone", "ptrace", "setsid", "openat", "kill", "unshare"):
        assert seccomp.DENIED[name][col] in checked, name
    for i, (code, jt, jf, _) in enumerate(prog):
        if code in (seccomp._JEQ, seccomp._JGE):
            assert i + 1 + jt < len(prog) and i + 1 + jf < len(prog)
    assert prog[-1][3] == seccomp._KILL and prog[-2][3] == seccomp._DENY


def test_rules_encode_and_decode():
    for rules in (set(), {"seccomp"}, set(wall.RULES)):
        assert wall.decode(wall.encode(rules)) == rules
    assert wall.expected() <= set(wall.RULES)
