"""Missions and the persistent queue they wait in.

A mission is a prototype object whose parent slot is its current state
(``root['states'][S]``): it delegates to that state, so ``mission.prompt``
is the prompt of the state it is in. ``root['missions']`` maps id -> mission;
``root['queue']`` maps a time-ordered key -> mission id. Enqueueing inserts a
fresh key and completing deletes one; with the queue's permanent head key
(``QUEUE_HEAD``) BTrees resolve such concurrent changes, so consoles, the
HTTP API, the heartbeat and the workers never conflict over the queue.

A mission leaves the queue only in the transaction that completes it (or
records its failure). A kernel killed mid-mission therefore leaves it queued;
the next kernel runs it again (``attempts`` counts the tries).
"""
import time

from persistent.list import PersistentList

from image.keys import new_key
from mindhost.minds import MINDS
from prototypes import UvmObject

from .runners import EXPIRY, claimable

KINDS = ("chat", "task", "audit", "extend")
# The queue keeps a head key "" for good: BTrees resolve concurrent inserts and
# deletes of distinct keys unless the first key changes or the bucket empties
# (measured), so writers never conflict over it.
QUEUE_HEAD = ""
TERMINAL = ("COMPLETE", "FAILED")
MAX_ATTEMPTS = 3        # a mission that took the kernel down this often is failed, not retried


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
        "created": now, "started": None, "finished": None, "attempts": 0, "error": None})
    root["missions"][mid] = m
    root["queue"][mid] = mid
    return m


def enter(root, mission, state):
    """Move ``mission`` to ``state``: it now delegates to that state prototype."""
    mission.set_slot("parent*", root["states"][state])
    mission.state = state
    mission.trail.append((state, time.time()))


def claim(root, mid, kernel_id, minds=(), expiry=None):
    """Mark a queued mission as taken by a runner (a short commit of its own); None if it
    is done, or held by another runner that is still alive (runners.py)."""
    m = root["missions"].get(mid)
    if m is None or m.state in TERMINAL or m.id not in root["queue"]:
        return None                  # done meanwhile: nothing to run
    if "runners" in root and not claimable(root, m, kernel_id, minds=minds,
                                           expiry=EXPIRY if expiry is None else expiry):
        return None
    m.started = time.time()
    m.attempts = m.attempts + 1
    m.runner = kernel_id
    return m


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
            "attempts": m.attempts, "error": m.error, "created": m.created,
            "finished": m.finished, "source": m.source}


def record_failure(root, mid, state, reason, kernel_id=None) -> str:
    """The one trace a failed cycle leaves: the mission marked FAILED and a failure record."""
    from persistent.mapping import PersistentMapping
    now = time.time()
    m = root["missions"].get(mid)
    key = new_key(now)
    root["failures"][key] = PersistentMapping({
        "mission": mid, "state": state, "reason": reason, "time": now, "kernel": kernel_id,
        "request": m.request if m is not None else None})
    if m is not None:
        enter(root, m, "FAILED")
        m.error = reason
        m.finished = now
        dequeue(root, m)
    return key
