"""The runners' smaller rules, each pinned (most found by the mutation check,
bench/mutation.sh): the machine id and its fallbacks, ids, beats, silence and rows."""
import os
import time

import pytest
from test_runners import _elsewhere

from kernel import runners


def test_the_machine_id_is_the_os_machine_id_this_boot_and_this_pid_namespace():
    import hashlib
    from pathlib import Path
    parts = [Path("/etc/machine-id").read_text().strip(),
             Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
             os.readlink("/proc/self/ns/pid")]
    if not parts[0]:
        pytest.skip("this machine has no /etc/machine-id")
    want = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    assert runners.machine_id() == want


def test_a_made_machine_id_goes_in_the_state_folder_even_one_made_already(tmp_path,
                                                                           monkeypatch):
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    for home, there in ((tmp_path / "a", False), (tmp_path / "b", True)):
        monkeypatch.setenv("HOME", str(home))
        if there:
            (home / ".local" / "state" / "batos").mkdir(parents=True)    # there, but empty
        made = runners._state_id()
        assert (home / ".local" / "state" / "batos" / "machine-id").read_text() == made


def test_two_first_writers_of_a_made_machine_id_agree_on_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    real_link = os.link

    def lost_the_race(src, dst):            # another process links its id in first
        (tmp_path / "theirs").write_text("their-id")
        real_link(tmp_path / "theirs", dst)
        raise FileExistsError(dst)
    monkeypatch.setattr(runners.os, "link", lost_the_race)
    assert runners._state_id() == "their-id"
    assert sorted(p.name for p in (tmp_path / "batos").iterdir()) == ["machine-id"]


def test_an_id_is_host_pid_start_and_six_random_hex_digits():
    import socket
    host, pid, start, bits = runners.new_id(started=1234.9).split(":")
    assert (host, pid, start) == (socket.gethostname(), str(os.getpid()), "1234")
    assert len(bits) == 6 and int(bits, 16) >= 0
    assert runners.new_id() != runners.new_id()


def test_a_presence_record_counts_its_beats_and_keeps_its_start(mem_image):
    before = time.time()
    with mem_image.transaction() as conn:
        for _ in range(3):
            rec = runners.beat(conn.root(), "me:1:1:a", role="runner", minds=("hermes",),
                               running={"m2", "m1"}, done=4, expiry=7)
        given = runners.beat(conn.root(), "me:1:1:b", role="runner", started=42.0)
    assert rec["beats"] == 3 and before <= rec["started"] <= time.time()
    assert (rec["minds"], rec["running"], rec["done"], rec["expiry"]) == (
        ["hermes"], ["m1", "m2"], 4, 7.0)
    assert given["started"] == 42.0 and given["beats"] == 1 and given["done"] == 0


def test_a_record_from_any_other_machine_is_judged_by_silence_alone(mem_image):
    """Whatever its id sorts like next to ours: no pid rule applies to it."""
    with mem_image.transaction() as conn:
        for rid, machine in (("low:999999:1:a", "0" * 16), ("high:999999:1:a", "f" * 16)):
            runners.beat(conn.root(), rid, role="runner")["machine"] = machine
    with mem_image.view() as root:
        judge = runners.Judge(root)
        assert judge.alive("low:999999:1:a") and judge.alive("high:999999:1:a")


def _silent_for(img, storage_clock, rid, seconds):
    """A record of another machine's runner, then ``seconds`` of storage time and a beat."""
    with img.transaction() as conn:
        _elsewhere(conn.root(), rid)
    storage_clock(seconds)
    img.run(runners.beat, "me:1:1:b", role="kernel")


def test_silence_is_read_from_a_record_not_yet_loaded(mem_image, storage_clock):
    _silent_for(mem_image, storage_clock, "quiet:1:1:a", 20)
    with mem_image.view() as root:
        import gc

        from ZODB.utils import z64
        judge = runners.Judge(root)
        root._p_jar.cacheMinimize()         # dropped from the cache: loaded anew, as a
        gc.collect()                        # fresh connection would (no serial yet)
        rec = root["runners"]["quiet:1:1:a"]
        assert rec._p_changed is None and rec._p_serial == z64
        assert 19 < judge.silence(rec) < 25


def test_someone_elses_process_that_we_may_not_inspect_still_exists(mem_image, monkeypatch):
    import psutil
    me = runners.new_id()
    with mem_image.transaction() as conn:
        runners.beat(conn.root(), me, role="kernel")

    def denied(pid=None):
        raise psutil.AccessDenied(pid)
    monkeypatch.setattr(psutil, "Process", denied)
    with mem_image.view() as root:
        assert runners.Judge(root).alive(me)


def test_rows_give_silence_to_a_tenth_of_a_second(mem_image, storage_clock):
    _silent_for(mem_image, storage_clock, "b:1:1:a", 12.34)
    with mem_image.view() as root:
        silent = {r["id"]: r["silent_s"] for r in runners.rows(root)}["b:1:1:a"]
    assert silent != round(silent) and silent == round(silent, 1)


def test_without_an_os_machine_id_or_boot_id_the_next_source_is_used(monkeypatch):
    import hashlib

    import psutil
    real = runners.Path
    gone = set()

    class Partly(type(real())):
        def read_text(self, *a, **kw):
            if str(self) in gone:
                raise OSError("none here")
            return super().read_text(*a, **kw)
    monkeypatch.setattr(runners, "Path", Partly)
    dbus = real("/var/lib/dbus/machine-id")
    if not dbus.exists():
        pytest.skip("this machine has no /var/lib/dbus/machine-id")
    ns = os.readlink("/proc/self/ns/pid")
    try:
        gone.update({"/etc/machine-id", "/proc/sys/kernel/random/boot_id"})
        runners.machine_id.cache_clear()
        parts = [dbus.read_text().strip(), str(int(psutil.boot_time())), ns]
        assert runners.machine_id() == hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    finally:
        runners.machine_id.cache_clear()


def test_nothing_is_claimable_that_is_not_there_and_no_table_serves_nobody(mem_image):
    with mem_image.view() as root:
        assert not runners.Judge(root).claimable(None, "me:1:1:a")

    class Shared:
        location = type("L", (), {"shared": True})()

        @staticmethod
        def view():
            import contextlib
            return contextlib.nullcontext({})
    assert not runners.served(Shared())
