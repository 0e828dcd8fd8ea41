"""The claim protocol (kernel/runners.py) under chaos, with real processes.

A kernel and two runners share one image: a folder the kernel serves over ZEO,
or a PostgreSQL database. One runner's wall clock is 90 s ahead, the other's
90 s behind, each as if on a machine of its own. 200 missions wait in a backlog
(one in ten slow), and one "poison" mission kills whichever process runs it.
While they drain, the runners are SIGKILLed, SIGTERMed, and SIGSTOPped past
their expiry (then resumed, stale), at random moments, and restarted.

The promise: every mission but the poison completes exactly once (one answer,
one ledger exchange), the poison is FAILED after MAX_LAPSES lapsed claims with
a reason that says so, nothing else is FAILED, and each SIGTERM ends in time.
"""
import random
import signal
import subprocess
import time

import pytest
from conftest import batos_env
from runner_proc import client_spec, start

from image import open_image
from kernel import missions as ms

N = 200
EXPIRY = 2.0                # runner_proc's
GRACE = 2.0


def _states(img):
    with img.view() as root:
        return {m.id: m.state for m in root["missions"].values()}


def _failures(img):
    with img.view() as root:
        return [dict(f) for f in root["failures"].values()]


class Runner:
    """One runner slot: restarted with the same clock and machine whenever it dies."""

    def __init__(self, spec, env, name, log):
        self.spec, self.env, self.name, self.log = spec, env, name, log
        self.proc = None
        self.starts = 0

    def ensure(self):
        if self.proc is None or self.proc.poll() is not None:
            self.proc, _ = start(self.spec, "runner", self.env, stderr=self.log)
            self.starts += 1

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(GRACE + 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def test_chaos_every_mission_completes_once_and_only_the_poison_fails(shared_image, tmp_path):
    rng = random.Random(28)
    img = open_image(shared_image)
    with img.transaction() as conn:
        root = conn.root()
        ids = [ms.new_mission(root, ("hermes", "orai")[i % 2],
                              f"{'slow ' if i % 10 == 3 else ''}question {i}").id
               for i in range(N - 1)]
        poison = ms.new_mission(root, "hermes", "poison pill").id
    img.close()
    base = batos_env(tmp_path)
    # the kernel serves the image and runs Orai's missions only: the poison never reaches it
    kernel, _ = start(shared_image, "kernel", dict(base, RUNNER_MINDS="orai"),
                      stderr=open(tmp_path / "kernel.err", "w"))
    slots = [Runner(shared_image, dict(base, RUNNER_CLOCK_SKEW=str(skew), RUNNER_MACHINE=name),
                    name, open(tmp_path / f"{name}.err", "w"))
             for name, skew in (("ahead", 90.0), ("behind", -90.0))]
    actions = []
    try:
        for r in slots:
            r.ensure()
        img = open_image(client_spec(shared_image))
        deadline = time.monotonic() + 240
        while True:
            states = _states(img)
            if all(states[i] == "COMPLETE" for i in ids) and states[poison] == "FAILED":
                break
            assert time.monotonic() < deadline, (
                f"stuck: {sum(s == 'COMPLETE' for s in states.values())} complete, "
                f"poison {states[poison]}, actions {actions}")
            assert not any(states[i] == "FAILED" for i in ids), _failures(img)
            time.sleep(rng.uniform(0.3, 1.5))
            r = rng.choice(slots)
            r.ensure()
            if len(actions) < 16:
                what = rng.choice(("kill", "term", "stop"))
                actions.append((r.name, what))
                if what == "kill":
                    r.proc.send_signal(signal.SIGKILL)
                    r.proc.wait(30)
                elif what == "term":
                    t0 = time.monotonic()
                    r.proc.send_signal(signal.SIGTERM)
                    assert r.proc.wait(GRACE + 30) == 0, (tmp_path / f"{r.name}.err").read_text()
                    assert time.monotonic() - t0 < GRACE + 15
                else:           # stopped past its expiry: it wakes up stale
                    r.proc.send_signal(signal.SIGSTOP)
                    time.sleep(EXPIRY + rng.uniform(0.5, 2.0))
                    r.proc.send_signal(signal.SIGCONT)
            for other in slots:
                other.ensure()     # the poison (or a kill) took it down: back it comes
        with img.view() as root:
            for mid in ids:
                m = root["missions"][mid]
                assert m.state == "COMPLETE" and m.answer.startswith("answered"), ms.summary(m)
                assert len(m.exchanges) == 1, ms.summary(m)
            ledgered = sorted(ex.mission for mind in ("hermes", "orai")
                              for ex in root[mind].ledger.values())
            assert ledgered == sorted(ids)                  # one exchange each, no more
            p = root["missions"][poison]
            assert p.state == "FAILED" and f"lapsed {ms.MAX_LAPSES} times" in p.error, p.error
            assert [f["mission"] for f in root["failures"].values()] == [poison]
            assert ms.queue_length(root) == 0
        img.close()
    finally:
        for r in slots:
            r.close()
        kernel.send_signal(signal.SIGTERM)
        try:
            assert kernel.wait(60) == 0, (tmp_path / "kernel.err").read_text()[-3000:]
        except subprocess.TimeoutExpired:
            kernel.kill()
            raise
    assert sum(r.starts for r in slots) > 2, actions     # restarts happened


if __name__ == "__main__":
    pytest.main([__file__, "-v"])


def test_api_answers_missions_another_runner_runs_and_keeps_nothing_for_them(tmp_path):
    """The kernel claims Orai's missions only; a runner process runs Hermes's. Requests to
    Hermes through the kernel's API, streaming and not, concurrent, are all answered from
    the stored missions, and the kernel holds no event stream for any of them."""
    import concurrent.futures
    import http.client
    import json
    from urllib.parse import urlparse

    from runner_proc import Embedder, answer
    from scripted_engine import ScriptedEngine

    from image import resolve
    from kernel.kernel import Kernel
    from kernel.schema import bootstrap
    from mindhost.pool import ModelPool
    spec = str(tmp_path / "image")
    img = open_image(spec, create=True)
    bootstrap(img)
    img.close()
    pool = ModelPool(models={m: ScriptedEngine(answer).load() for m in ("hermes", "orai")})
    k = Kernel(resolve(spec), pool=pool, embedder=Embedder(), http="127.0.0.1:0", heartbeat=0,
               dream_at="off", presence=0.3, expiry=2.0, poll=0.05, minds=("orai",))
    k.start()
    runner = None
    try:
        runner, rid = start(spec, "runner", dict(batos_env(tmp_path), RUNNER_MINDS="hermes"))
        u = urlparse(k.info()["http"])

        def ask(i):
            body = {"model": "hermes", "stream": i % 2 == 1,
                    "messages": [{"role": "user", "content": f"question {i}"}]}
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            c.request("POST", "/v1/chat/completions", body=json.dumps(body),
                      headers={"Authorization": f"Bearer {k.token}"})
            r = c.getresponse()
            raw = r.read().decode()
            c.close()
            assert r.status == 200, raw
            if not body["stream"]:
                return json.loads(raw)["choices"][0]["message"]["content"]
            chunks = [json.loads(line[6:]) for line in raw.splitlines()
                      if line.startswith("data: {")]
            assert raw.rstrip().endswith("data: [DONE]") or "[DONE]" in raw
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop", chunks[-1]
            return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            answers = list(ex.map(ask, range(16)))
        assert all(a.startswith("answered") for a in answers), answers
        with k.img.view() as root:
            ran = {m.runner for m in root["missions"].values()}
        assert ran == {rid}                        # every one ran on the other runner
        assert k.streams == {}                     # and the kernel kept nothing for them
    finally:
        if runner is not None:
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(30) == 0
        k.stop()
