"""Missions that survive, on the bundled model, as a user runs them (issue 28).

A backlog through three clean stops and a fourth start; the OpenAI API with a
`batos kernel --runner` beside the kernel. The protocol itself is attacked in
tests/test_chaos.py; here it is the real model, the real CLI and real timings.
"""
import concurrent.futures
import json
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, batos_env, run_batos
from kernel_proc import KernelProcess

from image import open_image
from kernel import missions as ms

GRACE = 5.0


@pytest.fixture(scope="module")
def inited(tmp_path_factory, model_store, smol_master):
    tmp = tmp_path_factory.mktemp("runners-bundled")
    env = batos_env(tmp, BATOS_IMAGE=str(tmp / "pristine"), BATOS_MODELS=str(model_store))
    run_batos("init", env=env, check=True, timeout=600)
    return tmp, env


def _copy(inited, name):
    tmp, env = inited
    shutil.copytree(tmp / "pristine", tmp / name)
    return tmp / name, env | {"BATOS_IMAGE": str(tmp / name)}


def test_a_backlog_survives_three_clean_stops(inited):
    folder, env = _copy(inited, "restarts")
    with open_image(folder) as img, img.transaction() as conn:
        ids = [ms.new_mission(conn.root(), "hermes", f"Name a colour, please ({i}).",
                              options={"max_tokens": 48}).id for i in range(24)]
    rng = random.Random(3)
    for _ in range(3):
        k = KernelProcess(env, "--heartbeat", "0", "--dream-at", "off", "--grace", str(GRACE))
        time.sleep(rng.uniform(1.0, 4.0))            # a few seconds after it is ready
        t0 = time.monotonic()
        assert k.terminate(timeout=120) == 0
        # the grace period, plus unloading the model and closing the ZEO server
        assert time.monotonic() - t0 < GRACE + 10, time.monotonic() - t0
    k = KernelProcess(env, "--heartbeat", "0", "--dream-at", "off")
    try:
        with open_image("zeo://" + k.zeo) as img:
            deadline = time.monotonic() + 300
            while True:
                with img.view() as root:
                    states = [root["missions"][i].state for i in ids]
                if all(s in ms.TERMINAL for s in states):
                    break
                assert time.monotonic() < deadline, states
                time.sleep(0.5)
    finally:
        assert k.terminate() == 0
    with open_image(folder) as img, img.view() as root:
        out = [ms.summary(root["missions"][i]) for i in ids]
        assert [m["state"] for m in out] == ["COMPLETE"] * len(ids), out
        assert all(len(m["exchanges"]) == 1 and m["lapses"] == 0 for m in out), out
        assert sorted(ex.mission for ex in root["hermes"].ledger.values()) == sorted(ids)
        assert len(root["failures"]) == 0
        # a claim is made only to start the work: at most the mission threads' worth of
        # started-then-stopped claims per stop (2 threads, 3 stops)
        assert sum(m["attempts"] for m in out) <= len(ids) + 2 * 3, [m["attempts"] for m in out]


def test_api_requests_are_answered_whichever_runner_runs_them(inited):
    folder, env = _copy(inited, "api-runner")
    k = KernelProcess(env, "--heartbeat", "0", "--dream-at", "off", "--threads", "1")
    runner = subprocess.Popen(
        [sys.executable, "-m", "batos", "kernel", "--runner", "--minds", "hermes", "--image",
         str(folder)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        line = runner.stdout.readline()
        assert line.startswith("runner ready"), line + runner.stderr.read()[-2000:]
        wid = line.split("id ")[1].split(",")[0]
        client = k.client()

        def ask(i):
            messages = [{"role": "user", "content": f"What is {i} plus {i}?"}]
            if i % 2:
                return "".join(c.choices[0].delta.content or "" for c in
                               client.chat.completions.create(
                                   model="hermes", messages=messages, max_tokens=16,
                                   stream=True) if c.choices)
            return client.chat.completions.create(model="hermes", messages=messages,
                                                  max_tokens=16).choices[0].message.content
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            answers = list(ex.map(ask, range(8)))
        assert all(a.strip() for a in answers), answers
        out = json.loads(run_batos("missions", "--json", "--image", "zeo://" + k.zeo,
                                   check=True).stdout)
        assert [m["state"] for m in out] == ["COMPLETE"] * 8
        assert wid in {m["runner"] for m in out}, (wid, [m["runner"] for m in out])
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(60) == 0, runner.stderr.read()[-2000:]
        assert k.terminate() == 0
