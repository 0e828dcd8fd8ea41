"""An isolated worker: a clean process that forks one process per untrusted call.

Started by ``guardians.workers`` as ``python -m guardians.worker``. It holds
no connection to the image and opens no files once started: everything a
method reads or writes goes over its pipe to the host, which owns the
transaction and checks every write.

The worker itself (the *zygote*) never reads a call and never runs method
code. It forks the process for the next call ahead of time; that child
enters the second wall (``guardians.wall``: another user, Landlock, seccomp)
while it waits, reads one call from the pipe, sets the call's hard limits
(address space, CPU time), runs it, answers and exits without running a
finalizer. So every call starts from the same clean state (no defaults,
globals, suspended generators or memory left by an earlier call), and
whatever a call leaves behind dies with its process. The zygote reaps the
child, forks the next, and only then says ``ready`` on a control pipe that no
child holds: an answer on the data pipe can never pass for the zygote's word.
"""
import gc
import json
import os
import random
import resource
import select
import signal
import sys
import time

from . import modules, wall, wire
from .remote import Session
from .sandbox import compile_code, define, unrename

_compiled = {}          # (source, name) -> how to define it: compiled in the zygote, never run there
_MARGIN = 0.05          # of the ceiling: address space for the child's own bookkeeping in a call
CLOSED = 75             # a child's exit status: the host closed the pipe (or said exit)
BYPASS = "bypass_"      # tests only (BATOS_TEST_BYPASS=1): methods so named run as plain Python


def compiled(source, name):
    """A fresh function for ``source``, defined in this process.

    Compiling (the costly part) is done once and kept, so a worker that compiled a
    method hands it to every call's process by forking. Defining runs method code
    (default values, decorators), so it happens in the call's process, behind the wall,
    never in the worker.
    """
    make = _compiled.get((source, name))
    if make is None:
        if len(_compiled) > 512:
            _compiled.clear()
        make = _compiled[(source, name)] = _compile(source, name)
    return make()


def _compile(source, name):
    if name.startswith(BYPASS) and os.environ.get("BATOS_TEST_BYPASS") == "1":
        return lambda: _plain(source, name)
    args = compile_code(source, name, metered=False)
    return lambda: define(*args)


def _plain(source, name):
    """A stand-in for a RestrictedPython bypass: the method as unrestricted Python."""
    ns = {"__builtins__": __builtins__}
    exec(compile(source, f"<bypass {name}>", "exec"), ns)       # noqa: S102 - tests only
    fn = ns[name]
    fn.renamed = {}
    return fn


_statm = None          # /proc/self/statm, opened once before the wall closes files
_nofile = 64


def vm_bytes():
    """The address space this process uses now (None where /proc is not there)."""
    try:
        return int(os.pread(_statm, 64, 0).split()[0]) * resource.getpagesize()
    except (OSError, TypeError, ValueError, IndexError):
        return None


def prepare():
    """Once, at start: load what calls may import, open what they may read, probe the wall."""
    global _statm, _nofile
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the host's Ctrl-C is the host's
    modules.preload()
    try:
        _statm = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        _statm = None
    highest = max(int(fd) for fd in os.listdir("/dev/fd")) if os.path.isdir("/dev/fd") else 64
    _nofile = highest + 1
    sys.setrecursionlimit(2000)
    wall.build()            # the filters, assembled once: each call's process only installs them
    rehearse()              # what a call first initialises, initialised once, before forking
    gc.collect()
    gc.freeze()         # what the worker started with is never garbage: children skip it
    return wall.probe(_nofile)


def child(chan, rules, go):
    """The forked process for one call: wall, its turn, call, answer, exit. Never returns."""
    try:
        if os.environ.get("BATOS_BENCH_NO_WALL") != "1":
            wall.enter(_nofile, required=rules)
        random.seed()           # not the zygote's random state, shared by every child
        rehearse()
    except BaseException as e:  # noqa: BLE001 - behind less wall than reported: run nothing
        _wait_turn(go)
        _refuse(chan, f"the call's process could not enter the wall ({_text(e)}); nothing ran")
    _wait_turn(go)
    try:
        msg = chan.recv()
    except wire.Closed:
        os._exit(CLOSED)        # the host is gone: so is the worker
    except BaseException:       # noqa: BLE001 - not a frame from the host: nothing to answer
        os._exit(72)
    if not isinstance(msg, dict) or msg.get("op") != "call":
        os._exit(CLOSED if isinstance(msg, dict) and msg.get("op") == "exit" else 72)
    try:
        limits = msg.get("limits") or {}
        memory = int(float(limits.get("memory_mb", 64)) * 2**20)
        base = vm_bytes()
        ceiling = None if base is None else base + int(memory * (1 + _MARGIN))
        wall.call_limits(ceiling, float(limits.get("seconds", 2.0)))
    except BaseException as e:  # noqa: BLE001
        _refuse(chan, f"the call's limits could not be set ({_text(e)}); nothing ran")
    code = 0
    try:
        run_call(chan, msg, ceiling)
    except BaseException:       # noqa: BLE001 - run_call answers; this is a send that failed
        code = 70
    os._exit(code)              # no finalizer of the call's objects runs, ever


