"""Runners and the claim protocol: who may run a mission, and whose writes count.

A *runner* is a process that takes missions from the shared queue: the
kernel, or a `batos kernel --runner` process on this or another machine (and,
for one mission at a time, a standalone console). Inside a runner, *mission
threads* run the missions; untrusted methods run in *sandbox processes*
(guardians/workers.py). Those three words mean only that.

Presence. ``root['runners']`` maps a runner's id to a record that only that
runner writes, every ``presence`` seconds (its *presence beat*; the kernel's
self-audit is the *heartbeat*, another thing): role, machine, pid, the minds
it claims for, what it is running. A record is never compared with anyone's
wall clock: its age is **storage time**, the record's ``_p_serial`` (the id of
the transaction that last wrote it) against the newest transaction id the
reader sees. ZEO's server and PostgreSQL (RelStorage's ``clock_timestamp()``)
assign those ids from one clock, so runners on machines whose clocks
disagree still agree on who has been silent. A runner beats before it
judges anyone, and keeps beating, so the storage time it reads lags real
time by at most ``presence`` seconds. A runner is *lapsed* when its record is
gone, or ``expiry`` seconds of storage time old, or it is on this very
machine (same machine id, boot and pid namespace: not the hostname) and its
process is gone. ``expiry`` is one setting (``KernelOptions.expiry``): each
runner declares its own in its record, and every reader judges it by that.

The protocol (kernel/missions.py carries it out; tests/test_chaos.py attacks it):

1. **Claim.** In one short transaction a runner claims a queued, unfinished
   mission that nobody holds, that it holds itself, or whose holder has
   lapsed. The claim bumps the mission's ``epoch``; the pair (runner, epoch)
   is the *fence* the runner keeps. Taking over from a lapsed holder counts a
   *lapse*; at ``MAX_LAPSES`` lapses the claim fails the mission instead ("its
   runners died N times while holding it"), in that same transaction. Clean
   stops never count.
2. **Fenced writes.** Every later write about the mission (the cycle's states,
   its completion, its failure, handing it back) first checks, in the same
   transaction, that the mission still carries this runner's fence. A
   stale runner's write is refused and logged, never applied; if the fence
   moves while the transaction is open, the commit conflicts and the retry
   sees the new fence.
3. **Stop.** A runner that is asked to stop claims nothing more, cancels
   nothing it has not started, lets started missions finish within the grace
   period, then cancels them and hands each back (``release``: holder
   cleared, no lapse counted) before it leaves; its record goes last.
4. **Answers.** A mission's outcome lives in the mission (``state``,
   ``answer``, ``error``); whoever asked follows that stored state
   (``Kernel.follow``), so a request hears its answer whichever runner ran it.

Invariants: a mission completes at most once (completion is a fenced write
of the mission object, so two completions conflict and the retry finds it
finished); a mission is FAILED only by the runner holding its claim, or by a
claim after ``MAX_LAPSES`` lapses; a clean stop leaves every unfinished
mission queued, unclaimed and with no lapse counted.
"""
import functools
import hashlib
import os
import socket
import time
import uuid
from pathlib import Path

from persistent.mapping import PersistentMapping
from persistent.timestamp import TimeStamp
from ZODB.utils import z64

EXPIRY = 30.0           # KernelOptions.expiry's default: storage seconds of silence before a lapse
FORGET = 3600.0         # storage seconds after which a silent runner's record is dropped


def new_id(started=None) -> str:
    """``host:pid:start`` plus random bits: unique even for two processes started in one
    second with a reused pid. The host part is for people; identity is ``machine_id()``."""
    return (f"{socket.gethostname()}:{os.getpid()}:{int(started or time.time())}:"
            f"{uuid.uuid4().hex[:6]}")


