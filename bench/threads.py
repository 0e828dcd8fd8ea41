"""Why the kernel runs models on its main thread: the same generation three ways.

1. model loaded and run on the main thread (what the kernel does);
2. loaded on the main thread, run on a worker thread;
3. loaded and run on a worker thread;
4. loaded on a worker thread, run on the main thread.

Same runtime (the bundled SmolLM2 as Hermes's Q8 by default), same messages,
same number of tokens, greedy. The last line is worker/main time ratio of
case 3 (what a plain thread-per-mission kernel would get).

Run: ``python bench/threads.py [--mind hermes] [--tokens 64] [--runs 3] [--store DIR]``.
"""
import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mindhost import minds


def on_thread(fn):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("out", fn()))
    t.start()
    t.join()
    return box["out"]


def timings(model, messages, tokens, runs):
    model.generate(messages, max_tokens=4)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        model.generate(messages, max_tokens=tokens, ignore_eos=True)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mind", default="hermes", choices=minds.MINDS)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--store", help="model store to reuse (default: a temporary one)")
    args = ap.parse_args(argv)
    from image import open_image
    from kernel.schema import bootstrap
    with tempfile.TemporaryDirectory() as tmp:
        with open_image(Path(tmp) / "image", create=True) as img:
            bootstrap(img)
            minds.install(img, args.mind, store_dir=Path(args.store or Path(tmp) / "models"))
            with img.view() as root:
                plan = minds.plan(root, args.mind)
        messages = minds.messages(plan["identity"], "Tell me about the history of Paris.")
        model = minds.load(plan)
        main_main = timings(model, messages, args.tokens, args.runs)
        main_worker = on_thread(lambda: timings(model, messages, args.tokens, args.runs))
        model.unload()
        worker_worker = on_thread(lambda: timings(minds.load(plan), messages, args.tokens,
                                                  args.runs))
        loaded = on_thread(lambda: minds.load(plan))
        worker_main = timings(loaded, messages, args.tokens, args.runs)
    print(f"{args.mind} ({plan['precision']}), {args.tokens} tokens, median of {args.runs}:")
    print(f"  loaded and run on the main thread   {main_main:.3f} s")
    print(f"  loaded on main, run on a worker     {main_worker:.3f} s")
    print(f"  loaded and run on a worker          {worker_worker:.3f} s")
    print(f"  loaded on a worker, run on main     {worker_main:.3f} s")
    print(f"worker/main time ratio: {worker_worker / main_main:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
