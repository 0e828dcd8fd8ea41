"""Benchmark the bifocal memory against plain baselines, in one run.

1. Retrieval quality on two real corpora nobody here wrote (bench/corpora.py:
   NumPy's function reference, the Vim user manual) with 1,128 labelled
   queries of three kinds (known-item, detail, paraphrase; bench/queries.py),
   split by answer page into a tuning half and a test half. Our text, vector
   and hybrid modes against SQLite FTS5 BM25 over paragraphs, dense retrieval
   over fixed 1000-character chunks with the same embedding model, and plain
   RRF of the two; MRR@10 and recall@10 at page level, per kind.
2. Ingestion throughput (chunk, embed, index, commit) against a raw
   sentence-transformers ``encode`` of the same chunk texts.
3. At 10k and 100k synthetic chunks: query latency p50/p95 per mode
   (excluding the query's embedding) against SQLite FTS5 and numpy brute
   force on the same data; the time to mount (load) the corpus; and a
   one-file update of the search arrays against a full rebuild.

Run: ``python bench/memory.py`` (about 15 minutes on 2 cores), ``--quick``
for the Vim corpus and 10k chunks only. The last line is a one-line summary.
"""
import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))     # after the project: bench/image.py is no package

import numpy as np  # noqa: E402
import retrieval as R  # noqa: E402

from image import open_image  # noqa: E402
from kernel.schema import bootstrap  # noqa: E402


# -- 1 + 2: quality and ingestion -----------------------------------------------
def quality(tmp, name):
    """Print the tables for corpus ``name``; return (win ratios on the test half, ingest ratio)."""
    from memory.embed import get_embedder
    from memory.mount import load
    emb = get_embedder()
    emb.encode(["warm up"])                       # model load is not ingestion
    pages, qs = R.load_corpus(name, tmp / name)
    img = open_image(tmp / f"image-{name}", create=True)
    bootstrap(img)
    summary, ingest_s = R.ingest_corpus(img, name, tmp / name)
    loaded = load(img, name)
    with img.view() as root:
        corpus = root["memory"].corpora[name]
        texts = [corpus.chunks[int(d)].text for d in loaded.docids]
    t0 = time.perf_counter()
    emb.encode(texts)
    raw_s = time.perf_counter() - t0
    print(f"{name}: {len(pages)} pages ({summary['chars']:,} chars), {len(texts)} chunks of ours; "
          f"{len(qs)} queries")
    qvecs = emb.encode([q["query"] for q in qs])
    base = R.Baselines(pages, emb)
    bm = {q["query"]: base.bm25(q["query"]) for q in qs}
    de = {q["query"]: base.dense(v) for q, v in zip(qs, qvecs)}
    systems = {"bm25": lambda q, v: bm[q], "dense": lambda q, v: de[q],
               "rrf": lambda q, v: R.rrf([bm[q], de[q]])}
    for mode in ("text", "vector", "hybrid"):
        systems[mode] = lambda q, v, mode=mode: R.ours(img, name, mode, q, v)
    res = R.evaluate(systems, qs, qvecs)
    img.close()
    print(R.table(name, res, "tune"))
    print(R.table(name, res, "test"))
    wins = R.win_ratios(res, "test")
    print(f"{name}, test half, hybrid / best baseline MRR@10 (goal >= 1.10) and hybrid >= "
          "our single modes: " + "; ".join(f"{k} {r:.3f}x {'yes' if ok else 'NO'}"
                                          for k, (r, ok) in wins.items()))
    print(f"{name} ingestion: {summary['chars'] / ingest_s:,.0f} chars/s; raw encode of the same "
          f"chunk texts: {summary['chars'] / raw_s:,.0f} chars/s; ratio {raw_s / ingest_s:.2f}x")
    return wins, raw_s / ingest_s


