"""A kernel or worker process on the scripted engine, for the multi-runner tests.

``python tests/runner_proc.py IMAGE ROLE`` runs a ``Kernel`` (role ``kernel``
or ``worker``) whose minds answer from a script after a short pause, with a
stand-in embedder for the ledger's vectors: the logic of claims, presence and
completion is what is tested, on a real image and real processes.
"""
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
from kernel.kernel import Kernel  # noqa: E402
from mindhost.pool import ModelPool  # noqa: E402

PAUSE = 0.05               # seconds per answer: long enough for runners to overlap
SLOW = 1.5                 # for a request that says "slow": a window to kill a runner in


class Embedder:
    def encode(self, texts):
        return np.ones((len(texts), 8), dtype=np.float32)


def answer(text):
    time.sleep(SLOW if "slow" in text else PAUSE)
    return f"answered: {text.split()[-1] if text.split() else ''}"


def main(spec, role):
    pool = ModelPool(models={m: ScriptedEngine(answer).load() for m in ("hermes", "orai")})
    k = Kernel(resolve(spec), pool=pool, embedder=Embedder(), worker=role == "worker",
               http="off", heartbeat=0, dream_at="off", presence=0.3, expiry=2.0, workers=2,
               poll=0.05, grace=2.0)
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
