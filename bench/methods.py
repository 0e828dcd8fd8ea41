"""What running a method under the guardians costs, in one run.

1. **Call latency**: the same trivial method (``return self.x``) called as an
   untrusted method (in an isolated worker: a fresh process per call behind
   the second wall, a pipe round trip, a slot read asked of the host, the undo
   record), the same without the second wall (the baseline for its cost), and
   as an owner's method (in process, under the in-interpreter budget), p50 and
   p90 over ``--calls`` calls.
2. **Metering on loops**: three loop shapes run the way a method runs them,
   against the same source compiled as plain Python and called on a plain
   object in this process:

   - ``for``: ``for i in range(n): t += i * i``;
   - ``genexp``: ``sum(i * i for i in range(n))``;
   - ``while``: a ``while`` loop counting into a dict.

   *Isolated* is the untrusted path (the worker's OS limits meter it, so the
   code runs unmetered, plus one call's overhead); *in process* is the
   owner's path (ticks in every loop body, metered iteration, sized
   operators).

    python bench/methods.py [--calls 500] [--n 1000000] [--repeat 5]

The last line prints the ratios.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TRIVIAL = "def get(self):\n    return self.x\n"
LOOPS = {
    "for": "def loop(self, n):\n    t = 0\n    for i in range(n):\n        t += i * i\n    return t\n",
    "genexp": "def loop(self, n):\n    return sum(i * i for i in range(n))\n",
    "while": "def loop(self, n):\n    d = {}\n    i = 0\n    while i < n:\n        k = i % 97\n"
             "        d[k] = d.get(k, 0) + 1\n        i += 1\n    return len(d)\n",
}


class Plain:
    x = 1


def latency(fn, calls):
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.9)]


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    from rich.console import Console
    from rich.table import Table

    from prototypes import UvmObject
    from prototypes.method import install
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--n", type=int, default=1_000_000, help="loop length")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    console = Console()
    limits = {"seconds": 60.0, "memory_mb": 512.0, "output_kb": 1024.0}
    obj = UvmObject(name="bench", x=1, method_limits=limits)
    install(obj, "iso_get", TRIVIAL.replace("def get", "def iso_get"), {"author": "mind"})
    install(obj, "own_get", TRIVIAL.replace("def get", "def own_get"), {"author": "console"})
    obj.iso_get()                               # start the worker
    for _ in range(20):
        obj.iso_get(), obj.own_get()
    iso = latency(obj.iso_get, args.calls)
    own = latency(obj.own_get, args.calls)
    from guardians import workers
    walled, workers.POOL = workers.POOL, workers.Pool(wall=False)
    workers.POOL.warm()
    for _ in range(20):
        obj.iso_get()
    bare = latency(obj.iso_get, args.calls)
    workers.POOL.close()
    workers.POOL = walled
    t = Table(title=f"a trivial method call ({args.calls} calls)")
    for col in ("path", "p50 ms", "p90 ms"):
        t.add_column(col)
    t.add_row("isolated worker", f"{iso[0] * 1e3:.3f}", f"{iso[1] * 1e3:.3f}")
    t.add_row("isolated, no second wall", f"{bare[0] * 1e3:.3f}", f"{bare[1] * 1e3:.3f}")
    t.add_row("in process", f"{own[0] * 1e3:.3f}", f"{own[1] * 1e3:.3f}")
    console.print(t)

    t = Table(title=f"loops of n={args.n:,} (best of {args.repeat}, ms)")
    for col in ("shape", "plain", "isolated", "ratio", "in process", "ratio"):
        t.add_column(col)
    ratios = {}
    for shape, source in LOOPS.items():
        ns = {}
        exec(compile(source, f"<plain {shape}>", "exec"), ns)
        plain_fn, plain_obj = ns["loop"], Plain()
        iso_name, own_name = f"iso_{shape}", f"own_{shape}"
        install(obj, iso_name, source.replace("def loop", f"def {iso_name}"), {"author": "mind"})
        install(obj, own_name, source.replace("def loop", f"def {own_name}"),
                {"author": "console"})
        expect = plain_fn(plain_obj, args.n)
        assert getattr(obj, iso_name)(args.n) == expect == getattr(obj, own_name)(args.n)
        plain = iso_t = own_t = float("inf")
        for _ in range(args.repeat):            # interleaved: all see the same machine state
            plain = min(plain, best(lambda: plain_fn(plain_obj, args.n), 1))
            iso_t = min(iso_t, best(lambda: getattr(obj, iso_name)(args.n), 1))
            own_t = min(own_t, best(lambda: getattr(obj, own_name)(args.n), 1))
        ratios[shape] = (iso_t / plain, own_t / plain)
        t.add_row(shape, f"{plain * 1e3:.1f}", f"{iso_t * 1e3:.1f}", f"{iso_t / plain:.2f}",
                  f"{own_t * 1e3:.1f}", f"{own_t / plain:.2f}")
    console.print(t)
    iso_ratio = statistics.median(r[0] for r in ratios.values())
    print(f"ratios: isolated call p50 {iso[0] * 1e3:.3f} ms vs in-process "
          f"{own[0] * 1e3:.3f} ms ({iso[0] / own[0]:.1f}x); second wall {iso[0] / bare[0]:.2f}x "
          f"({bare[0] * 1e3:.3f} ms without); metered/plain isolated "
          + ", ".join(f"{k} {v[0]:.2f}" for k, v in ratios.items())
          + f" (median {iso_ratio:.2f}); in process "
          + ", ".join(f"{k} {v[1]:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
