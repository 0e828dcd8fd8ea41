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
- **size**: a message bigger than the call's ceilings is refused;
- **the pipe is hostile**: a frame that is not a request the broker knows, or
  the answer, kills the worker and fails the call; so does anything on the data
  pipe between a call's answer and the next call.

Each call runs in a fresh child of the worker, behind the second wall
(``guardians.worker``, ``guardians.wall``); the process that ran a call is never
reused. The worker says ``ready`` on a control pipe that no child holds, only
after it reaped the call's child; a worker stopped mid-call (a limit, a crash,
the host's Ctrl-C) is killed with its whole process group and replaced.
"""
import logging
import os
import select
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


class Hostile(wire.WireError):
    """A worker sent what the protocol does not allow at that point."""


class Worker:
    """One worker process, its data pipe and its control pipe."""

    def __init__(self, bypass=False, wall=True):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        ctl_r, ctl_w = os.pipe()
        learn_r, learn_w = os.pipe()
        env = {k: v for k, v in os.environ.items()
               if k not in ("BATOS_TEST_BYPASS", "BATOS_BENCH_NO_WALL")}
        env.update(PYTHONPATH=os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
            PYTHONDONTWRITEBYTECODE="1", BATOS_WORKER_CTL=str(ctl_w),
            BATOS_WORKER_LEARN=str(learn_r))
        if bypass:          # tests of the second wall only: see guardians.worker.BYPASS
            env["BATOS_TEST_BYPASS"] = "1"
        if not wall:        # bench/methods.py's baseline only: the same worker, no wall
            env["BATOS_BENCH_NO_WALL"] = "1"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "guardians.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                pass_fds=(ctl_w, learn_r), start_new_session=True, env=env, cwd=root)
        except OSError as e:
            os.close(ctl_r)
            os.close(learn_w)
            raise WorkerError(f"cannot start a worker process for an untrusted method: {e}") from e
        finally:
            os.close(ctl_w)
            os.close(learn_r)
        os.set_blocking(learn_w, False)
        self.learn = wire.Channel(None, learn_w)
        self.learned = set()
        os.set_blocking(self.proc.stdin.fileno(), False)    # sends keep to the call's deadline
        self.chan = wire.Channel(self.proc.stdout.fileno(), self.proc.stdin.fileno())
        self.ctl = wire.Channel(ctl_r, None)
        self.ready = False
        self.calls = 0
        self.wall = set()
        try:
            hello = self.wait_ready(time.monotonic() + START_WAIT)
            self.wall = set(hello.get("wall") or ())
            self.start_rss = self.rss(call=False) or 0
        except wire.WireError as e:
            self.kill()
            raise WorkerError(f"a worker process for untrusted methods did not start ({e}; "
                              f"{self.death()}): check that `{sys.executable} -m "
                              "guardians.worker` runs") from None

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, deadline):
        """The worker's word that the last call's process is gone, and nothing it left."""
        msg = self.ctl.recv(deadline=deadline, limit=1 << 12)
        if not isinstance(msg, dict) or msg.get("op") != "ready":
            raise Hostile(f"the worker's control pipe said {msg!r:.80} where it should be ready")
        if self.chan.buf or select.select([self.chan.rfd], [], [], 0)[0]:
            raise Hostile("a call's process left frames on the pipe after its answer")
        self.ready = True
        return msg

    def said_ready(self):
        return bool(select.select([self.ctl.rfd], [], [], 0)[0])

    def child_death(self):
        """If the call's process has died (the worker said so), how; else None."""
        if not self.said_ready():
            return None
        try:
            msg = self.ctl.recv(deadline=time.monotonic() + 0.1, limit=1 << 12)
        except wire.WireError:
            return f"the worker itself ({self.death()})"
        status = msg.get("status") if isinstance(msg, dict) else None
        if not isinstance(status, int):
            return "an unknown end"
        if os.WIFSIGNALED(status):
            return _signal_name(os.WTERMSIG(status))
        return f"exit status {os.WEXITSTATUS(status)}"

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        # the whole group, even when the worker already exited: its call processes cannot
        # leave the group (no setsid, setpgid), and the group id is not reused while they live
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            if self.proc.poll() is None:
                self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        for fd in (self.ctl.rfd, self.learn.wfd):
            try:
                os.close(fd)
            except OSError:
                pass

    def teach(self, source, name):
        """Have the worker compile ``source`` for the calls after this one (compiling is
        most of a fresh process's cost; the worker forks its children with it done)."""
        if (source, name) in self.learned or len(self.learned) > 512:
            return
        try:
            self.learn.send({"op": "learn", "src": source, "name": name}, time.monotonic())
            self.learned.add((source, name))
        except wire.WireError:
            pass            # the pipe is full: the next call compiles it again

    def death(self):
        """How the worker died, in words."""
        code = self.proc.wait()
        return _signal_name(-code) if code < 0 else f"exit status {code}"

    def rss(self, call=True):
        """Resident bytes of the call's process (``call``: the largest child, since the
        next call's process waits beside it; else the worker's own), None: unknown."""
        if not call:
            return _rss(self.pid)
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children", "rb") as f:
                kids = [int(k) for k in f.read().split()]
        except (OSError, ValueError):
            try:
                import psutil
                kids = [k.pid for k in psutil.Process(self.pid).children()]
            except Exception:   # noqa: BLE001 - the worker's own size, then
                kids = []
        sizes = [r for r in map(_rss, kids) if r is not None]
        return max(sizes) if sizes else _rss(self.pid)


