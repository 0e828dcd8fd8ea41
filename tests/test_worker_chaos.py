"""The worker protocol under chaos: its processes killed and stopped at random moments.

The rule (guardians/worker.py, guardians/workers.py): a call's answer comes only
from that call's own process; the worker says ``ready`` only once that process is
gone; a worker stopped mid-call is killed with its process group and replaced.
Invariants checked here, with a backlog of calls from two threads while a third
SIGKILLs or SIGSTOPs (then SIGCONTs) the worker, its call process or its standby
at random:

- every call returns its own right answer or fails with LimitExceeded, or with
  WorkerError when its worker was killed while starting (nothing else, and never
  the answer of another call);
- a call that failed left nothing in the image, and one that returned is there
  exactly once (all or nothing, after a reopen);
- afterwards the pool serves again, and no process of the pool is left stopped.
"""
import collections
import random
import signal
import threading
import time

import psutil

from guardians import workers
from guardians.limits import LimitExceeded
from image import open_image
from kernel.schema import bootstrap
from prototypes import UvmObject
from prototypes.method import install

SRC = ("def put(self, k):\n    self.seen[k] = k * 3\n    t = 0\n"
       "    for i in range(20000):\n        t += i\n    return k * 3\n")


def _pool_processes():
    """Every worker of this host (busy or idle), its call's process and its standby."""
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _chaos(stop, rng, log):
    while not stop.is_set():
        time.sleep(rng.uniform(0.002, 0.03))
        procs = _pool_processes()
        if not procs:
            continue
        p = rng.choice(procs)
        try:
            if rng.random() < 0.6:
                p.send_signal(signal.SIGKILL)
                log.append("kill")
            else:
                p.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(0.01, 0.4))
                p.send_signal(signal.SIGCONT)
                log.append("stop")
        except psutil.Error:
            pass


def test_calls_stay_their_own_and_all_or_nothing_while_workers_die(tmp_path):
    img = open_image(tmp_path / "image", create=True)
    bootstrap(img)
    with img.transaction() as conn:
        root = conn.root()
        root["traits"].method_limits = {"seconds": 0.5, "memory_mb": 64.0, "output_kb": 64.0}
        for t in range(2):
            o = UvmObject(**{"name": f"t{t}", "parent*": root["traits"], "seen": {}})
            install(o, "put", SRC, {"author": "mind"})
            root[f"t{t}"] = o
    results, errors, chaos_log = {}, [], []

    def caller(t, keys):
        for k in keys:
            try:
                with img.transaction() as conn:
                    got = conn.root()[f"t{t}"].put(k)
                results[t, k] = got
            except LimitExceeded as e:
                results[t, k] = e.kind
            except workers.WorkerError:     # its worker was killed while it started: nothing ran
                results[t, k] = "start"
            except Exception as e:      # noqa: BLE001 - anything else breaks the rule
                errors.append((t, k, repr(e)))

    stop = threading.Event()
    chaos = threading.Thread(target=_chaos, args=(stop, random.Random(28), chaos_log))
    callers = [threading.Thread(target=caller, args=(t, range(t * 1000, t * 1000 + 150)))
               for t in range(2)]
    chaos.start()
    for c in callers:
        c.start()
    for c in callers:
        c.join(timeout=240)
    stop.set()
    chaos.join()
    assert not errors, errors[:5]
    assert len(results) == 300
    answered = {key: v for key, v in results.items() if isinstance(v, int)}
    for (t, k), v in answered.items():
        assert v == k * 3, ((t, k), v)      # its own answer, never another call's
    print(f"chaos: {collections.Counter(chaos_log)}; outcomes: "
          f"{collections.Counter(v if isinstance(v, str) else 'answered' for v in results.values())}")
    assert len(chaos_log) >= 10, chaos_log
    assert len(answered) >= 30, f"only {len(answered)} calls answered under chaos"
    img.close()
    img = open_image(tmp_path / "image")
    with img.view() as root:
        for t in range(2):
            seen = dict(root[f"t{t}"].seen)
            mine = {k: v for (tt, k), v in answered.items() if tt == t}
            assert seen == mine, (t, set(seen) ^ set(mine))
    with img.transaction() as conn:         # the pool serves again
        assert conn.root()["t0"].put(7) == 21
    for p in _pool_processes():
        assert p.status() != psutil.STATUS_STOPPED
    img.close()
