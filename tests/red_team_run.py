"""Run one red-team attack against a fresh image, as the host; print one JSON line.

    python tests/red_team_run.py ATTACK_ID IMAGE_FOLDER

This process is the host: if an attack took it down, no JSON line is printed
and the test fails. What it reports: whether the guardians rejected the
method, the call's outcome and how long it took, how much the host grew, whether
the image is unchanged after the failing call's transaction committed, whether
the host still serves an isolated and an in-process call, and whether a write
committed after the attack survives a reopen.
"""
import json
import os
import pathlib
import signal
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from persistent.list import PersistentList  # noqa: E402
from persistent.mapping import PersistentMapping  # noqa: E402

LIMITS = {"seconds": 1.0, "memory_mb": 64.0, "output_kb": 256.0}
HELPER = "def helper(self):\n    return self.n\n"
MAKERS = {
    "make_writer": "def make_writer(self):\n    def w():\n        self.friend.secret = 'pwned'\n"
                   "    return w\n",
    "make_gen": "def make_gen(self):\n    self.friend.secret = 'pwned'\n    yield 1\n",
}
PROBE = "def probe(self, x):\n    self.seen.append(x)\n    return len(self.seen)\n"


def setup(root, limits):
    from prototypes import UvmObject
    from prototypes.method import install
    traits = root["traits"]
    traits.method_limits = dict(limits)
    other = UvmObject(**{"name": "other", "parent*": traits, "items": [1], "identity": "i",
                         "secret": "s"})
    install(other, "greet", "def greet(self):\n    return 'hi'\n", {"author": "console"})
    target = UvmObject(**{"name": "target", "parent*": traits, "items": [1, 2],
                          "cfg": {"a": {"b": 1}}, "counts": {}, "tags": {"x"}, "n": 5,
                          "text": "hello", "friend": other, "boss": root["hermes"],
                          "seen": []})
    install(target, "helper", HELPER, {"author": "console"})
    for name, src in MAKERS.items():        # ungranted mind methods that hand out code
        install(target, name, src, {"author": "mind"})
    root["other"], root["target"] = other, target


def plain(v):
    from prototypes.persist import PersistentSet
    if isinstance(v, (list, tuple, PersistentList)):
        return [plain(x) for x in v]
    if isinstance(v, (dict, PersistentMapping)):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (set, PersistentSet)):
        return sorted(plain(x) for x in v)
    return v


def at(root, path):
    first, *rest = path.split(".")
    v = root[first]
    for name in rest:
        v = v.lookup(name)
    return plain(v)


def kinds(e):
    return [c.__name__ for c in type(e).__mro__] + ([e.kind] if getattr(e, "kind", None) else [])


def interrupt_once_running(pids, cpu=0.1, give_up=10.0):
    """Ctrl-C for the host once the process running the call (a child of one of the workers
    ``pids``) has spent ``cpu`` seconds of CPU (it is inside the method's loop, whatever the
    machine's load): a timer on the wall clock raced the call's own time limit."""
    import psutil
    workers = [psutil.Process(pid) for pid in pids]

    def used():
        most = 0.0
        for w in workers:
            try:
                for child in w.children():
                    t = child.cpu_times()
                    most = max(most, t.user + t.system)
            except psutil.Error:
                pass
        return most

    def watch():
        end = time.monotonic() + give_up
        while time.monotonic() < end:
            if used() >= cpu:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)
    threading.Thread(target=watch, daemon=True).start()


def main(attack_id, folder):
    from red_team import IDS

    from guardians import limits as lim
    from guardians import vet, workers
    from image import open_image
    from image.dump import dump
    from kernel.schema import bootstrap
    from prototypes.capabilities import grant
    from prototypes.method import install

    attack = IDS[attack_id]
    limits = dict(LIMITS, **(attack.limits or {}))
    img = open_image(folder, create=True)
    bootstrap(img)
    with img.transaction() as conn:
        setup(conn.root(), limits)
    out = {"id": attack.id}
    with img.transaction() as conn:
        target = conn.root()["target"]
        verdict = vet(attack.source, receiver=target, name="f")
        out["rejected"] = not verdict.accepted
        out["reasons"] = [r.rule for r in verdict.reasons]
        install(target, "probe", PROBE, {"author": "mind"})
        if verdict.accepted:
            install(target, verdict.function, attack.source, {"author": attack.author})
            for kind in attack.grants:
                grant(target, verdict.function, kind, by="red team")
    workers.POOL.warm(1)        # the call's time is the method's, not a worker's start
    before = dump(img.storage)
    rss0 = lim.rss()
    if not out["rejected"]:
        if attack.sigint:
            # a shell's background job starts with SIGINT ignored, and then Python raises no
            # KeyboardInterrupt at all: this host honours Ctrl-C, as a console does
            signal.signal(signal.SIGINT, signal.default_int_handler)
            interrupt_once_running([w.pid for w in workers.POOL.idle])
        t0 = time.monotonic()
        try:
            for _ in range(attack.repeat):
                with img.transaction() as conn:     # commits whatever the call left in it
                    target = conn.root()["target"]
                    out["value"] = repr(getattr(target, "f")(*attack.args))[:300]
            out["ok"] = True
        except BaseException as e:      # noqa: BLE001 - every outcome is reported
            out["ok"] = False
            out["error"] = f"{type(e).__name__}: {e}"[:500]
            out["kinds"] = kinds(e)
        out["seconds"] = round(time.monotonic() - t0, 3)
    out["host_growth_mb"] = round((lim.rss() - rss0) / 2**20, 1)
    out["unchanged"] = dump(img.storage) == before
    with img.transaction() as conn:             # still serving: isolated and in process
        target = conn.root()["target"]
        out["responsive"] = target.probe(7) >= 1 and target.helper() == target.n
        target.kept = 42
    img.close()
    img = open_image(folder)
    with img.view() as root:
        out["kept"] = root["target"].kept == 42 and 7 in root["target"].seen
        out["after"] = {path: at(root, path) for path in (attack.after or {}) if out.get("ok")}
    img.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
