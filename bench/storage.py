"""The same image on FileStorage, ZEO and PostgreSQL (RelStorage), in one run.

For each storage:
1. commits/s of one-object transactions (a counter incremented, one commit
   each: what a mission's short commits look like);
2. objects/s written in 1,000-object transactions (bulk ingest);
3. cold load: objects/s read by a fresh process-level cache (a new storage
   instance) walking 10,000 objects;
4. a chat mission's cost outside generation: queue, claim and one PSM cycle
   through ``run_mission`` with a scripted engine that answers at once and a
   stand-in embedder, so what is timed is the image's work.

FileStorage is the baseline; the last lines print each figure of ZEO and
PostgreSQL as a ratio to it. The PostgreSQL server is a scratch one started
here (tests/storages.py; fsync off, as in the tests: the figures are the
storage layer's, not the disk's). Run: ``python bench/storage.py [--quick]``.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.append(str(HERE.parent / "tests"))      # the scratch server and scripted engine

import numpy as np  # noqa: E402
from BTrees.IOBTree import IOBTree  # noqa: E402
from persistent.mapping import PersistentMapping  # noqa: E402

from image import open_image  # noqa: E402
from kernel.schema import bootstrap  # noqa: E402

COLUMNS = ("commits/s, 1 object", "objects/s, 1k a txn", "cold load objects/s",
           "mission ms, no model")


class Embedder:
    def encode(self, texts):
        return np.ones((len(texts), 8), dtype=np.float32)


def one_object_commits(img, n):
    with img.transaction() as conn:
        conn.root()["counter"] = PersistentMapping(n=0)
    t0 = time.perf_counter()
    for _ in range(n):
        with img.transaction() as conn:
            conn.root()["counter"]["n"] += 1
    return n / (time.perf_counter() - t0)


def bulk_commits(img, txns, per=1000):
    with img.transaction() as conn:
        conn.root()["bulk"] = IOBTree()
    t0 = time.perf_counter()
    for t in range(txns):
        with img.transaction() as conn:
            tree = conn.root()["bulk"]
            for i in range(t * per, (t + 1) * per):
                tree[i] = PersistentMapping(i=i, text="lorem ipsum " * 4)
    return txns * per / (time.perf_counter() - t0)


def cold_load(spec, n):
    img = open_image(spec)                  # a new storage: nothing cached
    try:
        t0 = time.perf_counter()
        with img.view() as root:
            seen = sum(1 for v in root["bulk"].values() if v["i"] >= 0)
        dt = time.perf_counter() - t0
    finally:
        img.close()
    assert seen == n
    return n / dt


def mission_overhead(img, n):
    from scripted_engine import ScriptedEngine

    from kernel import missions as ms
    from kernel.psm import Services, run_mission
    from mindhost.pool import ModelPool
    pool = ModelPool(models={m: ScriptedEngine(lambda text: "ok").load()
                             for m in ("hermes", "orai")})
    services = Services(pool, Embedder(), kernel_id="bench:0:0")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        mid = img.run(lambda root: ms.new_mission(root, "hermes", f"question {i}").id)
        img.run(ms.claim, mid, "bench:0:0")
        run_mission(img, mid, services)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(name, spec, quick):
    n1, bulk, missions = (50, 3, 10) if quick else (300, 10, 40)
    img = open_image(spec, create=True)
    try:
        bootstrap(img)
        row = {"commits/s, 1 object": one_object_commits(img, n1),
               "objects/s, 1k a txn": bulk_commits(img, bulk)}
    finally:
        img.close()
    row["cold load objects/s"] = cold_load(spec, bulk * 1000)
    img = open_image(spec)
    try:
        row["mission ms, no model"] = mission_overhead(img, missions)
    finally:
        img.close()
    print(f"{name:<12}" + "".join(f"{v:>22,.1f}" for v in row.values()), flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer transactions (a smoke run)")
    args = ap.parse_args(argv)
    from storages import PostgresServer

    from image.location import Location
    from image.serve import serve
    rows = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"{'':<12}" + "".join(f"{k:>22}" for k in COLUMNS))
        rows["FileStorage"] = measure("FileStorage", str(tmp / "fs"), args.quick)
        (tmp / "served").mkdir()
        _, stop = serve(Location("folder", path=tmp / "served"), str(tmp / "zeo.sock"))
        try:
            rows["ZEO"] = measure("ZEO", f"zeo://{tmp / 'zeo.sock'}", args.quick)
        finally:
            stop()
        pg_dir = Path(tempfile.mkdtemp(prefix="batos-pg-"))
        server = PostgresServer(pg_dir).start()
        try:
            rows["PostgreSQL"] = measure("PostgreSQL", server.url("bench"), args.quick)
        finally:
            server.stop()
            import shutil
            shutil.rmtree(pg_dir, ignore_errors=True)
    base = rows["FileStorage"]
    for name in ("ZEO", "PostgreSQL"):
        ratios = {k: v / base[k] for k, v in rows[name].items()}
        print(f"{name} / FileStorage (rates: higher is faster; mission ms: higher is slower): "
              + "; ".join(f"{k} {r:.2f}x" for k, r in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
