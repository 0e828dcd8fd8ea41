"""Benchmark the engines on the bundled model, in one run.

For each available engine (torch; mlx) and each precision (the FP16 master,
the engine's Q8 runtime): model load time, and tokens/s generating the same
number of tokens for the same prompts through our wrapper (``stream``) and
through the raw library call it wraps (transformers ``model.generate`` on the
same loaded model; mlx-lm ``generate``). The overhead ratio is our time over
the raw time. The last line is the worst overhead.

mlx-lm is slow on a CPU without Metal (FP16 a few tok/s; its 8-bit kernels
0.26 tok/s in the brief), so there its rows generate fewer tokens for one
prompt (--slow-tokens); ours and raw still get the same tokens.

Run: ``python bench/engines.py [--tokens 64] [--prompts 3] [--store DIR]``.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mindhost import minds
from mindhost.engines import engines_report, get_engine, has_metal

PROMPTS = ["Tell me about the history of Paris.", "Explain how a bicycle works.",
           "Write a short story about a lighthouse keeper.", "What makes a good friend?"]


def raw_generate(model, prompt_ids, n):
    """The library call our wrapper wraps, asked for exactly n tokens."""
    if model.engine.name == "torch":
        import torch
        with torch.inference_mode():
            out = model.model.generate(torch.tensor([prompt_ids]), max_new_tokens=n,
                                       min_new_tokens=n, do_sample=False)
        return out.shape[1] - len(prompt_ids)
    from mlx_lm import generate
    saved = model.tokenizer.eos_token_ids
    model.tokenizer.eos_token_ids = set()
    try:
        generate(model.model, model.tokenizer, prompt_ids, max_tokens=n, verbose=False)
    finally:
        model.tokenizer.eos_token_ids = saved
    return n


def run_one(engine, folder, label, prompts, n, reps):
    t = time.perf_counter()
    model = engine.load(folder)
    load = time.perf_counter() - t
    ids = [model.prompt_ids([{"role": "user", "content": p}]) for p in prompts]
    model.generate([{"role": "user", "content": prompts[0]}], max_tokens=4,
                   ignore_eos=True)                          # warm-up
    ours, raw = [], []
    for _ in range(reps):
        for p, pid in zip(prompts, ids):
            text = model.chat_template([{"role": "user", "content": p}])
            t = time.perf_counter()
            model.generate(text, max_tokens=n, ignore_eos=True)
            ours.append(time.perf_counter() - t)
            assert model.last_stats["tokens"] == n
            t = time.perf_counter()
            assert raw_generate(model, pid, n) == n
            raw.append(time.perf_counter() - t)
    model.unload()
    o, r = statistics.median(ours), statistics.median(raw)
    return {"engine": engine.name, "precision": label, "tokens": n, "load_s": load,
            "ours_tok_s": n / o, "raw_tok_s": n / r, "overhead": o / r - 1}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--slow-tokens", type=int, default=8,
                    help="tokens for mlx on a host without Metal (default 8)")
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--store", help="model store to reuse (default: a temporary one)")
    ap.add_argument("--engines", default="torch,mlx")
    args = ap.parse_args(argv)
    store = Path(args.store or tempfile.mkdtemp(prefix="batos-bench-"))
    prompts = PROMPTS[: args.prompts]
    print(f"bundled model: converting/importing into {store}", flush=True)
    master = minds.import_model(minds.bundled_gguf(), store)
    rows = []
    usable = {r["name"] for r in engines_report() if r["available"]}
    for name in args.engines.split(","):
        if name not in usable:
            print(f"{name}: not available here, skipped")
            continue
        engine = get_engine(name)
        q8 = minds.build_runtime(master, store, engine)
        slow = name == "mlx" and not has_metal()
        n = args.slow_tokens if slow else args.tokens
        for label, folder in (("fp16", master["path"]), ("q8", q8["path"])):
            rows.append(run_one(engine, folder, label, prompts[:1] if slow else prompts, n,
                                1 if slow else args.reps))
            r = rows[-1]
            print(f"{r['engine']:6} {r['precision']:5} tokens {r['tokens']:3}  load {r['load_s']:6.2f} s  "
                  f"ours {r['ours_tok_s']:7.2f} tok/s  raw {r['raw_tok_s']:7.2f} tok/s  "
                  f"overhead {r['overhead']:+.1%}", flush=True)
    by = {(r["engine"], r["precision"]): r for r in rows}
    for name in sorted({r["engine"] for r in rows}):
        if (name, "fp16") in by and (name, "q8") in by:
            print(f"{name}: Q8 / FP16 speed {by[name, 'q8']['ours_tok_s'] / by[name, 'fp16']['ours_tok_s']:.2f}x, "
                  f"load {by[name, 'q8']['load_s'] / by[name, 'fp16']['load_s']:.2f}x")
    if ("torch", "fp16") in by and ("mlx", "fp16") in by:
        print(f"torch / mlx FP16 speed on this host: "
              f"{by['torch', 'fp16']['ours_tok_s'] / by['mlx', 'fp16']['ours_tok_s']:.2f}x")
    worst = max(rows, key=lambda r: r["overhead"])
    print(f"wrapper overhead vs raw library call: worst {worst['overhead']:+.1%} "
          f"({worst['engine']} {worst['precision']}); ratio ours/raw time "
          f"{1 + worst['overhead']:.3f}")
    return rows


if __name__ == "__main__":
    main()
