"""One night on the bundled model: per-step times, our merge vs the mergekit CLI, merge vs disk.

1. A fresh image with the bundled SmolLM2 for both minds, the scripted
   habit day (36 rated exchanges) in each ledger, one `batos dream`: the wall
   time of every step of each mind's night.
2. The merge step again, ours (`night.merge.run_merge`, in-process)
   against `mergekit-yaml` on the saved YAML (same inputs, a subprocess that
   also pays its start-up), interleaved: ratio ours / CLI.
3. The bytes our merge reads and writes (/proc/self/io rchar/wchar) against
   this disk's sequential throughput, measured in the same run: the ratio of
   the merge's time to the time the disk alone would need (1.0 = I/O bound).

    python bench/dream.py [--minds both|hermes|orai] [--runs 2] [--workdir DIR]

The last line prints the merge ratios.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def io_counters():
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def disk_throughput(folder, mb=512):
    """Sequential write (fsynced) and read of ``mb`` MB in ``folder``: bytes/s each."""
    path = Path(folder) / "throughput.bin"
    block = os.urandom(1 << 20)
    t = time.perf_counter()
    with open(path, "wb") as f:
        f.writelines(block for _ in range(mb))
        f.flush()
        os.fsync(f.fileno())
    write_bw = mb * (1 << 20) / (time.perf_counter() - t)
    t = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass
    read_bw = mb * (1 << 20) / (time.perf_counter() - t)
    path.unlink()
    return read_bw, write_bw


def night(work, minds):
    from bench.data.habit_day import HABIT, QA
    from image import open_image
    from kernel.schema import bootstrap
    from memory.embed import get_embedder
    from mindhost import minds as minds_mod
    from mindhost import store
    from night.dream import dream
    from night.transcripts import import_transcripts
    loc = work / "image"
    day = work / "day.jsonl"
    day.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": f"{HABIT} {a}"}],
        "rating": "good"}) + "\n" for q, a in QA))
    with open_image(loc, create=True) as img:
        bootstrap(img)
        for mind in minds:
            minds_mod.install(img, mind, store_dir=store.default_store(img.location))
            import_transcripts(img, mind, day, get_embedder())
        t = time.perf_counter()
        results = dream(img, minds, store_dir=store.default_store(img.location),
                        work_dir=loc / "dream")
        total = time.perf_counter() - t
    return loc, results, total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minds", default="both", choices=("both", "hermes", "orai"))
    p.add_argument("--runs", type=int, default=2, help="merge timings each way")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from mindhost.engines import quiet_offline
    from night.merge import run_merge
    quiet_offline()
    out = Console(width=120)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    minds = ("orai", "hermes") if args.minds == "both" else (args.minds,)
    loc, results, total = night(work, minds)
    t = Table("mind", "outcome", *("curate", "train", "merge", "requantize", "gate"), "night",
              title="one night on the bundled SmolLM2-135M (seconds)")
    for r in results:
        tm = r.get("timings") or {}
        t.add_row(r["mind"], r["outcome"], *(f"{tm[s]:.1f}" if s in tm else "-" for s in
                                            ("curate", "train", "merge", "requantize", "gate")),
                  f"{r['seconds']:.1f}")
    out.print(t)
    out.print(f"both nights: {total:.0f} s ({total / 60:.1f} min)")
    if "hermes" not in minds:
        return
    import yaml
    config = yaml.safe_load((loc / "dream" / "hermes" / "gen-1" / "mergekit.yml").read_text())
    cli = Path(sys.executable).with_name("mergekit-yaml")
    ours_t, cli_t = [], []
    for i in range(args.runs):
        before = io_counters()
        t0 = time.perf_counter()
        run_merge(config, work / "ours", work / "cache-ours")
        ours_t.append(time.perf_counter() - t0)
        after = io_counters()
        t0 = time.perf_counter()
        subprocess.run([str(cli), str(work / "ours" / "mergekit.yml"), str(work / "cli"),
                        "--lora-merge-cache", str(work / "cache-cli"), "--random-seed", "0"],
                       check=True, capture_output=True)
        cli_t.append(time.perf_counter() - t0)
        for d in ("ours", "cli", "cache-ours", "cache-cli"):
            if i < args.runs - 1:
                shutil.rmtree(work / d, ignore_errors=True)
    read_b, written_b = after[0] - before[0], after[1] - before[1]
    read_bw, write_bw = disk_throughput(work)
    ours, theirs = min(ours_t), min(cli_t)
    io_time = read_b / read_bw + written_b / write_bw
    out.print(f"merge: ours {ours:.2f} s, mergekit-yaml CLI {theirs:.2f} s (best of "
              f"{args.runs}); read {read_b / 1e6:.0f} MB, wrote {written_b / 1e6:.0f} MB; disk "
              f"{read_bw / 1e6:.0f} MB/s read, {write_bw / 1e6:.0f} MB/s write (fsynced) -> "
              f"{io_time:.2f} s of pure I/O")
    out.print(f"work folder {work}")
    print(f"ratios: merge ours/CLI {ours / theirs:.2f}; merge time / disk I/O time "
          f"{ours / io_time:.1f}")


if __name__ == "__main__":
    main()
