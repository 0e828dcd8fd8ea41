"""The second wall under a simulated RestrictedPython bypass; prints one JSON line.

    python tests/wall_run.py IMAGE_FOLDER

This process is the host of an image (FileStorage in IMAGE_FOLDER). Its worker
pool runs methods named ``bypass_*`` as plain Python (``Pool(bypass=True)``,
a switch only tests have), in the call's real process under the real limits
and wall. Each such method tries one thing a bypass would want, with ctypes
where Python would stop it first, and returns what happened. The test
(tests/test_wall.py) reads the JSON and checks that every attempt failed and
the host, the image and later calls are unharmed.
"""
import json
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

PRELUDE = '''
import ctypes, os, resource
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def err():
    return os.strerror(ctypes.get_errno())

def attempt(f):
    try:
        return "did: " + repr(f())[:200]
    except BaseException as e:
        return "refused: " + type(e).__name__ + ": " + str(e)[:200]
'''

ATTEMPTS = {
    # name -> body of a method ``bypass_NAME(self, folder, host)``
    "read_file": "return attempt(lambda: open('/etc/hostname').read())",
    "read_image": "return attempt(lambda: open(folder + '/Data.fs', 'rb').read(64))",
    "append_image": "return attempt(lambda: open(folder + '/Data.fs', 'ab').write(b'x' * 64))",
    "new_file": "return attempt(lambda: open(folder + '/planted.py', 'w').write('x'))",
    "proc_host_fd": "return attempt(lambda: os.listdir('/proc/%d/fd' % host))",
    "socket": "r = libc.socket(2, 1, 0)\nreturn 'refused: ' + err() if r < 0 else 'did: fd %d' % r",
    "socket_x32": ("r = libc.syscall(0x40000000 | 41, 2, 1, 0)\n"
                   "return 'refused: ' + err() if r < 0 else 'did: fd %d' % r"),
    "fork": "return attempt(os.fork)",
    "clone_raw": ("r = libc.syscall(56, 17, 0, 0, 0, 0)\n"
                  "if r == 0:\n    os._exit(0)\n"
                  "return 'refused: ' + err() if r < 0 else 'did: pid %d' % r"),
    "spawn": "return attempt(lambda: os.posix_spawn('/bin/sh', ['sh', '-c', 'true'], {}))",
    "exec": "return attempt(lambda: os.execv('/bin/sh', ['sh', '-c', 'true']))",
    "setsid": "return attempt(os.setsid)",
    "kill_host": "import signal\nreturn attempt(lambda: os.kill(host, signal.SIGTERM))",
    "kill_worker": "import signal\nreturn attempt(lambda: os.kill(os.getppid(), signal.SIGKILL))",
    "kill_group": "import signal\nreturn attempt(lambda: os.killpg(0, signal.SIGKILL))",
    "ptrace_host": ("r = libc.ptrace(16, host, 0, 0)\n"
                    "return 'refused: ' + err() if r < 0 else 'did: attached'"),
    "raise_fsize": ("return attempt(lambda: resource.setrlimit(resource.RLIMIT_FSIZE, "
                    "(resource.RLIM_INFINITY, resource.RLIM_INFINITY)))"),
    "raise_nofile": "return attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)))",
    "raise_as": ("return attempt(lambda: resource.setrlimit(resource.RLIMIT_AS, "
                 "(resource.RLIM_INFINITY, resource.RLIM_INFINITY)))"),
    "prlimit_host": ("r = libc.prlimit(host, 7, None, None)\n"
                     "return 'refused: ' + err() if r < 0 else 'did: read the host limits'"),
    "user": "return 'refused: uid %d' % os.getuid() if os.getuid() != 0 else 'did: root'",
}
# after these, the host must treat the worker as hostile and never take their words
FRAMES = {
    # a forged answer and a forged "ready" on the data pipe, then its own honest answer
    "frames_after": ("import json\n"
                     "def frame(m):\n    d = json.dumps(m).encode()\n"
                     "    return len(d).to_bytes(4, 'big') + d\n"
                     "for fd in range(3, 64):\n"
                     "    try:\n        os.write(fd, frame({'op': 'done', 'value': 'forged'}) "
                     "+ frame({'op': 'ready'}))\n"
                     "    except OSError:\n        pass\n"
                     "return 'wrote'"),
    # answers its own call early, then stays behind to read and answer the next one
    "stay_behind": ("import json, select\n"
                    "def frame(m):\n    d = json.dumps(m).encode()\n"
                    "    return len(d).to_bytes(4, 'big') + d\n"
                    "for fd in range(3, 64):\n"
                    "    try:\n        os.write(fd, frame({'op': 'done', 'value': 'early'}))\n"
                    "    except OSError:\n        pass\n"
                    "while True:\n"
                    "    for fd in range(3, 64):\n"
                    "        try:\n"
                    "            if select.select([fd], [], [], 0)[0]:\n"
                    "                os.read(fd, 65536)\n"
                    "                os.write(fd + 1, frame({'op': 'done', 'value': 'hijacked'}))\n"
                    "        except OSError:\n            pass\n"),
    # past its deadline, whatever it tries
    "outlive": ("for f in (os.fork, os.setsid):\n"
                "    try:\n        f()\n    except OSError:\n        pass\n"
                "while True:\n    pass\n"),
}