@functools.lru_cache(maxsize=1)
def machine_id() -> str:
    """Who "this machine" is, for the rule "its process is gone": the OS's machine id (or
    one made once in the state folder), this boot, and this pid namespace (two containers
    from one image share a machine id, never a pid namespace). Not the hostname."""
    parts = []
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            parts.append(Path(path).read_text().strip())
            break
        except OSError:
            continue
    if not parts or not parts[0]:
        parts = [_state_id()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    except OSError:
        import psutil
        parts.append(str(int(psutil.boot_time())))
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _state_id() -> str:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "batos"
    f = base / "machine-id"
    try:
        return f.read_text().strip()
    except OSError:
        pass
    base.mkdir(parents=True, exist_ok=True)
    mine = uuid.uuid4().hex
    tmp = f.with_suffix(f".{os.getpid()}")
    tmp.write_text(mine)
    try:
        os.link(tmp, f)              # the first writer wins; the others read its id
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return f.read_text().strip()


def _process_started(pid):
    """When process ``pid`` started (None: there is none)."""
    import psutil
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:        # someone else's process: it exists
        return -1.0


def storage_now(root) -> float:
    """Seconds since the epoch by the storage's clock: the newest transaction id this
    connection sees."""
    # the connection's own storage view: RelStorage refreshes it per transaction, while
    # the DB-level storage it was opened from may not have polled for a long time
    return TimeStamp(root._p_jar._storage.lastTransaction()).timeTime()


def written_at(obj, now) -> float:
    """When ``obj`` was last committed, by the storage's clock (``now`` if this very
    transaction writes it: it has no serial yet, or an older one)."""
    if obj._p_changed is None:
        obj._p_activate()
    if obj._p_changed or obj._p_serial == z64:
        return now
    return TimeStamp(obj._p_serial).timeTime()


def beat(root, runner_id, *, role, minds=(), running=(), done=0, started=None, address=None,
         expiry=EXPIRY):
    """Write this runner's presence record (its own record only: runners never conflict).
    ``expiry``: how long it may be silent before its claims lapse; every reader judges
    this record by it (one setting, declared by the runner it is about)."""
    rec = root["runners"].get(runner_id)
    if rec is None:
        import psutil
        host, pid = runner_id.split(":")[:2]
        rec = root["runners"][runner_id] = PersistentMapping({
            "id": runner_id, "role": role, "host": host, "pid": int(pid),
            "machine": machine_id(), "process_started": psutil.Process().create_time(),
            "started": started or time.time()})
    rec.update({"minds": list(minds), "running": sorted(running), "done": done,
                "address": address, "expiry": float(expiry), "beats": rec.get("beats", 0) + 1})
    return rec


def leave(root, runner_id):
    root["runners"].pop(runner_id, None)


class Judge:
    """Liveness as one reader sees it, in one transaction: storage time read once. Each
    record is judged by the expiry it declares (``expiry`` here: for records without)."""

    def __init__(self, root, expiry=EXPIRY):
        self.root, self.expiry = root, expiry
        self.now = storage_now(root)

    def silence(self, rec) -> float:
        return self.now - written_at(rec, self.now)

    def alive(self, runner_id) -> bool:
        rec = self.root["runners"].get(runner_id) if runner_id else None
        if rec is None or self.silence(rec) >= rec.get("expiry", self.expiry):
            return False
        if rec.get("machine") != machine_id():
            return True
        started = _process_started(rec["pid"])      # same machine: a gone process has lapsed
        return started is not None and (started < 0 or abs(started - rec["process_started"]) < 1)

    def claimable(self, m, me, minds=()) -> bool:
        """May runner ``me`` (claiming for ``minds``; empty: all) take queued mission ``m``?"""
        if m is None or (minds and m.mind not in minds):
            return False
        holder = m.lookup("runner", None)
        return holder in (None, me) or not self.alive(holder)

    def rows(self) -> list:
        """Plain data about every runner, with its silence and whether its claims hold."""
        out = []
        for rec in self.root["runners"].values():
            r = dict(rec)
            r["minds"], r["running"] = list(r.get("minds", ())), list(r.get("running", ()))
            r["silent_s"] = round(self.silence(rec), 1)
            r["alive"] = self.alive(rec["id"])
            out.append(r)
        return sorted(out, key=lambda r: (r["role"], r["started"]))

    def forget_gone(self, keep=FORGET):
        """Drop the records of runners silent for ``keep`` storage seconds."""
        for rid in [k for k, rec in self.root["runners"].items() if self.silence(rec) > keep]:
            del self.root["runners"][rid]


def rows(root, expiry=EXPIRY) -> list:
    return Judge(root, expiry).rows()


def served(img) -> bool:
    """Do runners take this image's missions? Where the storage is served to several
    processes, when a runner is alive. (Otherwise a console runs its missions itself.)"""
    if not img.location.shared:
        return False
    with img.view() as root:
        if "runners" not in root:
            return False
        judge = Judge(root)
        return any(judge.alive(rid) for rid in list(root["runners"]))
