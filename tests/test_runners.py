"""Missions spread over a kernel and runners in several processes sharing one image."""
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, batos_env, run_batos
from runner_proc import client_spec, start

from image import open_image
from kernel import missions as ms
from kernel import runners



# -- the rules, on a memory image -----------------------------------------------------

def _elsewhere(root, rid, role="runner"):
    """A presence record of a runner on another machine (no pid check applies)."""
    rec = runners.beat(root, rid, role=role)
    rec["machine"] = "another-machine"
    return rec


def test_claims_lapse_with_their_runners_presence_by_storage_time(mem_image, storage_clock):
    with mem_image.transaction() as conn:
        root = conn.root()
        m = ms.new_mission(root, "hermes", "hello")
        _elsewhere(root, "elsewhere:4242:1:a")
        runners.beat(root, "me:1:1:b", role="kernel")
        mid = m.id
    fence = mem_image.run(ms.claim, mid, "elsewhere:4242:1:a", expiry=30)
    assert fence == ("elsewhere:4242:1:a", 1)
    storage_clock(20)
    mem_image.run(runners.beat, "me:1:1:b", role="kernel")
    with mem_image.view() as root:
        judge = runners.Judge(root, 30)
        assert 19 < judge.silence(root["runners"]["elsewhere:4242:1:a"]) < 25
        # another runner may not take it while the claimer is seen, nor one for orai only
        assert not judge.claimable(root["missions"][mid], "me:1:1:b")
        assert not judge.claimable(root["missions"][mid], "me:1:1:b", ("orai",))
        assert judge.claimable(root["missions"][mid], "elsewhere:4242:1:a")     # its own
    assert mem_image.run(ms.claim, mid, "me:1:1:b", expiry=30) is None
    storage_clock(15)           # 35 s of storage time since the claimer's last beat
    mem_image.run(runners.beat, "me:1:1:b", role="kernel")
    assert mem_image.run(ms.claim, mid, "me:1:1:b", expiry=30) == ("me:1:1:b", 2)
    with mem_image.view() as root:
        m = root["missions"][mid]
        assert (m.attempts, m.lapses, m.runner, m.epoch) == (2, 1, "me:1:1:b", 2)


def test_a_wall_clock_ahead_or_behind_changes_nothing(mem_image, monkeypatch):
    """Liveness reads transaction ids only: a reader whose own clock is 90 s off (but whose
    storage is not) judges a fresh record fresh and a stale one stale."""
    with mem_image.transaction() as conn:
        _elsewhere(conn.root(), "elsewhere:1:1:a")
    real = time.time
    for skew in (90.0, -90.0):
        monkeypatch.setattr(runners.time, "time", lambda: real() + skew)
        with mem_image.view() as root:
            judge = runners.Judge(root, 30)
            assert judge.alive("elsewhere:1:1:a") and judge.silence(
                root["runners"]["elsewhere:1:1:a"]) < 5


def test_a_stale_runner_can_neither_complete_nor_fail_its_mission(mem_image, storage_clock):
    from kernel.psm import Services, run_mission
    with mem_image.transaction() as conn:
        root = conn.root()
        mid = ms.new_mission(root, "hermes", "hello").id
        _elsewhere(root, "stale:1:1:a")
    old = mem_image.run(ms.claim, mid, "stale:1:1:a")
    storage_clock(runners.EXPIRY + 5)                # it sleeps; its claim lapses
    mem_image.run(runners.beat, "new:1:1:b", role="runner")
    new = mem_image.run(ms.claim, mid, "new:1:1:b")
    assert new == ("new:1:1:b", 2)
    # it wakes up and tries to fail the mission, then to complete it: both refused
    with pytest.raises(ms.StaleClaim, match="no longer holds"):
        mem_image.run(ms.record_failure, mid, "DELEGATING", "late", "stale:1:1:a", old)
    svc = Services(pool=None, embedder=None)
    with pytest.raises(ms.StaleClaim):
        run_mission(mem_image, mid, svc, fence=old)
    with mem_image.view() as root:
        m = root["missions"][mid]
        assert (m.state, m.runner, m.error, len(root["failures"])) == ("IDLE", "new:1:1:b",
                                                                       None, 0)
    # once it is complete, nobody's late failure turns it into FAILED
    with mem_image.transaction() as conn:
        m = conn.root()["missions"][mid]
        ms.enter(conn.root(), m, "COMPLETE")
        ms.dequeue(conn.root(), m)
    with pytest.raises(ms.StaleClaim, match="already COMPLETE"):
        mem_image.run(ms.record_failure, mid, "DELEGATING", "late", "new:1:1:b", new)
    with mem_image.view() as root:
        assert root["missions"][mid].state == "COMPLETE" and len(root["failures"]) == 0