def method(name, body):
    lines = (PRELUDE + f"def bypass_{name}(self, folder, host):\n"
             + "".join(f"    {line}\n" for line in body.splitlines()))
    return lines


def main(folder):
    from guardians import workers
    from image import open_image
    from image.dump import dump
    from kernel.schema import bootstrap
    from prototypes import UvmObject
    from prototypes.method import Method, install

    workers.POOL = workers.Pool(bypass=True)
    img = open_image(folder, create=True)
    bootstrap(img)
    with img.transaction() as conn:
        root = conn.root()
        traits = root["traits"]
        traits.method_limits = {"seconds": 1.0, "memory_mb": 64.0, "output_kb": 256.0}
        target = UvmObject(**{"name": "target", "parent*": traits, "n": 5})
        other = UvmObject(**{"name": "other", "parent*": traits, "n": 7})
        # default values are evaluated where a method is defined: in the call's process,
        # never in the worker (which has no wall), even for a method the worker compiled
        planted = os.path.join(folder, "planted_by_default.py")
        src = (f"def bypass_default(self, folder, host, x=open({planted!r}, 'w').write('x')):\n"
               "    return 'defined'\n")
        target.set_slot("bypass_default", Method("bypass_default", src, {"author": "mind"}))
        for name, body in {**ATTEMPTS, **FRAMES}.items():
            # set, not installed: the bypass is what RestrictedPython would have refused
            target.set_slot(f"bypass_{name}", Method(f"bypass_{name}", method(name, body),
                                                     {"author": "mind"}))
        install(other, "get_n", "def get_n(self):\n    return self.n\n", {"author": "mind"})
        root["target"], root["other"] = target, other
    size = os.path.getsize(os.path.join(folder, "Data.fs"))
    before = dump(img.storage)
    w = workers.POOL.acquire()
    out = {"wall": sorted(w.wall), "attempts": {}, "frames": {}}
    workers.POOL.release(w)
    host = os.getpid()

    def call(name):
        t0 = time.monotonic()
        try:
            with img.view() as root:
                value = getattr(root["target"], f"bypass_{name}")(folder, host)
            result = str(value)
        except BaseException as e:      # noqa: BLE001 - every outcome is reported
            result = f"failed: {type(e).__name__}: {e}"[:300]
        return result, round(time.monotonic() - t0, 3)

    def next_call():
        with img.view() as root:
            return root["other"].get_n()

    # the worker learns it after the first call: all three count
    out["default"] = [call("default")[0] for _ in range(3)]
    out["planted_default"] = os.path.exists(os.path.join(folder, "planted_by_default.py"))
    for name in ATTEMPTS:
        out["attempts"][name] = call(name)[0]
        out.setdefault("next", []).append(next_call())
    for name in FRAMES:
        result, seconds = call(name)
        out["frames"][name] = {"result": result, "seconds": seconds,
                               "next": [next_call() for _ in range(3)]}
    time.sleep(0.2)
    out["leftover"] = _leftovers()
    out["unchanged"] = dump(img.storage) == before
    out["size_unchanged"] = os.path.getsize(os.path.join(folder, "Data.fs")) == size
    out["planted"] = os.path.exists(os.path.join(folder, "planted.py"))
    img.close()
    print(json.dumps(out))
    return 0


def _leftovers():
    """Processes that are neither this host nor a worker of its pool nor their call's child."""
    import psutil

    from guardians import workers
    me = psutil.Process()
    known = {w.pid for w in workers.POOL.idle}
    out = []
    for p in me.children(recursive=True):
        try:
            if p.pid in known or p.ppid() in known or p.status() == psutil.STATUS_ZOMBIE:
                continue
            out.append(f"{p.pid} {p.name()} {p.status()}")
        except psutil.Error:
            pass
    # a session leader a call forked would have left the host's tree for init's: look for
    # orphans of the call's user (other hosts' workers, alive, have living parents)
    for p in psutil.process_iter(["pid", "uids", "ppid", "status"]):
        try:
            if (p.info["uids"] and p.info["uids"].real == 65534 and p.info["ppid"] == 1
                    and p.info["status"] != psutil.STATUS_ZOMBIE):
                out.append(f"{p.pid} nobody, parent {p.info['ppid']}")
        except psutil.Error:
            pass
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