# -- 3: latency and mount at scale -------------------------------------------------
def synthetic(tmp, n, dim=384, seed=0):
    """A folder image with one corpus of ``n`` synthetic chunks (Zipf words, random vectors)."""
    from memory import accel
    from memory.corpus import Chunk, create_corpus
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.07
    p /= p.sum()
    img = open_image(tmp / f"syn{n}", create=True)
    bootstrap(img)
    texts = []
    with img.transaction() as conn:
        create_corpus(conn.root(), "syn", "synthetic", dim, 128)
    for base in range(0, n, 5000):
        m = min(5000, n - base)
        words = rng.choice(len(vocab), size=(m, 60), p=p)
        vecs = rng.standard_normal((m, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        with img.transaction() as conn:
            corpus = conn.root()["memory"].corpora["syn"]
            for j in range(m):
                text = " ".join(vocab[w] for w in words[j])
                texts.append(text)
                docid = corpus.next_docid
                corpus.next_docid += 1
                path = f"/syn/{(base + j) // 50}.txt"           # 50 chunks per file
                corpus.chunks[docid] = Chunk(text, vecs[j].tobytes(), path,
                                             0, len(text), "", "syn", None, time.time())
                corpus.text.index_doc(docid, text)
                rec = corpus.sources.get(path, {"sha256": "", "size": 0, "docids": ()})
                corpus.sources[path] = dict(rec, docids=rec["docids"] + (docid,))
            corpus.version += 1
    t0 = time.perf_counter()
    accel.refresh(img, "syn")
    build_s = time.perf_counter() - t0
    return img, texts, vocab, p, build_s


def update_one_file(img, n_chunks=50, dim=384, seed=1):
    """Seconds to replace one file's chunks through ingest's commit (records + search arrays)."""
    from memory.chunking import Draft
    from memory.ingest import Source, _commit
    rng = np.random.default_rng(seed)
    drafts = []
    for i in range(n_chunks):
        v = rng.standard_normal(dim).astype(np.float32)
        drafts.append(Draft(f"w{i} w{i + 1} w{i + 2} updated text", 0, 10, "", 8, v / np.linalg.norm(v)))
    src = Source("/syn/7.txt", "changed", 1, "text", "")
    t0 = time.perf_counter()
    _commit(img, "syn", [src], [drafts], None)
    return time.perf_counter() - t0


def latency(tmp, n, nq, rng):
    from memory import accel
    from memory import mount as mnt
    from memory.pages import pages_of
    from memory.search import rank
    img, texts, vocab, p, build_s = synthetic(tmp, n)
    with img.transaction() as conn:
        mnt.mounts(conn.root(), "hermes").add("syn")
    mnt.forget(img, "syn")
    t0 = time.perf_counter()
    loaded = mnt.load(img, "syn")
    pages_of(loaded)                              # the page view is part of being ready
    mount_s = time.perf_counter() - t0
    queries = [" ".join(vocab[w] for w in rng.choice(len(vocab), size=4, p=p)) for _ in range(nq)]
    qv = rng.standard_normal((nq, loaded.dim)).astype(np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    out = {"mount_s": mount_s, "build_s": build_s}
    for mode in ("text", "vector", "hybrid"):
        ts = []
        for q, v in zip(queries, qv):
            t0 = time.perf_counter()
            rank([loaded], q, mode, k=10, query_vectors={"synthetic": v})
            ts.append(time.perf_counter() - t0)
        out[mode] = np.percentile(ts, [50, 95]) * 1000
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE c USING fts5(body)")
    db.executemany("INSERT INTO c(rowid, body) VALUES (?, ?)", enumerate(texts))
    ts = []
    for q in queries:
        t0 = time.perf_counter()
        db.execute("SELECT rowid FROM c WHERE c MATCH ? ORDER BY bm25(c) LIMIT 10",
                   (R.fts_query(q),)).fetchall()
        ts.append(time.perf_counter() - t0)
    out["fts5"] = np.percentile(ts, [50, 95]) * 1000
    m = loaded.vectors
    ts = []
    for v in qv:
        t0 = time.perf_counter()
        s = m @ v
        top = np.argpartition(-s, 10)[:10]
        top[np.argsort(-s[top])]
        ts.append(time.perf_counter() - t0)
    out["numpy"] = np.percentile(ts, [50, 95]) * 1000
    with img.view() as root:                       # zope.index's own Okapi query, for reference
        index = root["memory"].corpora["syn"].text
        ts = []
        for q in queries[:min(nq, 50)]:
            t0 = time.perf_counter()
            _zope_or(index, q)
            ts.append(time.perf_counter() - t0)
    out["zope"] = np.percentile(ts, [50, 95]) * 1000
    out["update_s"] = update_one_file(img)
    t0 = time.perf_counter()
    mnt.load(img, "syn")                           # reads only the new segment
    out["reload_s"] = time.perf_counter() - t0
    with img.view() as root:
        out["segments"] = len(root["memory"].corpora["syn"].segments)
    t0 = time.perf_counter()
    with img.view() as root:
        arrays = accel.build(root["memory"].corpora["syn"])
    with img.transaction() as conn:
        accel.store(conn.root()["memory"].corpora["syn"], arrays)
    out["rebuild_s"] = time.perf_counter() - t0
    img.close()
    return out


def _zope_or(index, q):
    from zope.index.text.setops import mass_weightedUnion
    wids = [w for w in index._lexicon.termToWordIds(q) if w]
    scores = mass_weightedUnion(index._search_wids(wids), index.family)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:10]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the Vim corpus and 10k chunks only")
    ap.add_argument("--corpus", action="append", choices=sorted(R.corpora.CORPORA),
                    help="evaluate on this corpus (repeatable; default: both)")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="batos-bench-memory-"))
    summary = []
    try:
        if not args.skip_eval:
            names = args.corpus or (["vim"] if args.quick else ["numpy", "vim"])
            for name in names:
                try:
                    wins, ingest_ratio = quality(tmp, name)
                except R.corpora.CorpusMissing as e:
                    print(f"{name}: skipped: {e}")
                    continue
                worst = min(r for r, _ in wins.values())
                summary.append(f"{name} hybrid/best baseline >= {worst:.2f}x over kinds, "
                               f"ingest {ingest_ratio:.2f}x raw encode")
        if not args.skip_latency:
            rng = np.random.default_rng(1)
            for n in ((10_000,) if args.quick else (10_000, 100_000)):
                r = latency(tmp, n, 100 if args.quick else 300, rng)
                print(f"{n:,} chunks: search arrays built in {r['build_s']:.1f} s; "
                      f"mount {r['mount_s'] * 1000:.0f} ms (goal <= 1000 at 100k)")
                for name in ("text", "vector", "hybrid", "fts5", "numpy", "zope"):
                    p50, p95 = r[name]
                    print(f"  {name:<8} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")
                print(f"  ratio text p95 / FTS5 p95: {r['text'][1] / r['fts5'][1]:.2f}x; "
                      f"vector p95 / numpy p95: {r['vector'][1] / r['numpy'][1]:.2f}x; "
                      f"text p95 / zope.index p95: {r['text'][1] / r['zope'][1]:.2f}x")
                ratio = r["update_s"] / r["rebuild_s"]
                print(f"  one-file update (50 chunks, records + arrays, one transaction) "
                      f"{r['update_s'] * 1000:.0f} ms, then reload {r['reload_s'] * 1000:.0f} ms "
                      f"({r['segments']} segments); full rebuild {r['rebuild_s']:.2f} s; "
                      f"ratio {ratio:.3f}x (goal <= 0.1)")
                summary.append(f"{n // 1000}k: hybrid p95 {r['hybrid'][1]:.1f} ms, "
                               f"mount {r['mount_s'] * 1000:.0f} ms, update {ratio:.3f}x rebuild")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("summary: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
