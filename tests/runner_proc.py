"""A kernel or runner process on the scripted engine, for the multi-runner tests.

``python tests/runner_proc.py IMAGE ROLE`` runs a ``Kernel`` (role ``kernel``
or ``runner``) whose minds answer from a script after a short pause, with a
stand-in embedder for the ledger's vectors: the logic of claims, presence and
completion is what is tested, on a real image and real processes.

Injected from the environment (tests/test_chaos.py):
- ``RUNNER_CLOCK_SKEW``: seconds this process's wall clock is off (``time.time``);
- ``RUNNER_MACHINE``: a machine id of its own, as if it ran on another machine
  (its claims then lapse by silence only, never by the pid rule);
- ``RUNNER_MINDS``: comma-separated minds it claims for (default: both).
A request that says "poison" kills whichever process runs it, mid-mission.
"""
import os
import signal
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import numpy as np  # noqa: E402
from scripted_engine import ScriptedEngine  # noqa: E402

from image import resolve  # noqa: E402
from kernel import runners  # noqa: E402
from kernel.kernel import Kernel  # noqa: E402
from mindhost.pool import ModelPool  # noqa: E402

PAUSE = 0.05               # seconds per answer: long enough for runners to overlap
SLOW = 1.5                 # for a request that says "slow": a window to kill a runner in


class Embedder:
    def encode(self, texts):
        return np.ones((len(texts), 8), dtype=np.float32)


def answer(text):
    # the request alone: recalled past exchanges in the prompt would make a later mission
    # slow (or poisoned) because an earlier one was
    request = text.rsplit("<|user|>\n", 1)[-1].split("\n<|", 1)[0]
    if "poison" in request:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(SLOW if "slow" in request else PAUSE)
    return f"answered: {request.split()[-1] if request.split() else ''}"


def start(spec, role, env, stderr=None):
    """Start one in a subprocess; return it and its runner id once it is ready.
    ``stderr``: a file for what it says there (default: a pipe, read if it fails)."""
    import subprocess
    p = subprocess.Popen([sys.executable, __file__, spec, role], cwd=HERE.parent, env=env,
                         stdout=subprocess.PIPE, text=True,
                         stderr=subprocess.PIPE if stderr is None else stderr)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        p.kill()
        said = p.stderr.read()[-3000:] if stderr is None else ""
        raise AssertionError(f"{role} did not start: {line}\n{said}")
    return p, line.split()[1]


def client_spec(spec):
    """Where a client opens the shared image: the database, or the kernel's ZEO server."""
    if spec.startswith("postgresql"):
        return spec
    from image.storage import serving_address
    return "zeo://" + serving_address(resolve(spec))


def inject():
    skew = float(os.environ.get("RUNNER_CLOCK_SKEW") or 0)
    if skew:
        real = time.time
        time.time = lambda: real() + skew
    machine = os.environ.get("RUNNER_MACHINE")
    if machine:
        runners.machine_id = lambda: machine


def main(spec, role):
    inject()
    pool = ModelPool(models={m: ScriptedEngine(answer).load() for m in ("hermes", "orai")})
    minds = [m for m in (os.environ.get("RUNNER_MINDS") or "").split(",") if m]
    k = Kernel(resolve(spec), pool=pool, embedder=Embedder(), runner=role == "runner",
               http="off", heartbeat=0, dream_at="off", presence=0.3, expiry=2.0, threads=2,
               poll=0.05, grace=2.0, minds=minds)
    stop = threading.Event()

    def on_signal(*_):
        if not stop.is_set():
            stop.set()
            k.request_stop()
    signal.signal(signal.SIGTERM, on_signal)
    k.start()
    print(f"ready {k.id}", flush=True)
    k.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
