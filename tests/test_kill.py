"""SIGKILL a process that commits in a loop: every commit it reported survives,
and nothing partial is visible, on every kind of storage."""
import signal
import subprocess
import sys

from conftest import ROOT, batos_env

from image import open_image

WRITER = r"""
import sys
from BTrees.IOBTree import IOBTree
from persistent.mapping import PersistentMapping
from image import open_image
img = open_image(sys.argv[1], create=True)
i = 0
while True:
    with img.transaction() as conn:
        root = conn.root()
        objs = root.setdefault("objs", IOBTree())
        objs[i] = PersistentMapping(i=i, payload="x" * (i % 500), square=i * i)
        root["count"] = i + 1
    print(i, flush=True)
    i += 1
"""


def test_sigkill_mid_loop_loses_no_commit_and_shows_nothing_partial(image_spec):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, image_spec], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env=batos_env())
    last = -1
    try:
        for line in proc.stdout:
            last = int(line)
            if last >= 300:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for line in proc.stdout:          # commits reported before it died
            last = int(line)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert last >= 300
    img = open_image(image_spec)
    try:
        with img.view() as root:
            count = root["count"]
            assert count >= last + 1                    # every reported commit is there
            assert list(root["objs"].keys()) == list(range(count))   # and no more
            for i, obj in root["objs"].items():
                assert dict(obj) == {"i": i, "payload": "x" * (i % 500), "square": i * i}
    finally:
        img.close()
