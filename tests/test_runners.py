"""Missions spread over a kernel and workers in several processes sharing one image."""
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, batos_env, run_batos

from image import open_image
from kernel import missions as ms
from kernel import runners

RUNNER = str(ROOT / "tests" / "runner_proc.py")


# -- the rules, on a memory image -----------------------------------------------------

def test_claims_lapse_with_their_runners_presence(mem_image):
    now = time.time()
    with mem_image.transaction() as conn:
        root = conn.root()
        m = ms.new_mission(root, "hermes", "hello")
        runners.beat(root, "elsewhere:4242:1", role="worker", now=now)
        assert ms.claim(root, m.id, "elsewhere:4242:1", expiry=30) is m
    with mem_image.transaction() as conn:
        root = conn.root()
        m = root["missions"][m.id]
        # another runner may not take it while the claimer is seen ...
        assert not runners.claimable(root, m, "me:1:1", now=now + 5, expiry=30)
        assert ms.claim(root, m.id, "me:1:1", expiry=30) is None
        # ... nor a runner for the other mind only; it may once the claimer is silent
        assert not runners.claimable(root, m, "me:1:1", minds=("orai",), now=now + 60)
        assert runners.claimable(root, m, "me:1:1", now=now + 31, expiry=30)
        assert runners.claimable(root, m, "elsewhere:4242:1", now=now + 5)   # its own


def test_a_dead_process_on_this_host_has_no_claims(mem_image):
    import socket
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    rid = f"{socket.gethostname()}:{proc.pid}:1"
    with mem_image.transaction() as conn:
        root = conn.root()
        runners.beat(root, rid, role="worker")
        assert not runners.alive(root, rid)                 # seen a moment ago, but gone
        runners.beat(root, runners.new_id(), role="kernel")
        assert runners.alive(root, runners.new_id(time.time()))
        assert [r["alive"] for r in runners.rows(root)] == [True, False]


def test_bad_worker_options_are_refused():
    from image.errors import SettingsError
    from kernel.options import options
    with pytest.raises(SettingsError, match="no mind named"):
        options(worker=True, minds=["nobody"])
    with pytest.raises(SettingsError, match="expiry"):
        options(presence=10, expiry=5)


# -- real processes ---------------------------------------------------------------------