def test_the_attempt_cap_is_in_the_claim_and_stops_do_not_count(mem_image, storage_clock):
    with mem_image.transaction() as conn:
        mid = ms.new_mission(conn.root(), "hermes", "poison").id
    for i in range(ms.MAX_LAPSES):                   # each holder dies holding it
        rid = f"doomed:{i}:1:a"
        mem_image.run(_elsewhere, rid)
        fence = mem_image.run(ms.claim, mid, rid)
        assert fence == (rid, i + 1)
        storage_clock(runners.EXPIRY + 1)
    mem_image.run(_elsewhere, "last:1:1:a")
    assert mem_image.run(ms.claim, mid, "last:1:1:a") is None
    with mem_image.view() as root:
        m = root["missions"][mid]
        assert m.state == "FAILED" and f"lapsed {ms.MAX_LAPSES} times" in m.error
        assert ms.queued(root) == [] and len(root["failures"]) == 1
    with mem_image.transaction() as conn:
        mid = ms.new_mission(conn.root(), "hermes", "stopped often").id
    for i in range(ms.MAX_LAPSES + 2):
        rid = f"polite:{i}:1:a"
        mem_image.run(_elsewhere, rid)
        fence = mem_image.run(ms.claim, mid, rid)
        assert fence is not None and mem_image.run(ms.release, mid, fence)
        storage_clock(runners.EXPIRY + 1)
    with mem_image.view() as root:
        m = root["missions"][mid]
        assert (m.state, m.lapses, m.runner, m.attempts) == ("IDLE", 0, None, ms.MAX_LAPSES + 2)


def test_each_record_is_judged_by_the_expiry_its_runner_declares(mem_image, storage_clock):
    with mem_image.transaction() as conn:
        _elsewhere(conn.root(), "quick:1:1:a")["expiry"] = 5.0
        _elsewhere(conn.root(), "slow:1:1:a")["expiry"] = 60.0
    storage_clock(6)
    mem_image.run(runners.beat, "me:1:1:b", role="kernel")
    with mem_image.view() as root:
        for expiry in (2.0, 30.0, 100.0):          # whatever the reader's own setting
            judge = runners.Judge(root, expiry)
            assert not judge.alive("quick:1:1:a") and judge.alive("slow:1:1:a")


def test_a_runner_that_beats_and_forgets_in_one_transaction_keeps_its_own_record(mem_image):
    """Its new record has no serial yet: it is not "silent since 1900" and not dropped."""
    with mem_image.transaction() as conn:
        runners.beat(conn.root(), "me:1:1:b", role="kernel")
        runners.Judge(conn.root()).forget_gone()
    with mem_image.view() as root:
        assert list(root["runners"]) == ["me:1:1:b"]


def test_a_gone_process_on_this_machine_has_lapsed_at_once(mem_image):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    me = runners.new_id()
    gone = f"{me.split(':')[0]}:{proc.pid}:1:x"
    with mem_image.transaction() as conn:
        root = conn.root()
        runners.beat(root, gone, role="runner")      # on this machine, but its process is gone
        runners.beat(root, me, role="kernel")
    with mem_image.view() as root:
        root._p_jar.cacheMinimize()        # the records as loaded from storage (new strings)
        judge = runners.Judge(root)
        assert not judge.alive(gone) and judge.alive(me)
        assert sorted(r["alive"] for r in runners.rows(root)) == [False, True]


def test_a_hostname_is_not_a_machine(mem_image):
    """A record from another machine that happens to share this hostname and a pid that is
    gone here is judged by its silence, not by this machine's process table."""
    with mem_image.transaction() as conn:
        rec = _elsewhere(conn.root(), f"{runners.new_id().split(':')[0]}:999999:1:x")
    with mem_image.view() as root:
        assert runners.Judge(root).alive(rec["id"])
    assert runners.machine_id() == runners.machine_id() and len(runners.machine_id()) == 16


