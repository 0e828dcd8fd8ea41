"""Benchmark the kernel on the bundled model, in one run.

1. Latency of a one-step mission through a real `batos kernel` process
   (HTTP request -> queue commit -> dispatch -> claim commit -> PSM -> answer
   -> ledger packet (embedding) -> commit -> reply), against a raw engine
   generate of the same tokens (same messages, same count, greedy) on the
   same runtime in this process while the kernel is idle, interleaved run by
   run. The overhead ratio is the median of the first over the median of the
   second; the kernel's own record of its generation time splits the rest.
2. Mission throughput with 1 and with 4 concurrent clients, for the kernel
   alone and then with a `batos kernel --runner` beside it (same image, same
   machine: the two processes share the cores, so give each its share of
   them, e.g. OMP_NUM_THREADS=1 on a 2-core box; docs/kernel.md has both).
3. The claim protocol's cost per mission (kernel/runners.py): a claim commit
   plus the fenced cycle, against the same cycle unclaimed, on a FileStorage
   image in this process with a scripted engine, so that commits are all
   there is to measure; interleaved, median of each.

The last line gives the three ratios: kernel/raw time (goal: at most 1.10),
claimed/unclaimed mission time, and kernel-with-runner/kernel throughput.

Run: ``python bench/kernel.py [--runs 7] [--tokens 64] [--store DIR]``.
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from mindhost import minds

PROMPT = "Tell me about the history of Paris."
MIND = "hermes"


def make_image(folder, store):
    from image import open_image
    from kernel.api_token import ensure_token
    from kernel.schema import bootstrap
    with open_image(folder, create=True) as img:
        bootstrap(img)
        for mind in minds.needs_models(img):
            minds.install(img, mind, store_dir=store)
    ensure_token(img.location)


def raw_model(folder):
    """The same runtime the kernel runs, loaded in this process (main thread)."""
    from image import open_image
    with open_image(folder, read_only=True) as img, img.view() as root:
        plan = minds.plan(root, MIND)
    return minds.load(plan)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def throughput(client, clients, per_client, tokens):
    import openai
    done, errors = [], []

    def one():
        for _ in range(per_client):
            try:
                client.chat.completions.create(model=MIND, max_tokens=tokens,
                                               messages=[{"role": "user", "content": PROMPT}])
                done.append(1)
            except openai.APIError as e:     # count it and go on: the bench reports failures
                errors.append(repr(e))
    start = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    return len(done) / seconds * 60, seconds, errors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--store", help="model store to reuse (default: a temporary one)")
    args = ap.parse_args(argv)
    from kernel_proc import KernelProcess
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(args.store or Path(tmp) / "models")
        folder = Path(tmp) / "image"
        print("preparing an image with the bundled model ...", flush=True)
        make_image(folder, store)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
        env |= {"PYTHONPATH": str(HERE.parent), "BATOS_IMAGE": str(folder),
                "BATOS_MODELS": str(store)}
        k = KernelProcess(env, "--heartbeat", "0")
        try:
            client = k.client()
            messages = minds.messages(_identity(k), PROMPT)
            ask = [{"role": "user", "content": PROMPT}]
            client.chat.completions.create(model=MIND, max_tokens=4, messages=ask)   # loads it
            model = raw_model(folder)
            model.generate(messages, max_tokens=4)                                   # warm-up
            e2e, raw, ids, same = [], [], [], True
            for _ in range(args.runs):     # interleaved, so drift on this box hits both alike
                t, r = timed(lambda: client.chat.completions.create(
                    model=MIND, max_tokens=args.tokens, messages=ask))
                e2e.append(t)
                ids.append(r.model_extra["batos"]["mission"])
                n_tokens, answer = r.usage.completion_tokens, r.choices[0].message.content
                t, text = timed(lambda n=n_tokens: model.generate(messages, max_tokens=n,
                                                                  ignore_eos=True))
                raw.append(t)
                same = same and text.strip() == answer.strip()
            model.unload()
            gen = _generation_seconds(k, ids)
            t1, s1, err1 = throughput(client, 1, 4, 32)
            t4, s4, err4 = throughput(client, 4, 2, 32)
            runner = start_runner(folder, env)
            try:
                client.chat.completions.create(model=MIND, max_tokens=4, messages=ask)
                w4, ws4, werr4 = throughput(client, 4, 4, 32)
                elsewhere = _ran_on(k, runner[1])
            finally:
                stop_runner(runner[0])
        finally:
            k.terminate()
        claimed, unclaimed = claim_overhead(Path(tmp) / "claims")
    ratio = statistics.median(e2e) / statistics.median(raw)
    print(f"\none-step mission, {MIND} ({n_tokens} tokens, {args.runs} runs each):")
    print(f"  kernel end to end   median {statistics.median(e2e):.3f} s "
          f"(min {min(e2e):.3f}, max {max(e2e):.3f})")
    print(f"  raw engine generate median {statistics.median(raw):.3f} s "
          f"(min {min(raw):.3f}, max {max(raw):.3f})")
    print(f"  of which generation inside the kernel median {statistics.median(gen):.3f} s; "
          f"the rest (HTTP, queue, commits, context, ledger embedding) "
          f"{statistics.median(e - g for e, g in zip(e2e, gen)):.3f} s")
    print(f"  same answer text: {'yes' if same else 'no'}")
    print(f"  kernel overhead {100 * (ratio - 1):+.1f}% "
          f"({statistics.median(e2e) - statistics.median(raw):.3f} s per mission)")
    print("\nthroughput (32-token answers):")
    print(f"  1 client : {t1:.1f} missions/min ({s1:.1f} s for 4){_errors(err1)}")
    print(f"  4 clients: {t4:.1f} missions/min ({s4:.1f} s for 8){_errors(err4)}")
    print(f"  4 clients, kernel + one runner: {w4:.1f} missions/min ({ws4:.1f} s for 16, "
          f"{elsewhere} run by the runner){_errors(werr4)}")
    cratio = statistics.median(claimed) / statistics.median(unclaimed)
    print(f"\nclaim protocol ({len(claimed)} scripted missions each, FileStorage):")
    print(f"  claimed and fenced median {1000 * statistics.median(claimed):.2f} ms, "
          f"unclaimed {1000 * statistics.median(unclaimed):.2f} ms per mission")
    print(f"\nkernel/raw time ratio: {ratio:.3f}; claimed/unclaimed mission ratio: "
          f"{cratio:.3f}; kernel+runner/kernel throughput ratio: {w4 / t4:.3f}")
    return 0


def start_runner(folder, env):
    """A `batos kernel --runner` on the kernel's image, its model loaded before it says it is
    ready (--minds); (process, runner id)."""
    import subprocess
    p = subprocess.Popen([sys.executable, "-m", "batos", "kernel", "--runner", "--minds", MIND,
                          "--image", str(folder)], env=env, cwd=HERE.parent,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if not line.startswith("runner ready"):
        p.kill()
        raise SystemExit(f"the runner did not start: {line}")
    return p, line.split("id ")[1].split(",")[0]


def stop_runner(p):
    import signal
    p.send_signal(signal.SIGTERM)
    p.wait(120)


def _ran_on(k, runner_id):
    from image import open_image
    with open_image("zeo://" + k.zeo) as img, img.view() as root:
        return sum(1 for m in root["missions"].values() if m.lookup("runner", None) == runner_id)


def claim_overhead(folder, n=200):
    """Seconds per mission, claimed and fenced vs unclaimed, interleaved (scripted engine)."""
    import numpy as np
    from scripted_engine import ScriptedEngine

    from image import open_image
    from kernel import missions as ms
    from kernel import runners
    from kernel.psm import Services, run_mission
    from kernel.schema import bootstrap
    from mindhost.pool import ModelPool

    class Embedder:
        def encode(self, texts):
            return np.ones((len(texts), 8), dtype=np.float32)
    pool = ModelPool(models={m: ScriptedEngine(lambda text: "an answer").load()
                             for m in ("hermes", "orai")})
    svc = Services(pool, Embedder())
    me = runners.new_id()
    claimed, unclaimed = [], []
    with open_image(folder, create=True) as img:
        bootstrap(img)
        img.run(runners.beat, me, role="kernel")
        for i in range(n):
            mids = img.run(lambda root: [ms.new_mission(root, "hermes", f"q {i}").id
                                         for _ in range(2)])
            t = time.perf_counter()
            fence = img.run(ms.claim, mids[0], me)
            run_mission(img, mids[0], svc, fence=fence)
            claimed.append(time.perf_counter() - t)
            t = time.perf_counter()
            run_mission(img, mids[1], svc)
            unclaimed.append(time.perf_counter() - t)
    return claimed, unclaimed


def _identity(k):
    from image import open_image
    with open_image("zeo://" + k.zeo) as img, img.view() as root:
        return root[MIND].identity


def _generation_seconds(k, ids):
    """How long each mission's model generation took, as the kernel recorded it."""
    from image import open_image
    with open_image("zeo://" + k.zeo) as img, img.view() as root:
        return [root["missions"][mid].usage["seconds"] for mid in ids]


def _errors(errs):
    return f", {len(errs)} failed: {errs[0]}" if errs else ""


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