REHEARSAL = "def rehearse(self):\n    return [self.x, len(self.items), {'k': (1, 2.5)}]\n"
_SLOTS = {"x": 1, "items": {"h": 2, "k": "l", "v": {"l": [1, 2]}}}


class _Rehearsal:
    """A host, in process, for one rehearsed call: every frame through the same JSON."""

    def __init__(self):
        self.reply = None

    def send(self, msg, deadline=None):
        msg = json.loads(wire.dumps(msg))
        self.reply = {"ok": _SLOTS.get(msg.get("name"))}

    def send_raw(self, data, deadline=None):
        json.loads(data)

    def recv(self, deadline=None, limit=None, decoded=None):
        return json.loads(wire.dumps(self.reply))


def rehearse():
    """Run a small call against an in-process host before the real one: a fork shares every
    page with the worker until it writes to it, and a call's first writes (reference counts
    of the code it runs, the JSON it parses) then cost a page copy each, on the call's time.
    Rehearsed while waiting for a turn, they are this process's own already."""
    msg = {"op": "call", "src": REHEARSAL, "name": "rehearse", "recv": {"h": 1, "k": "o",
           "n": "rehearsal"}, "args": {"l": []}, "kw": {"d": []}, "limits": {}}
    run_call(_Rehearsal(), json.loads(wire.dumps(msg)), None)


def _wait_turn(go):
    if os.read(go, 1) != b"g":
        os._exit(CLOSED)        # the worker is gone: so is its standby


def _refuse(chan, message):
    try:
        chan.send({"op": "fail", "type": "SandboxError", "kind": "wall", "message": message})
    finally:
        os._exit(71)


def run_call(chan, msg, ceiling):
    limits = msg.get("limits") or {}
    memory = int(float(limits.get("memory_mb", 64)) * 2**20)
    output = int(float(limits.get("output_kb", 1024)) * 2**10)
    session = Session(chan, compiled)
    fn = None
    try:
        fn = compiled(msg["src"], msg["name"])
        session.learn(fn, None)
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


def learned(learn):
    """Compile what the host said calls will run (its sources only: compiling runs nothing)."""
    while learn.buf or select.select([learn.rfd], [], [], 0)[0]:
        try:
            msg = learn.recv(deadline=time.monotonic() + 0.05, limit=1 << 22)
        except (wire.WireError, BlockingIOError):
            return
        if isinstance(msg, dict) and msg.get("op") == "learn":
            source, name = str(msg["src"]), str(msg["name"])
            try:
                if (source, name) not in _compiled:     # compiled only: nothing of it runs
                    if len(_compiled) > 512:
                        _compiled.clear()
                    _compiled[(source, name)] = _compile(source, name)
            except Exception:       # noqa: BLE001 - a call's own process reports why
                pass


def spawn(chan, ctl, learn, rules):
    """Fork the process for a later call: it enters the wall and waits for its turn."""
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (ctl.wfd, learn.rfd, go_w):
            os.close(fd)
        child(chan, rules, go_r)
    os.close(go_r)
    return pid, go_w


def main():
    rfd, wfd = os.dup(0), os.dup(1)
    ctl = wire.Channel(None, int(os.environ["BATOS_WORKER_CTL"]))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)      # a stray print must not corrupt the protocol
    chan = wire.Channel(rfd, wfd)
    learn = wire.Channel(int(os.environ["BATOS_WORKER_LEARN"]), None)
    os.set_blocking(learn.rfd, False)
    rules = prepare()
    if os.environ.get("BATOS_BENCH_NO_WALL") == "1":
        rules = set()
    hello = {"op": "ready", "pid": os.getpid(), "wall": sorted(rules)}
    standby = spawn(chan, ctl, learn, rules)
    while True:
        # one process at a time reads the pipe: the standby starts only once the last is gone
        pid, go = standby
        os.write(go, b"g")
        os.close(go)
        ctl.send(hello)
        learned(learn)
        standby = spawn(chan, ctl, learn, rules)     # entering the wall while this call runs
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == CLOSED:
            return 0
        if select.select([rfd], [], [], 0)[0]:
            return 4            # words on the pipe that no live process will read: start afresh
        hello = {"op": "ready", "status": status}


if __name__ == "__main__":
    sys.exit(main())
