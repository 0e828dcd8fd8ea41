"""Benchmark the kernel on the bundled model, in one run.

1. Latency of a one-step mission through a real `batos kernel` process
   (HTTP request -> queue commit -> dispatch -> claim commit -> PSM -> answer
   -> ledger packet (embedding) -> commit -> reply), against a raw engine
   generate of the same tokens (same messages, same count, greedy) on the
   same runtime in this process while the kernel is idle, interleaved run by
   run. The overhead ratio is the median of the first over the median of the
   second; the kernel's own record of its generation time splits the rest.
2. Mission throughput with 1 and with 4 concurrent clients.

The last line is the overhead ratio (goal: at most 1.10).

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
        finally:
            k.terminate()
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
    print(f"\nkernel/raw time ratio: {ratio:.3f}")
    return 0


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
