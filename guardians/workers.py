"""A pool of warm worker processes for untrusted methods, and the host's side of a call.

``run(request, serve, limits, what)`` takes an idle worker (starting one if
none is idle), sends it the call, answers its requests with ``serve`` (the
host's broker, which owns the objects and the transaction) until it says
``done`` or ``fail``, and hands it back. The host enforces what the worker
cannot be trusted to:

- **wall clock**: at the deadline the worker is killed (SIGKILL); the call
  fails with ``LimitExceeded("time")``;
- **memory**: the worker limits its own address space (RLIMIT_AS); where the
  OS does not enforce that (macOS), the host polls the worker's resident
  memory and kills it past the ceiling;
- **crashes**: a worker that dies (a segfault, SIGXCPU) fails the call with
  ``LimitExceeded("crash")`` and is replaced; the host is untouched;
- **size**: a message bigger than the call's ceilings is refused.

A worker whose call ended is reused only after it said ``ready`` (its
leftovers collected); one that does not say so in time is killed.
"""
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from . import wire
from .limits import LimitExceeded

log = logging.getLogger("guardians.workers")

READY_WAIT = 1.0        # seconds a finished worker has to collect its leftovers
RETIRE_CALLS = 500      # a worker serves this many calls, then a fresh one takes over
RETIRE_GROWTH = 256 << 20   # or sooner, once it has grown this much since it started
START_WAIT = 30.0       # seconds a new worker has to start
_POLL = 0.02            # how often the host looks at a running worker's memory


class WorkerError(RuntimeError):
    """A worker could not be started."""


class Worker:
    """One worker process and its pipe."""

    def __init__(self):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
            PYTHONDONTWRITEBYTECODE="1")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "guardians.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                start_new_session=True, env=env, cwd=root)
        except OSError as e:
            raise WorkerError(f"cannot start a worker process for an untrusted method: {e}") from e
        os.set_blocking(self.proc.stdin.fileno(), False)    # sends keep to the call's deadline
        self.chan = wire.Channel(self.proc.stdout.fileno(), self.proc.stdin.fileno())
        self.ready = False
        self.calls = 0
        try:
            self.wait_ready(time.monotonic() + START_WAIT)
            self.start_rss = self.rss() or 0
        except wire.WireError as e:
            self.kill()
            raise WorkerError(f"a worker process for untrusted methods did not start ({e}; "
                              f"{self.death()}): check that `{sys.executable} -m "
                              "guardians.worker` runs") from None

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, deadline):
        msg = self.chan.recv(deadline=deadline, limit=1 << 16)
        if msg.get("op") != "ready":
            raise wire.WireError(f"a worker said {msg.get('op')!r} where it should be ready")
        self.ready = True

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def death(self):
        """How the worker died, in words."""
        code = self.proc.wait()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return {"SIGSEGV": "a segmentation fault (SIGSEGV)", "SIGXCPU":
                    "its CPU-time limit (SIGXCPU)", "SIGKILL": "SIGKILL"}.get(name, name)
        return f"exit status {code}"

    def rss(self):
        """Resident bytes of the worker (None when it cannot be read)."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
        try:
            import psutil
            return psutil.Process(self.pid).memory_info().rss
        except Exception:       # noqa: BLE001 - no way to look: RLIMIT_AS is the guard
            return None


class Pool:
    """Idle workers, kept warm; any number run at once (one per calling thread)."""

    def __init__(self, size=2):
        self.size = size
        self.idle = []
        self.lock = threading.Lock()
        self.started = 0
        self.replaced = 0

    def acquire(self):
        while True:
            with self.lock:
                w = self.idle.pop() if self.idle else None
            if w is None:
                self.started += 1
                return Worker()
            if not w.ready:
                try:
                    w.wait_ready(time.monotonic() + READY_WAIT)
                except wire.WireError:
                    log.warning("a worker did not finish its last call's leftovers in %.1f s; "
                                "replaced", READY_WAIT)
                    w.kill()
                    self.replaced += 1
                    continue
            if w.alive():
                return w
            w.kill()

    def release(self, w):
        w.ready = False
        rss = w.rss()
        if w.calls >= RETIRE_CALLS or (rss is not None and rss - w.start_rss > RETIRE_GROWTH):
            w.kill()            # what calls left behind (caches, fragmentation) goes with it
            return
        with self.lock:
            if len(self.idle) < self.size:
                self.idle.append(w)
                return
        w.kill()

    def warm(self, n=None):
        """Start idle workers now, so that the first call does not wait for one."""
        for _ in range((n or self.size) - len(self.idle)):
            w = Worker()
            self.started += 1
            with self.lock:
                self.idle.append(w)

    def close(self):
        with self.lock:
            idle, self.idle = self.idle, []
        for w in idle:
            w.kill()


POOL = Pool()


def run(request, serve, limits, what="method"):
    """Run one call in a worker; return the worker's final message (``done`` or ``fail``)."""
    w = POOL.acquire()
    seconds = float(limits["seconds"])
    memory = int(float(limits["memory_mb"]) * 2**20)
    output = int(float(limits["output_kb"]) * 2**10)
    deadline = time.monotonic() + seconds
    base = w.rss() or 0
    ok = False
    try:
        w.chan.send(request, deadline)
        while True:
            try:
                # what crosses to the host (a write, the result) is bounded like the output
                msg = w.chan.recv(deadline=min(deadline, time.monotonic() + _POLL),
                                  limit=output + (1 << 16))
            except wire.Timeout:
                if time.monotonic() >= deadline:
                    raise LimitExceeded("time", f"{what} ran past its {seconds:g} s budget; the "
                                                "worker running it was stopped") from None
                rss = w.rss()
                if rss is not None and rss - base > memory * 1.05:
                    raise LimitExceeded("memory", f"{what} allocated more than its "
                                                  f"{memory / 2**20:.1f} MB ceiling; the worker "
                                                  "running it was stopped") from None
                continue
            except wire.Closed:
                raise LimitExceeded("crash", f"{what} crashed the worker running it "
                                             f"({w.death()}); the image is unchanged") from None
            except wire.WireError as e:
                raise LimitExceeded("output", f"{what} sent the host something it refuses: "
                                              f"{e}") from None
            op = msg.get("op") if isinstance(msg, dict) else None
            if op in ("done", "fail"):
                ok = True
                w.calls += 1
                return msg
            reply = serve(msg)
            try:
                w.chan.send(reply, deadline)
            except wire.Timeout:
                raise LimitExceeded("time", f"{what} ran past its {seconds:g} s budget; the "
                                            "worker running it was stopped") from None
            except wire.Closed:
                raise LimitExceeded("crash", f"{what} crashed the worker running it "
                                             f"({w.death()}); the image is unchanged") from None
            if time.monotonic() > deadline:     # one request's work on the host counts too
                raise LimitExceeded("time", f"{what} ran past its {seconds:g} s budget; the "
                                            "worker running it was stopped")
    finally:
        if ok:
            POOL.release(w)
        else:           # stopped mid-call (a limit, a crash, the host's Ctrl-C): never reused
            w.kill()
            POOL.replaced += 1
