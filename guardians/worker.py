"""An isolated worker process: runs untrusted methods, with the OS holding the limits.

Started by ``guardians.workers`` as ``python -m guardians.worker``. It holds
no connection to the image and opens no files once started: everything a
method reads or writes goes over its pipe to the host, which owns the
transaction and checks every write. Before each call it sets its own
address-space limit (memory the call may add) and CPU-time limit; the host
kills it at the wall-clock deadline. After each call it closes the call's
session, collects garbage (finalizers run now, and every stand-in they could
reach refuses), and says ``ready``.
"""
import copy
import gc
import os
import random
import resource
import signal
import sys
import types

from . import modules, wire
from .remote import Session
from .sandbox import compile_method, unrename

_compiled = {}          # (source, name) -> function; a worker runs many calls
_MARGIN = 0.05          # of the ceiling: address space for the worker's own bookkeeping in a call


def compiled(source, name):
    """A fresh function for ``source`` (compiled once): no call sees another's default values."""
    fn = _compiled.get((source, name))
    if fn is None:
        if len(_compiled) > 512:
            _compiled.clear()
        fn = _compiled[(source, name)] = compile_method(source, name, metered=False)
    fresh = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__,
                               copy.deepcopy(fn.__defaults__), fn.__closure__)
    fresh.__kwdefaults__ = copy.deepcopy(fn.__kwdefaults__)
    fresh.renamed = fn.renamed
    return fresh


_statm = None          # /proc/self/statm, opened once before the file limit is lowered


def vm_bytes():
    """The address space this process uses now (None where /proc is not there)."""
    try:
        return int(os.pread(_statm, 64, 0).split()[0]) * resource.getpagesize()
    except (OSError, TypeError, ValueError, IndexError):
        return None


def _set(limit, soft):
    _, hard = resource.getrlimit(limit)
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        soft = hard
    try:
        resource.setrlimit(limit, (soft, hard))
    except (ValueError, OSError):
        pass        # a platform that does not enforce it (RLIMIT_AS on macOS): the host watches


def prepare():
    """Once, at start: nothing to inherit, nothing to open, nothing to spawn."""
    global _statm
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the host's Ctrl-C is the host's
    modules.preload()
    try:
        _statm = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        _statm = None
    highest = max(int(fd) for fd in os.listdir("/dev/fd")) if os.path.isdir("/dev/fd") else 64
    for limit, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, 0),
                         (getattr(resource, "RLIMIT_NPROC", None), 0),
                         (resource.RLIMIT_NOFILE, highest + 1)):
        if limit is not None:
            _set(limit, value)
    sys.setrecursionlimit(2000)
    gc.collect()
    gc.freeze()         # what the worker started with is never garbage: later collections skip it


def run_call(chan, msg):
    limits = msg.get("limits") or {}
    memory = int(float(limits.get("memory_mb", 64)) * 2**20)
    output = int(float(limits.get("output_kb", 1024)) * 2**10)
    seconds = float(limits.get("seconds", 2.0))
    base = vm_bytes()
    ceiling = None
    if base is not None:
        ceiling = base + int(memory * (1 + _MARGIN))
        _set(resource.RLIMIT_AS, ceiling)
    used = resource.getrusage(resource.RUSAGE_SELF)
    _set(resource.RLIMIT_CPU, int(used.ru_utime + used.ru_stime + seconds) + 2)
    random.seed()           # nothing of the last call's random state
    session = Session(chan, compiled)
    fn = None
    try:
        fn = compiled(msg["src"], msg["name"])
        receiver = session.decode(msg["recv"])
        args = session.decode(msg["args"])
        kw = session.decode(msg["kw"])
        result = fn(receiver, *args, **kw)
        data = wire.dumps({"op": "done", "value": session.encode(result)})
        del result
        if len(data) > output:
            data = None
            reply = {"op": "fail", "type": "LimitExceeded", "kind": "output",
                     "message": f"the method returned more than its {output // 1024} KB "
                                "output ceiling"}
    except MemoryError:
        data = None
        reply = {"op": "fail", "type": "LimitExceeded", "kind": "memory",
                 "message": f"the call allocated more than its {memory / 2**20:.1f} MB ceiling"}
    except BaseException as e:      # noqa: BLE001 - everything a method raises goes back
        session.open = False        # finalizers freed with the traceback cannot write
        data = None
        if isinstance(e, SystemError) and ceiling is not None:
            # C code that failed an allocation without saying so (deque, for one): under
            # an address-space limit that is running out of it
            reply = {"op": "fail", "type": "LimitExceeded", "kind": "memory",
                     "message": f"the call ran out of its {memory / 2**20:.1f} MB ceiling "
                                f"inside C code ({type(e).__name__}: {_text(e)[:200]})"}
        else:
            reply = {"op": "fail", "type": type(e).__name__, "message": unrename(_text(e), fn),
                     "kind": getattr(e, "kind", None)}
    session.close()
    try:
        if data is not None:
            chan.send_raw(data)
        else:
            chan.send(reply)
    except BaseException:       # noqa: BLE001 - a half-sent frame: only a fresh worker can go on
        os._exit(70)


def _text(e):
    try:
        text = str(e)
    except BaseException:       # noqa: BLE001 - a message that cannot be shown
        text = f"<{type(e).__name__} with an unprintable message>"
    return text[:2000]


def main():
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)      # a stray print must not corrupt the protocol
    chan = wire.Channel(rfd, wfd)
    prepare()
    chan.send({"op": "ready", "pid": os.getpid()})
    while True:
        try:
            msg = chan.recv()
        except wire.Closed:
            return 0
        op = msg.get("op")
        if op == "call":
            try:
                run_call(chan, msg)
            except MemoryError:
                chan.send({"op": "fail", "type": "LimitExceeded", "kind": "memory",
                           "message": "the call allocated more than its ceiling"})
            _set(resource.RLIMIT_AS, resource.RLIM_INFINITY)
            gc.collect()        # finalizers of the call's leftovers run now, and are refused
            chan.send({"op": "ready"})
        elif op == "exit":
            return 0


if __name__ == "__main__":
    sys.exit(main())