def test_a_mission_the_image_is_too_busy_to_commit_is_handed_back(folder_image, monkeypatch):
    """Every commit conflicted (run_mission raises a TransientError): the runner hands its
    claim back, so the mission is queued for anyone, with no failure and no lapse."""
    from ZODB.POSException import ConflictError

    from image import resolve
    from kernel import kernel as kernel_mod
    from kernel.kernel import Kernel

    def busy(img, mid, services, **kw):
        raise ConflictError("every try conflicted")
    monkeypatch.setattr(kernel_mod, "run_mission", busy)
    with folder_image.transaction() as conn:
        mid = ms.new_mission(conn.root(), "hermes", "hello").id
    folder_image.close()
    k = Kernel(resolve(str(folder_image.location.path)), http="off", threads=0, heartbeat=0,
               dream_at="off").start()
    try:
        k._run(mid)
        with k.img.view() as root:
            m = root["missions"][mid]
            assert (m.runner, m.attempts, m.lapses, m.state) == (None, 1, 0, "IDLE")
            assert ms.queued(root) == [mid] and len(root["failures"]) == 0
        kind, said = k.stream(mid).events[-1][:2]
        assert kind == "cancelled" and "too busy" in said
    finally:
        k.stop()


def test_bad_worker_options_are_refused():
    from image.errors import SettingsError
    from kernel.options import options
    with pytest.raises(SettingsError, match="no mind named"):
        options(runner=True, minds=["nobody"])
    with pytest.raises(SettingsError, match="expiry"):
        options(presence=10, expiry=5)


# -- real processes ---------------------------------------------------------------------

def _holds_slow(img, runner):
    with img.view() as root:
        return any(m.runner == runner and m.state != "COMPLETE" and "slow" in m.request
                   for m in root["missions"].values() if getattr(m, "runner", None))


def _done(img):
    """How many missions are COMPLETE (a FAILED one fails the waiting test at once)."""
    with img.view() as root:
        states = [m.state for m in root["missions"].values()]
    assert "FAILED" not in states, f"a mission failed:\n{_unfinished(img)}"
    return states.count("COMPLETE")


def _unfinished(img):
    """What a failed wait reports: each mission not COMPLETE, the failures, the runners."""
    with img.view() as root:
        said = [ms.summary(m) for m in root["missions"].values() if m.state != "COMPLETE"]
        said += [dict(f) for f in root["failures"].values()] + runners.rows(root)
    return "\n".join(map(str, said))


