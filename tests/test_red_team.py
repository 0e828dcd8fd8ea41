"""Every red-team attack (tests/red_team.py), each alone in a subprocess with a hard timeout.

Contained means: no escape (a rejection, or a refusal at run time), no
limit exceeded by more than 10% (the call's wall time, the host's growth),
the host alive and still serving, the image unchanged by a failing call, and
no committed write lost after a reopen.
"""
import json
import pathlib
import subprocess
import sys
from collections import Counter

import pytest
from red_team import ATTACKS

RUNNER = pathlib.Path(__file__).with_name("red_team_run.py")
HARD_TIMEOUT = 60


def test_the_corpus_covers_every_category():
    counts = Counter(a.category for a in ATTACKS)
    assert len(ATTACKS) >= 100, len(ATTACKS)
    assert set(counts) == {"escape", "limits", "host", "persistence"}
    assert min(counts.values()) >= 15, counts


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_attack_is_contained(attack, tmp_path):
    from red_team_run import LIMITS
    proc = subprocess.run([sys.executable, str(RUNNER), attack.id, str(tmp_path / "image")],
                          capture_output=True, text=True, timeout=HARD_TIMEOUT)
    assert proc.returncode == 0, f"the host died or failed (rc {proc.returncode}):\n" \
                                 f"{proc.stderr[-3000:]}"
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    limits = dict(LIMITS, **(attack.limits or {}))
    assert r["responsive"] and r["kept"], r
    assert r["host_growth_mb"] <= limits["memory_mb"] * 1.1, r
    if attack.expect == "rejected":
        assert r["rejected"], r
        assert attack.rule in r["reasons"], r
        assert r["unchanged"], r
        return
    assert not r["rejected"], f"benign-looking attack refused statically: {r['reasons']}"
    # the wall clock: the budget plus 10% (the worker was warm), plus the kill and the commit
    assert r["seconds"] <= limits["seconds"] * 1.1 + 0.15, r
    if attack.expect == "fails":
        assert r["ok"] is False, r
        if attack.kind:
            assert attack.kind in r["kinds"], r
        assert r["unchanged"], f"a failing call changed the image: {r}"
    else:
        assert r["ok"], r
        assert r["after"] == {k: _plain(v) for k, v in attack.after.items()}, r


def _plain(v):
    if isinstance(v, set):
        return sorted(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
