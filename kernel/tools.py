"""Tools a mission step can call: one registry dict, one way to register.

A tool is ``fn(ctx, text) -> str``; ``ctx`` is the running cycle (its root,
services and mission). Registering a name twice is an error, loudly.
"""
import time

from guardians.limits import rss

TOOLS = {}


def register(name, fn=None, *, doc=None):
    """``register("now", fn)`` or as a decorator ``@register("now")``."""
    def add(f):
        if name in TOOLS:
            raise ValueError(f"a tool named {name!r} is already registered")
        TOOLS[name] = f
        f.tool_doc = doc or (f.__doc__ or "").strip().splitlines()[0]
        return f
    return add(fn) if fn is not None else add


@register("now")
def now(ctx, text=""):
    """The local date and time."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def rss_bytes():
    """Resident memory of this process (the reading the method limits use)."""
    return rss()


def audit(root, loaded=(), exclude=None) -> dict:
    """The self-audit report: what the image holds and how the kernel is doing."""
    from .missions import TERMINAL, queue_length, recent
    last = [m for m in recent(root, 200) if m.id != exclude]   # not the audit itself
    states = {}
    for m in last:
        states[m.state] = states.get(m.state, 0) + 1
    report = {
        "time": time.time(), "queued": queue_length(root) - (exclude is not None),
        "missions": len(root["missions"]) - (exclude is not None),
        "recent_states": states, "failures": len(root["failures"]),
        "stuck": [m.id for m in last if m.state not in TERMINAL and m.attempts > 1],
        "ledgers": {k: len(root[k].ledger) for k in ("orai", "hermes")},
        "generations": {k: root[k].generation for k in ("orai", "hermes")},
        "rss_bytes": rss_bytes(), "models_loaded": list(loaded),
    }
    return report


@register("self_audit")
def self_audit(ctx, text=""):
    """Counts of missions, failures and ledger entries; memory use."""
    report = audit(ctx.root, ctx.services.pool.loaded_names(), exclude=ctx.mission.id)
    ctx.artifacts["audit"] = report
    return (f"{report['queued']} queued, {report['missions']} missions "
            f"({', '.join(f'{k} {v}' for k, v in sorted(report['recent_states'].items()))}), "
            f"{report['failures']} failures; ledgers orai {report['ledgers']['orai']}, hermes "
            f"{report['ledgers']['hermes']}; {report['rss_bytes'] / 2**20:.0f} MiB resident")


@register("extend", doc="Write a missing method (extend missions only).")
def extend_tool(ctx, text):
    """The step of an ``extend`` mission: write, install and re-send, in the cycle's transaction."""
    from .extend import run_step  # self-extension loads only when a mission needs it
    return run_step(ctx, text)


extend_tool.internal = True      # not offered to minds planning a task
