"""Who runs missions: a presence record per kernel and worker, and whose claims still hold.

``root['runners']`` maps a runner's id (host:pid:start time) to a record that
only its own process writes, every few seconds: its role (kernel or worker),
host, pid, the minds it claims missions for, when it started, when it was
last seen, the missions it is running and how many it has finished.

Rules:
- A runner may claim a queued mission nobody claimed, one it claimed itself,
  or one whose claimer has not been seen for ``expiry`` seconds (killed, or
  cut off): the claim lapses with its runner's presence. On the claimer's own
  host a process that no longer exists has lapsed at once.
- A mission leaves the queue only in the transaction that completes it. Two
  runners completing the same mission write the same mission object, so the
  second commit conflicts, and its retry finds the mission complete: no
  mission completes twice, and one whose runner died stays queued.
"""
import os
import socket
import time

from persistent.mapping import PersistentMapping

EXPIRY = 30.0            # seconds of silence after which a runner's claims lapse


def new_id(started=None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{int(started or time.time())}"


def beat(root, runner_id, *, role, minds=(), running=(), done=0, started=None, address=None,
         now=None):
    """Write this runner's presence (its own record only, so runners never conflict)."""
    now = time.time() if now is None else now
    rec = root["runners"].get(runner_id)
    if rec is None:
        host, pid, _ = runner_id.rsplit(":", 2)
        rec = root["runners"][runner_id] = PersistentMapping(
            {"id": runner_id, "role": role, "host": host, "pid": int(pid),
             "started": started or now})
    rec.update({"minds": list(minds), "seen": now, "running": sorted(running), "done": done,
                "address": address})
    return rec


def leave(root, runner_id):
    root["runners"].pop(runner_id, None)


def alive(root, runner_id, now=None, expiry=EXPIRY) -> bool:
    """Seen within ``expiry`` seconds, and, on this host, its process still exists (a
    restarted kernel need not wait out the silence of the one that was killed)."""
    rec = root["runners"].get(runner_id) if runner_id else None
    now = time.time() if now is None else now
    if rec is None or now - rec["seen"] >= expiry:
        return False
    return rec["host"] != socket.gethostname() or _process_exists(rec["pid"])


def _process_exists(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # someone else's process: it exists
        return True
    return True


def claimable(root, m, me, *, minds=(), now=None, expiry=EXPIRY) -> bool:
    """May runner ``me`` (claiming for ``minds``; empty: all) take queued mission ``m``?"""
    if m is None or (minds and m.mind not in minds):
        return False
    runner = getattr(m, "runner", None)
    return m.started is None or runner in (None, me) or not alive(root, runner, now, expiry)


def served(img) -> bool:
    """Do runners take this image's missions? Over ZEO a kernel serves it; on PostgreSQL,
    when a kernel or worker is alive. (Otherwise a console runs its missions itself.)"""
    if img.location.kind == "zeo":
        return True
    if img.location.kind != "postgresql":
        return False
    with img.view() as root:
        return "runners" in root and any(alive(root, rid) for rid in list(root["runners"]))


def rows(root, now=None, expiry=EXPIRY) -> list:
    """Plain data about every runner, with its silence and whether its claims hold."""
    now = time.time() if now is None else now
    out = []
    for rec in root["runners"].values():
        r = dict(rec)
        r["minds"], r["running"] = list(r.get("minds", ())), list(r.get("running", ()))
        r["silent_s"] = round(now - rec["seen"], 1)
        r["alive"] = alive(root, rec["id"], now, expiry)
        out.append(r)
    return sorted(out, key=lambda r: (r["role"], r["started"]))


def forget_gone(root, now=None, keep=3600.0):
    """Drop the records of runners silent for ``keep`` seconds (an hour by default)."""
    now = time.time() if now is None else now
    for rid in [k for k, rec in root["runners"].items() if now - rec["seen"] > keep]:
        del root["runners"][rid]
