"""Missions and the persistent queue they wait in.

A mission is a prototype object whose parent slot is its current state
(``root['states'][S]``): it delegates to that state, so ``mission.prompt``
is the prompt of the state it is in. ``root['missions']`` maps id -> mission;
``root['queue']`` maps a time-ordered key -> mission id. Enqueueing inserts a
fresh key and completing deletes one; with the queue's permanent head key
(``QUEUE_HEAD``) BTrees resolve such concurrent changes, so consoles, the
HTTP API, the heartbeat and the runners never conflict over the queue.

A mission leaves the queue only in the transaction that completes it (or
records its failure). A runner killed mid-mission therefore leaves it queued;
the next claim runs it again (``attempts`` counts claims, ``lapses`` the
runners that died holding it). Claims and fences: runners.py.
"""
import time

from persistent.list import PersistentList

from image.errors import ImageError
from image.keys import new_key
from mindhost.minds import MINDS
from prototypes import UvmObject

from .runners import EXPIRY, Judge

KINDS = ("chat", "task", "audit", "extend")
# The queue keeps a head key "" for good: BTrees resolve concurrent inserts and
# deletes of distinct keys unless the first key changes or the bucket empties
# (measured), so writers never conflict over it.
QUEUE_HEAD = ""
TERMINAL = ("COMPLETE", "FAILED")
MAX_LAPSES = 3          # runners died holding a mission this often: it is failed, not retried


def new_mission(root, mind, request, *, kind="chat", history=(), options=None, source="api",
                plan=None) -> UvmObject:
    """Create a mission in IDLE and queue it; return it (commit to make it visible)."""
    if mind not in MINDS:
        raise ValueError(f"a mission goes to {' or '.join(MINDS)}, not {mind!r}")
    if kind not in KINDS:
        raise ValueError(f"a mission kind is one of {', '.join(KINDS)}, not {kind!r}")
    now = time.time()
    mid = new_key(now)
    m = UvmObject(**{
        "name": f"mission {mid}", "parent*": root["states"]["IDLE"], "id": mid, "kind": kind,
        "mind": mind, "request": request, "history": [dict(t) for t in history],
        "options": dict(options or {}), "source": source, "state": "IDLE",
        "trail": PersistentList([("IDLE", now)]), "plan": list(plan or []), "results": [],
        "answer": None, "speaker": None, "routed_to": None, "exchanges": [],
        "created": now, "started": None, "finished": None, "attempts": 0, "error": None,
        "runner": None, "epoch": 0, "lapses": 0})
    root["missions"][mid] = m
    root["queue"][mid] = mid
    return m


def enter(root, mission, state):
    """Move ``mission`` to ``state``: it now delegates to that state prototype."""
    mission.set_slot("parent*", root["states"][state])
    mission.state = state
    mission.trail.append((state, time.time()))


class StaleClaim(ImageError):
    """A runner wrote about a mission it no longer holds: the write is refused."""


def claim(root, mid, me, minds=(), expiry=EXPIRY):
    """Claim queued mission ``mid`` for runner ``me`` (a short transaction of its own);
    return the fence ``(me, epoch)`` every later write must show, or None: done meanwhile,
    held by a live runner, or failed here after ``MAX_LAPSES`` lapsed claims (runners.py)."""
    m = root["missions"].get(mid)
    if m is None or m.state in TERMINAL or m.id not in root["queue"]:
        return None                  # done meanwhile: nothing to run
    judge = Judge(root, expiry)
    if not judge.claimable(m, me, minds):
        return None
    holder = m.lookup("runner", None)
    if holder not in (None, me):     # its holder lapsed: died or cut off, mid-mission
        m.lapses = m.lookup("lapses", 0) + 1
        if m.lapses >= MAX_LAPSES:
            _fail(root, m, m.state, f"gave up: the runners holding it lapsed {m.lapses} times "
                                    f"(killed or cut off while running it; last {holder})", me)
            return None
    m.epoch = m.lookup("epoch", 0) + 1
    m.runner = me
    m.started = time.time()
    m.attempts = m.attempts + 1
    return (me, m.epoch)


def holds(root, mid, fence) -> bool:
    """Does ``fence`` still hold mission ``mid``? The check joins the caller's transaction:
    a claim committed meanwhile makes its commit conflict."""
    m = root["missions"].get(mid)
    if m is None:
        return False
    root._p_jar.readCurrent(m._slots)
    return (m.lookup("runner", None), m.lookup("epoch", 0)) == tuple(fence)


def check_fence(root, mid, fence, what):
    """Raise StaleClaim unless ``fence`` holds ``mid`` (None: an unclaimed, in-process run)."""
    if fence is not None and not holds(root, mid, fence):
        m = root["missions"].get(mid)
        now = (m.lookup("runner", None), m.lookup("epoch", 0)) if m is not None else None
        raise StaleClaim(f"mission {mid}: {what} refused: runner {fence[0]} (epoch {fence[1]}) "
                         f"no longer holds it (now {now})")


def release(root, mid, fence) -> bool:
    """Hand a claim back (a clean stop): the mission stays queued for anyone, no lapse."""
    if not holds(root, mid, fence):
        return False
    m = root["missions"][mid]
    if m.state not in TERMINAL:
        m.runner = None
    return True


def dequeue(root, m):
    """The mission leaves the queue (its queue key is its id)."""
    root["queue"].pop(m.id, None)


def queued(root, limit=100) -> list:
    """Mission ids waiting, oldest first."""
    ids = root["queue"].values(min=QUEUE_HEAD, excludemin=True)
    return list(ids[:limit]) if len(ids) else []


def queue_length(root) -> int:
    return len(root["queue"].keys(min=QUEUE_HEAD, excludemin=True))


def recent(root, n=10) -> list:
    """The last ``n`` missions, oldest first."""
    keys = list(root["missions"].keys()[-n:]) if n and len(root["missions"]) else []
    return [root["missions"][k] for k in keys]


def summary(m) -> dict:
    """Plain data about a mission, for tables and JSON."""
    return {"id": m.id, "kind": m.kind, "mind": m.mind, "state": m.state,
            "running": m.state not in TERMINAL and m.started is not None,
            "request": m.request, "answer": m.answer, "speaker": m.speaker,
            "routed_to": m.routed_to, "exchanges": [list(e) for e in m.exchanges],
            "attempts": m.attempts, "lapses": m.lookup("lapses", 0), "error": m.error,
            "created": m.created, "finished": m.finished, "source": m.source,
            "runner": m.lookup("runner", None), "usage": _plain(m.lookup("usage", None))}


def _plain(v):
    return dict(v) if v is not None else None


def record_failure(root, mid, state, reason, runner=None, fence=None) -> str:
    """The one trace a failed cycle leaves: the mission marked FAILED and a failure record.
    With a ``fence``, only while it still holds the mission (StaleClaim otherwise)."""
    check_fence(root, mid, fence, "failure")
    m = root["missions"].get(mid)
    if m is not None and m.state in TERMINAL:
        raise StaleClaim(f"mission {mid} is already {m.state}: its failure is not recorded")
    return _fail(root, m, state, reason, runner, mid)


def _fail(root, m, state, reason, runner, mid=None) -> str:
    from persistent.mapping import PersistentMapping
    now = time.time()
    key = new_key(now)
    root["failures"][key] = PersistentMapping({
        "mission": m.id if m is not None else mid, "state": state, "reason": reason,
        "time": now, "kernel": runner, "request": m.request if m is not None else None})
    if m is not None:
        enter(root, m, "FAILED")
        m.error = reason
        m.finished = now
        dequeue(root, m)
    return key
