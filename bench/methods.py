"""What the run-time limits cost a method call.

Every call into method code from outside it runs under a budget
(``guardians.limits``): a savepoint, the clock and resident memory read,
ticks in every function and ``while`` body, metered iteration and sized
amplifiers. This measures three methods called through the object (limited)
against the same compiled function called bare (no budget, no ticks
counted), in one run, interleaved, best of ``--repeat``:

- ``get``: a slot read (the per-call cost);
- ``loop``: a 1,000-step for loop (the per-iteration cost);
- ``text``: string building with ``*`` and an f-string width.

    python bench/methods.py [--repeat 5]

The last line prints the ratios limited / bare.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

METHODS = {
    "get": ("def get(self):\n    return self.x\n", 20_000),
    "loop": ("def loop(self):\n    t = 0\n    for i in range(1000):\n        t = t + i\n"
             "    return t\n", 500),
    "text": ("def text(self):\n    out = []\n    n = 0\n    while n < 200:\n"
             "        out.append(f'{n:>6}' + '-' * 10)\n        n = n + 1\n"
             "    return ''.join(out)\n", 2_000),
}


def best(fn, number, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return min(times)


def main(argv=None):
    from rich.console import Console
    from rich.table import Table

    from prototypes import UvmObject
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    obj = UvmObject(name="bench", x=1)
    t = Table(title="method calls, limited vs bare (µs per call)")
    for col in ("method", "limited", "bare", "ratio"):
        t.add_column(col)
    ratios = {}
    for name, (source, number) in METHODS.items():
        obj.define(name, source)
        fn = obj.lookup(name).function()
        bound = getattr(obj, name)
        limited = bare = float("inf")
        for _ in range(args.repeat):        # interleaved: both see the same machine state
            limited = min(limited, best(bound, number, 1))
            bare = min(bare, best(lambda fn=fn: fn(obj), number, 1))
        ratios[name] = limited / bare
        t.add_row(name, f"{limited * 1e6:.2f}", f"{bare * 1e6:.2f}", f"{ratios[name]:.1f}")
    Console().print(t)
    print("ratios limited/bare: " + ", ".join(f"{k} {v:.1f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