def test_a_kernel_and_two_workers_complete_each_mission_once_with_one_worker_killed(
        shared_image, tmp_path):
    n = 100
    img = open_image(shared_image)
    with img.transaction() as conn:
        # every tenth one is slow: a window in which to kill a runner mid-mission
        ids = [ms.new_mission(conn.root(), "hermes", f"{'slow ' if i % 10 == 5 else ''}"
                              f"question {i}").id for i in range(n)]
    img.close()
    env = batos_env(tmp_path)
    procs = []
    try:
        procs.append(start(shared_image, "kernel", env)[0])
        # runners reach a folder image through the ZEO server its kernel serves
        a, a_id = start(shared_image, "runner", env)
        procs += [a, start(shared_image, "runner", env)[0]]
        spec = client_spec(shared_image)
        img = open_image(spec)
        deadline = time.monotonic() + 240
        while _done(img) < n // 2 or not _holds_slow(img, a_id):
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        os.kill(a.pid, signal.SIGKILL)                 # mid-mission: it holds a slow one
        a.wait(30)
        while _done(img) < n:
            assert time.monotonic() < deadline, (
                f"only {_done(img)} of {n} done:\n{_unfinished(img)}")
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
            others = [r for r in rows.values() if r["role"] == "runner"]
            assert len(others) == 2 and sum(not r["alive"] for r in others) == 1
            did = {m.runner for m in (root["missions"][i] for i in ids)}
            assert len(did) >= 2                       # the work was shared
            # what the killed runner had claimed, another runner ran again (a mission handed
            # back when the image was too busy to commit it is retried too, with no lapse)
            retried = [root["missions"][i] for i in ids if root["missions"][i].lapses > 0]
            assert retried and all(rows[m.runner]["alive"] for m in retried), [
                (m.id, m.attempts, m.lapses, m.epoch, m.runner, rows[m.runner]["alive"])
                for m in retried]
        img.close()
        shown = run_batos("missions", "-n", "3", "--image", spec, env=env, check=True).stdout
        assert "runners" in shown and "runner" in shown and "(gone)" in shown
    finally:
        for p in reversed(procs):           # runners first: the kernel may serve the image
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
    k, k_id = start(shared_image, "kernel", env)
    try:
        img = open_image(client_spec(shared_image))
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
    k, _ = start(shared_image, "kernel", env)         # runs it again at once: same host
    try:
        img = open_image(client_spec(shared_image))
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
    """`batos kernel` runs on a database with no ZEO server; `batos kernel --runner` joins
    it; a second main kernel is refused; a runner for a mind with no model says so."""
    import json
    url = postgres.url()
    env = batos_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"))
    run_batos("init", "--no-models", "--image", url, env=env, check=True)
    cmd = [sys.executable, "-m", "batos", "kernel", "--image", url, "--http", "127.0.0.1:0",
           "--heartbeat", "0", "--dream-at", "off", "--presence", "0.5"]
    kernel = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    runner = None
    try:
        line = kernel.stdout.readline()
        assert line.startswith(f"kernel ready on {url}: zeo None, http http://"), (
            line + kernel.stderr.read()[-2000:])
        second = run_batos(*cmd[3:], env=env, timeout=120)
        assert second.returncode == 2 and "already runs" in second.stderr
        bad = run_batos("kernel", "--worker", "--minds", "hermes", "--image", url, env=env,
                        timeout=120)
        assert bad.returncode == 2 and "hermes" in bad.stderr, bad.stderr
        runner = subprocess.Popen(cmd[:6] + ["--runner", "--presence", "0.5"], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        assert runner.stdout.readline().startswith(f"runner ready on {url}")
        info = json.loads(run_batos("info", "--json", "--image", url, env=env,
                                    check=True).stdout)
        assert sorted(r["role"] for r in info["runners"] if r["alive"]) == ["kernel", "runner"]
        token = (tmp_path / "data").rglob("api-token")
        assert next(token).stat().st_mode & 0o077 == 0
    finally:
        for p in (runner, kernel):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                assert p.wait(60) == 0, p.stderr.read()[-2000:]
    info = json.loads(run_batos("info", "--json", "--image", url, env=env, check=True).stdout)
    assert info["runners"] == []                   # both left on their way out


def test_the_machine_id_is_stable_and_falls_back_to_one_made_once(tmp_path, monkeypatch):
    ours = runners.machine_id()
    assert ours == runners.machine_id() and len(ours) == 16
    int(ours, 16)
    # no OS machine id: one is made once in the state folder, and the first writer wins
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    made = runners._state_id()
    assert (tmp_path / "batos" / "machine-id").read_text() == made and len(made) == 32
    assert runners._state_id() == made
    assert list((tmp_path / "batos").iterdir()) == [tmp_path / "batos" / "machine-id"]
    real = runners.Path

    class NoMachineId(type(real())):
        def read_text(self, *a, **kw):
            if str(self) in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
                raise OSError("none here")
            return super().read_text(*a, **kw)
    monkeypatch.setattr(runners, "Path", NoMachineId)
    runners.machine_id.cache_clear()
    try:
        other = runners.machine_id()
        assert other != ours and other == runners.machine_id()
    finally:
        runners.machine_id.cache_clear()


def test_a_reused_pid_on_this_machine_is_not_its_old_runner(mem_image):
    """Same machine, same pid, another process (its start time differs): lapsed."""
    import os
    me = runners.new_id()
    with mem_image.transaction() as conn:
        root = conn.root()
        rec = runners.beat(root, me, role="kernel")
        assert rec["pid"] == os.getpid() and rec["machine"] == runners.machine_id()
        old = runners.beat(root, f"{me.split(':')[0]}:{os.getpid()}:1:old", role="runner")
        old["process_started"] = rec["process_started"] - 3600
    with mem_image.view() as root:
        judge = runners.Judge(root)
        assert judge.alive(me) and not judge.alive(old["id"])


def test_rows_show_silence_and_forget_drops_only_the_long_silent(mem_image, storage_clock):
    with mem_image.transaction() as conn:
        _elsewhere(conn.root(), "b:1:1:a", role="runner")
    storage_clock(100)
    with mem_image.transaction() as conn:
        _elsewhere(conn.root(), "a:1:1:a", role="kernel")
    with mem_image.view() as root:
        rows = runners.rows(root)
        assert [(r["id"], r["alive"]) for r in rows] == [("a:1:1:a", True), ("b:1:1:a", False)]
        assert rows[0]["silent_s"] < 5 and 95 < rows[1]["silent_s"] < 110
    with mem_image.transaction() as conn:
        runners.Judge(conn.root()).forget_gone(keep=50)
    with mem_image.view() as root:
        assert list(root["runners"]) == ["a:1:1:a"]


def test_served_only_where_runners_share_the_image_and_one_is_alive(mem_image, tmp_path):
    with mem_image.transaction() as conn:
        runners.beat(conn.root(), runners.new_id(), role="kernel")
    assert not runners.served(mem_image)             # memory: nobody else can take it

    class Shared:
        location = type("L", (), {"shared": True})()
        view = mem_image.view
    assert runners.served(Shared())
    with mem_image.transaction() as conn:
        for rid in list(conn.root()["runners"]):
            runners.leave(conn.root(), rid)
    assert not runners.served(Shared())