def _rss(pid):
    """Resident bytes of process ``pid`` (None when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
        return psutil.Process(pid).memory_info().rss
    except Exception:       # noqa: BLE001 - no way to look: RLIMIT_AS is the guard
        return None


def _signal_name(number):
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return {"SIGSEGV": "a segmentation fault (SIGSEGV)", "SIGXCPU":
            "its CPU-time limit (SIGXCPU)", "SIGKILL": "SIGKILL"}.get(name, name)


class Pool:
    """Idle workers, kept warm; any number run at once (one per calling thread)."""

    def __init__(self, size=2, bypass=False, wall=True):
        self.size = size
        self.bypass = bypass        # tests of the second wall only
        self.wall = wall            # False: bench/methods.py's baseline only
        self.idle = []
        self.lock = threading.Lock()
        self.started = 0
        self.replaced = 0

    def acquire(self):
        while True:
            with self.lock:     # one that already said ready, else the last one back
                w = next((c for c in self.idle if c.ready or c.said_ready()), None)
                if w is not None:
                    self.idle.remove(w)
                elif self.idle:
                    w = self.idle.pop()
            if w is None:
                self.started += 1
                if self.started == 1 and self.size > 1:
                    # a second worker, so that calls in a row alternate: each worker's next
                    # call process enters its wall while the other worker serves a call
                    threading.Thread(target=self._spare, daemon=True).start()
                try:
                    return Worker(self.bypass, self.wall)
                except WorkerError as e:    # once more: a start can die of something passing
                    log.warning("%s; starting another", e)
                    return Worker(self.bypass, self.wall)
            if not w.ready:
                try:
                    w.wait_ready(time.monotonic() + READY_WAIT)
                except Hostile as e:
                    log.warning("a worker was replaced: %s", e)
                    w.kill()
                    self.replaced += 1
                    continue
                except wire.WireError:
                    log.warning("a worker did not finish its last call in %.1f s; "
                                "replaced", READY_WAIT)
                    w.kill()
                    self.replaced += 1
                    continue
            if w.alive():
                return w
            w.kill()

    def release(self, w):
        w.ready = False
        rss = w.rss(call=False)
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
            w = Worker(self.bypass, self.wall)
            self.started += 1
            with self.lock:
                self.idle.append(w)

    def _spare(self):
        try:
            self.warm(1)
        except WorkerError as e:
            log.warning("no second worker: %s", e)

    def close(self):
        with self.lock:
            idle, self.idle = self.idle, []
        for w in idle:
            w.kill()


POOL = Pool()


def run(request, serve, limits, what="method"):
    """Run one call in a worker; return the worker's final message (``done`` or ``fail``).

    ``serve(msg)`` answers one request; it raises ``wire.WireError`` for a request
    no honest worker sends, and that kills the worker and fails the call.
    """
    w = POOL.acquire()
    seconds = float(limits["seconds"])
    memory = int(float(limits["memory_mb"]) * 2**20)
    output = int(float(limits["output_kb"]) * 2**10)
    deadline = time.monotonic() + seconds
    base = w.rss(call=False) or 0
    ok = False

    def over_time():
        return LimitExceeded("time", f"{what} ran past its {seconds:g} s budget; the worker "
                                     "running it was stopped")

    def crashed(how):
        return LimitExceeded("crash", f"{what} crashed the worker process running it ({how}); "
                                      "the image is unchanged")
    try:
        w.chan.send(request, deadline)
        if request.get("op") == "call":
            w.teach(request["src"], request["name"])
        while True:
            try:
                # what crosses to the host (a write, the result) is bounded like the output
                msg = w.chan.recv(deadline=min(deadline, time.monotonic() + _POLL),
                                  limit=output + (1 << 16), decoded=output + (1 << 16))
            except wire.Timeout:
                if time.monotonic() >= deadline:
                    raise over_time() from None
                how = w.child_death()
                if how is not None:
                    raise crashed(how) from None
                rss = w.rss()
                if rss is not None and rss - base > memory * 1.05:
                    raise LimitExceeded("memory", f"{what} allocated more than its "
                                                  f"{memory / 2**20:.1f} MB ceiling; the worker "
                                                  "running it was stopped") from None
                continue
            except wire.Closed:
                raise crashed(w.death()) from None
            except wire.WireError as e:
                raise LimitExceeded("output", f"{what} sent the host something it refuses: "
                                              f"{e}") from None
            op = msg.get("op") if isinstance(msg, dict) else None
            if op in ("done", "fail"):
                ok = True
                w.calls += 1
                return msg
            try:
                reply = serve(msg)
            except wire.WireError as e:
                raise LimitExceeded("protocol", f"{what}: the process running it sent what no "
                                                f"method can ({e}); it was stopped") from None
            try:
                w.chan.send(reply, deadline)
            except wire.Timeout:
                raise over_time() from None
            except wire.Closed:
                raise crashed(w.death()) from None
            if time.monotonic() > deadline:     # one request's work on the host counts too
                raise over_time()
    finally:
        if ok:
            POOL.release(w)
        else:           # stopped mid-call (a limit, a crash, the host's Ctrl-C): never reused
            w.kill()
            POOL.replaced += 1
