"""Benchmark the living image against plain ZODB, in one run.

1. commit throughput: prototype objects (UvmObject: object + slot mapping)
   vs plain persistent.Persistent objects holding the same data, same storage,
   in bulk (1,000 objects per transaction) and one object per transaction
   (the brief's measure: each commit fsyncs);
2. slot reads through 0, 1 and 3 levels of delegation vs a plain attribute
   read on a persistent object;
3. snapshot time per GB vs a plain file copy of the same image folder.

Each line prints our figure, the baseline and the ratio; the last line is a
one-line summary. Run: ``python bench/image.py [--quick]``.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from BTrees.IOBTree import IOBTree  # noqa: E402
from persistent import Persistent  # noqa: E402
from ZODB.blob import Blob  # noqa: E402

from image import open_image  # noqa: E402
from image.snapshot import create_snapshot  # noqa: E402
from prototypes import UvmObject  # noqa: E402


class Plain(Persistent):
    pass


def make_plain(i):
    p = Plain()
    p.name, p.n, p.text = f"obj{i}", i, "lorem ipsum " * 4
    return p


def make_proto(i):
    return UvmObject(name=f"obj{i}", n=i, text="lorem ipsum " * 4)


def commit_rate(tmp, make, total, per_txn):
    """(objects created per second, objects updated per second)."""
    img = open_image(tmp, create=True)
    try:
        start = time.perf_counter()
        with img.transaction() as conn:
            conn.root()["objs"] = IOBTree()
        for base in range(0, total, per_txn):
            with img.transaction() as conn:
                objs = conn.root()["objs"]
                for i in range(base, base + per_txn):
                    objs[i] = make(i)
        created = total / (time.perf_counter() - start)
        start = time.perf_counter()
        for base in range(0, total, per_txn):
            with img.transaction() as conn:
                objs = conn.root()["objs"]
                for i in range(base, base + per_txn):
                    objs[i].n = -i           # a slot write / an attribute write
        return created, total / (time.perf_counter() - start)
    finally:
        img.close()


def read_ns(stmt, namespace, number=200_000):
    return min(timeit.repeat(stmt, globals=namespace, number=number, repeat=7)) / number * 1e9


def bench_commits(work, total, per_txn, rounds=3):
    plain = proto = (0.0, 0.0)
    for r in range(rounds):          # interleaved, best of each: noise hits both alike
        tag = f"{per_txn}-{r}"
        plain = tuple(map(max, plain, commit_rate(work / f"plain{tag}", make_plain, total, per_txn)))
        proto = tuple(map(max, proto, commit_rate(work / f"proto{tag}", make_proto, total, per_txn)))
    ratios = []
    for label, a, b in (("create", proto[0], plain[0]), ("update", proto[1], plain[1])):
        ratios.append(a / b)
        print(f"commit  {label} x{per_txn:<5} prototype {a:9,.0f} obj/s | plain persistent "
              f"{b:9,.0f} obj/s | ratio {a / b:.2f}x (goal >= 0.5x)")
    return ratios


def bench_reads():
    p = Plain()
    p.x = 1
    base = UvmObject(name="base", x=1)
    level1 = UvmObject(**{"name": "l1", "parent*": base})
    level2 = UvmObject(**{"name": "l2", "parent*": level1})
    level3 = UvmObject(**{"name": "l3", "parent*": level2})
    ns = {"p": p, "own": base, "l1": level1, "l3": level3}
    plain = read_ns("p.x", ns)
    own, one, three = (read_ns(s, ns) for s in ("own.x", "l1.x", "l3.x"))
    for label, t in (("own slot", own), ("1 level", one), ("3 levels", three)):
        print(f"read    {label:<9} {t:8.1f} ns | plain attribute {plain:6.1f} ns | ratio {t / plain:.2f}x")
    print("        (goal for 1 level: <= 3x)")
    return own / plain, one / plain, three / plain


def bench_snapshot(work, blob_mb):
    folder = work / "snap-img"
    img = open_image(folder, create=True)
    chunk = os.urandom(1 << 20)
    per_blob = 8
    for b in range(0, blob_mb, per_blob):
        with img.transaction() as conn:
            blob = Blob()
            with blob.open("w") as f:
                for _ in range(per_blob):
                    f.write(chunk)
            conn.root()[b] = blob
    img.close()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    gb = size / 1e9
    copies, snaps = [], []
    for i in range(2):
        start = time.perf_counter()
        shutil.copytree(folder, work / f"copy{i}")
        copies.append(time.perf_counter() - start)
        start = time.perf_counter()
        create_snapshot(open_image(folder, read_only=True).location, f"s{i}", root=work / "snaps")
        snaps.append(time.perf_counter() - start)
    copy_s, snap_s = min(copies) / gb, min(snaps) / gb
    ratio = snap_s / copy_s
    print(f"snapshot {snap_s:8.2f} s/GB (SHA-256 of every file, fsync, verify) | plain copy "
          f"{copy_s:6.2f} s/GB | ratio {ratio:.2f}x  [{size / 1e6:.0f} MB image]")
    return ratio


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = ap.parse_args(argv)
    total, blob_mb = (5_000, 64) if args.quick else (20_000, 512)
    with tempfile.TemporaryDirectory(prefix="batos-bench-") as tmp:
        work = Path(tmp)
        create, update = bench_commits(work, total, 1000)
        create1, update1 = bench_commits(work, total // 20, 1)
        own, one, three = bench_reads()
        snap = bench_snapshot(work, blob_mb)
    print(f"summary: commits bulk create {create:.2f}x, update {update:.2f}x; one per txn "
          f"create {create1:.2f}x, update {update1:.2f}x plain | slot read own {own:.2f}x, 1-level {one:.2f}x, "
          f"3-level {three:.2f}x plain | snapshot {snap:.2f}x plain copy time")


if __name__ == "__main__":
    main()