def _start(spec, role, env):
    p = subprocess.Popen([sys.executable, RUNNER, spec, role], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        p.kill()
        raise AssertionError(f"{role} did not start: {line}\n{p.stderr.read()[-3000:]}")
    return p, line.split()[1]


def _client_spec(spec):
    """Where a client opens the shared image: the database, or the kernel's ZEO server."""
    if spec.startswith("postgresql"):
        return spec
    from image import resolve
    from image.storage import serving_address
    return "zeo://" + serving_address(resolve(spec))


def _holds_slow(img, runner):
    with img.view() as root:
        return any(m.runner == runner and m.state != "COMPLETE" and "slow" in m.request
                   for m in root["missions"].values() if getattr(m, "runner", None))


def _done(img):
    with img.view() as root:
        return sum(1 for m in root["missions"].values() if m.state == "COMPLETE")


@pytest.fixture(params=("zeo", "postgresql"), ids=("filestorage-served-over-zeo", "postgresql"))
def shared_image(request, tmp_path):
    """An image the kernel and workers share: a folder the kernel serves over ZEO (the
    workers attach through it), or a PostgreSQL database every process opens."""
    from kernel.schema import bootstrap
    if request.param == "zeo":
        spec = str(tmp_path / "image")
    else:
        spec = request.getfixturevalue("postgres").url()
    img = open_image(spec, create=True)
    bootstrap(img)
    img.close()
    return spec


def test_a_kernel_and_two_workers_complete_each_mission_once_with_one_worker_killed(
        shared_image, tmp_path):
    n = 100
    img = open_image(shared_image)
    with img.transaction() as conn:
        # every tenth one is slow: a window in which to kill a worker mid-mission
        ids = [ms.new_mission(conn.root(), "hermes", f"{'slow ' if i % 10 == 5 else ''}"
                              f"question {i}").id for i in range(n)]
    img.close()
    env = batos_env(tmp_path)
    procs = []
    try:
        procs.append(_start(shared_image, "kernel", env)[0])
        # workers reach a folder image through the ZEO server its kernel serves
        a, a_id = _start(shared_image, "worker", env)
        procs += [a, _start(shared_image, "worker", env)[0]]
        spec = _client_spec(shared_image)
        img = open_image(spec)
        deadline = time.monotonic() + 240
        while _done(img) < n // 2 or not _holds_slow(img, a_id):
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        os.kill(a.pid, signal.SIGKILL)                 # mid-mission: it holds a slow one
        a.wait(30)
        while _done(img) < n:
            assert time.monotonic() < deadline, f"only {_done(img)} of {n} done"
            time.sleep(0.1)
        with img.view() as root:
            for mid in ids:
                m = root["missions"][mid]
                assert m.state == "COMPLETE" and m.answer.startswith("answered")
                assert len(m.exchanges) == 1, (mid, list(m.exchanges))
            ledgered = [ex.mission for mind in ("hermes", "orai")
                        for ex in root[mind].ledger.values()]
            assert sorted(ledgered) == sorted(ids)     # one exchange per mission, no more
            assert ms.queue_length(root) == 0 and len(root["failures"]) == 0
            rows = {r["id"]: r for r in runners.rows(root)}
            workers = [r for r in rows.values() if r["role"] == "worker"]
            assert len(workers) == 2 and sum(not r["alive"] for r in workers) == 1
            did = {m.runner for m in (root["missions"][i] for i in ids)}
            assert len(did) >= 2                       # the work was shared
            # what the killed worker had claimed, another runner ran again
            retried = [root["missions"][i] for i in ids if root["missions"][i].attempts > 1]
            assert retried and all(rows[m.runner]["alive"] for m in retried)
        img.close()
        shown = run_batos("missions", "-n", "3", "--image", spec, env=env, check=True).stdout
        assert "runners" in shown and "worker" in shown and "(gone)" in shown
    finally:
        for p in reversed(procs):           # workers first: the kernel may serve the image
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = None
            if len(procs) < 2 or p is not procs[1]:      # procs[1] was killed
                assert rc == 0, p.stderr.read()[-3000:]


def test_a_kernel_killed_mid_mission_loses_nothing_committed(shared_image, tmp_path):
    img = open_image(shared_image)
    with img.transaction() as conn:
        quick = ms.new_mission(conn.root(), "hermes", "question 0").id
    img.close()
    env = batos_env(tmp_path)
    k, k_id = _start(shared_image, "kernel", env)
    try:
        img = open_image(_client_spec(shared_image))
        deadline = time.monotonic() + 120
        while _done(img) < 1:                        # one mission committed ...
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with img.transaction() as conn:             # ... and one under way when it dies
            slow = ms.new_mission(conn.root(), "hermes", "slow question 1").id
        while not _holds_slow(img, k_id):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        img.close()
    finally:
        os.kill(k.pid, signal.SIGKILL)
        k.wait(30)
    img = open_image(shared_image)                   # opens; nothing half-written
    with img.view() as root:
        assert root["missions"][quick].state == "COMPLETE"
        m = root["missions"][slow]
        assert (m.state, m.attempts, m.answer, list(m.exchanges)) == ("IDLE", 1, None, [])
        assert [ex.mission for ex in root["hermes"].ledger.values()] == [quick]
        assert ms.queued(root) == [slow]
    img.close()
    k, _ = _start(shared_image, "kernel", env)         # runs it again at once: same host
    try:
        img = open_image(_client_spec(shared_image))
        while True:
            with img.view() as root:
                m = root["missions"][slow]
                if m.state == "COMPLETE":
                    assert m.attempts == 2 and len(m.exchanges) == 1
                    break
            assert time.monotonic() < deadline + 120
            time.sleep(0.05)
        img.close()
    finally:
        k.send_signal(signal.SIGTERM)
        assert k.wait(60) == 0


def test_cli_kernel_and_worker_on_a_postgresql_image(tmp_path, postgres):
    """`batos kernel` runs on a database with no ZEO server; `batos kernel --worker` joins
    it; a second main kernel is refused; a worker for a mind with no model says so."""
    import json
    url = postgres.url()
    env = batos_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"))
    run_batos("init", "--no-models", "--image", url, env=env, check=True)
    cmd = [sys.executable, "-m", "batos", "kernel", "--image", url, "--http", "127.0.0.1:0",
           "--heartbeat", "0", "--dream-at", "off", "--presence", "0.5"]
    kernel = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        line = kernel.stdout.readline()
        assert line.startswith(f"kernel ready on {url}: zeo None, http http://"), (
            line + kernel.stderr.read()[-2000:])
        second = run_batos(*cmd[3:], env=env, timeout=120)
        assert second.returncode == 2 and "already runs" in second.stderr
        bad = run_batos("kernel", "--worker", "--minds", "hermes", "--image", url, env=env,
                        timeout=120)
        assert bad.returncode == 2 and "hermes" in bad.stderr, bad.stderr
        worker = subprocess.Popen(cmd[:6] + ["--worker", "--presence", "0.5"], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        assert worker.stdout.readline().startswith(f"worker ready on {url}")
        info = json.loads(run_batos("info", "--json", "--image", url, env=env,
                                    check=True).stdout)
        assert sorted(r["role"] for r in info["runners"] if r["alive"]) == ["kernel", "worker"]
        token = (tmp_path / "data").rglob("api-token")
        assert next(token).stat().st_mode & 0o077 == 0
    finally:
        for p in (worker, kernel):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                assert p.wait(60) == 0, p.stderr.read()[-2000:]
    info = json.loads(run_batos("info", "--json", "--image", url, env=env, check=True).stdout)
    assert info["runners"] == []                   # both left on their way out
