"""Benchmark the bifocal memory against plain baselines, in one run.

1. Retrieval quality (MRR@10, document level) on a labelled set: the pydoc
   text of 58 standard-library modules (real text by CPython's authors) and 66
   paraphrased questions (bench/data/stdlib_queries.json), for our text, vector
   and hybrid modes, against fixed 1000-character chunks searched with SQLite
   FTS5 BM25 and with plain dense retrieval (same embedding model). The
   hybrid fusion constants are tuned on the even-numbered queries and
   reported on the odd-numbered ones as well as on all.
2. Ingestion throughput (chunk, embed, index, commit) against a raw
   sentence-transformers ``encode`` of the same chunk texts.
3. At 10k and 100k synthetic chunks: query latency p50/p95 per mode
   (excluding the query's embedding) against SQLite FTS5 and numpy brute
   force on the same data, and the time to mount (load) the corpus.

Run: ``python bench/memory.py`` (about 10 minutes on 2 cores), ``--quick``
for a smaller run. The last line is a one-line summary.
"""
import argparse
import importlib
import json
import pydoc
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from image import open_image  # noqa: E402
from kernel.schema import bootstrap  # noqa: E402

HERE = Path(__file__).resolve().parent
DOC_CAP = 20_000        # characters per module page (pydoc pages run to 255k with inherited members)


def mrr(ranked_docs, answer, k=10):
    for i, d in enumerate(ranked_docs[:k]):
        if d == answer:
            return 1.0 / (i + 1)
    return 0.0


def doc_order(sources):
    seen, out = set(), []
    for s in sources:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def write_corpus(folder):
    data = json.loads((HERE / "data" / "stdlib_queries.json").read_text())
    queries = data["queries"]
    for mod in sorted({m for _, m in queries}):
        text = pydoc.render_doc(importlib.import_module(mod), renderer=pydoc.plaintext)
        (folder / f"{mod}.txt").write_text(text[:DOC_CAP], encoding="utf-8")
    return queries


# -- 1 + 2: quality and ingestion -----------------------------------------------
def eval_ours(tmp, queries, budget=None):
    from memory.embed import get_embedder
    from memory.ingest import ingest
    from memory.mount import load, mount
    from memory.search import rank
    emb = get_embedder()
    emb.encode(["warm up"])                       # model load is not ingestion
    docs = tmp / "docs"
    shutil.rmtree(tmp / "image", ignore_errors=True)
    img = open_image(tmp / "image", create=True)
    bootstrap(img)
    t0 = time.perf_counter()
    summary = ingest(img, "stdlib", [docs], budget=budget)
    ingest_s = time.perf_counter() - t0
    mount(img, "stdlib", "hermes")
    loaded = load(img, "stdlib")
    with img.view() as root:
        corpus = root["memory"].corpora["stdlib"]
        texts = [corpus.chunks[int(d)].text for d in loaded.docids]
        source_of = {int(d): Path(corpus.chunks[int(d)].source).stem for d in loaded.docids}
    t0 = time.perf_counter()
    emb.encode(texts)
    raw_s = time.perf_counter() - t0
    qvecs = emb.encode([q for q, _ in queries])

    def run(mode, sel, **tuning):
        scores = []
        for i in sel:
            q, answer = queries[i]
            ranked = rank([loaded], q, mode, k=50, query_vectors={loaded.model: qvecs[i]}, **tuning)
            docs_ = doc_order([source_of[int(loaded.docids[r])] for _, r, *_ in ranked])
            scores.append(mrr(docs_, answer))
        return float(np.mean(scores))
    img.close()
    return run, summary, ingest_s, raw_s, len(texts), qvecs


def eval_baselines(tmp, queries, qvecs):
    from memory.embed import get_embedder
    emb = get_embedder()
    chunks = []
    for f in sorted((tmp / "docs").glob("*.txt")):
        text = f.read_text(encoding="utf-8")
        chunks += [(f.stem, text[i:i + 1000]) for i in range(0, len(text), 1000)]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE c USING fts5(body, tokenize='porter unicode61')")
    db.executemany("INSERT INTO c(rowid, body) VALUES (?, ?)",
                   [(i, t) for i, (_, t) in enumerate(chunks)])
    vecs = emb.encode([t for _, t in chunks])
    fts, dense = [], []
    for i, (q, answer) in enumerate(queries):
        fts.append(mrr(doc_order([chunks[r][0] for r in fts_top(db, q, 50)]), answer))
        order = np.argsort(-(vecs @ qvecs[i]))[:50]
        dense.append(mrr(doc_order([chunks[r][0] for r in order]), answer))
    return np.array(fts), np.array(dense), len(chunks)


def fts_query(q):
    return " OR ".join(f'"{w}"' for w in re.findall(r"\w+", q.lower()))


def fts_top(db, q, k):
    return [r for (r,) in db.execute("SELECT rowid FROM c WHERE c MATCH ? ORDER BY bm25(c) "
                                     "LIMIT ?", (fts_query(q), k))]


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
                corpus.chunks[docid] = Chunk(text, vecs[j].tobytes(), f"/syn/{(base + j) // 50}.txt",
                                             0, len(text), "", "syn", None, time.time())
                corpus.text.index_doc(docid, text)
            corpus.version += 1
    t0 = time.perf_counter()
    accel.refresh(img, "syn")
    build_s = time.perf_counter() - t0
    return img, texts, vocab, p, build_s


def latency(tmp, n, nq, rng):
    from memory import mount as mnt
    from memory.search import rank
    img, texts, vocab, p, build_s = synthetic(tmp, n)
    with img.transaction() as conn:
        mnt.mounts(conn.root(), "hermes").add("syn")
    mnt.forget(img, "syn")
    t0 = time.perf_counter()
    loaded = mnt.load(img, "syn")
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
        fts_top(db, q, 10)
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
    img.close()
    return out


def _zope_or(index, q):
    from zope.index.text.setops import mass_weightedUnion
    wids = [w for w in index._lexicon.termToWordIds(q) if w]
    scores = mass_weightedUnion(index._search_wids(wids), index.family)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:10]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10k chunks only, fewer queries")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--budget", type=int, help="chunk token budget (default: memory's default)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="batos-bench-memory-"))
    summary = []
    try:
        if not args.skip_eval:
            (tmp / "docs").mkdir()
            queries = write_corpus(tmp / "docs")
            run, ing, ingest_s, raw_s, nchunks, qvecs = eval_ours(tmp, queries, args.budget)
            print(f"eval set: {len(queries)} queries over {ing['files']} documents "
                  f"({ing['chars']:,} chars), {nchunks} semantic chunks")
            even, odd, every = (range(0, len(queries), 2), range(1, len(queries), 2),
                                range(len(queries)))
            best = max(((run("hybrid", even, rrf_k=k, weights=(1.0, wv)), k, wv)
                        for k in (5, 10, 20, 40, 60) for wv in (0.5, 0.75, 1.0, 1.5, 2.0)))
            _, k, wv = best
            print(f"hybrid tuned on even queries: rrf_k={k}, vector weight {wv}")
            rows = {}
            for mode in ("text", "vector"):
                rows[mode] = (run(mode, odd), run(mode, every))
            rows["hybrid"] = (run("hybrid", odd, rrf_k=k, weights=(1.0, wv)),
                              run("hybrid", every, rrf_k=k, weights=(1.0, wv)))
            rows["hybrid (defaults)"] = (run("hybrid", odd), run("hybrid", every))
            fts, dense, nfixed = eval_baselines(tmp, queries, qvecs)
            print(f"{'MRR@10':<32}{'odd half':>10}{'all':>8}")
            for name, (o, a) in rows.items():
                print(f"{'ours ' + name:<32}{o:>10.3f}{a:>8.3f}")
            odd_i = list(odd)
            print(f"{'fixed 1000-char + FTS5 BM25':<32}{fts[odd_i].mean():>10.3f}{fts.mean():>8.3f}")
            print(f"{'fixed 1000-char + dense':<32}{dense[odd_i].mean():>10.3f}{dense.mean():>8.3f}"
                  f"   ({nfixed} chunks)")
            fts, dense = float(fts.mean()), float(dense.mean())
            hyb = rows["hybrid (defaults)"][1]
            margin = hyb - max(fts, dense)
            print(f"hybrid (defaults) - best baseline: {margin:+.3f} MRR@10 (goal +0.08)")
            ratio = raw_s / ingest_s
            print(f"ingestion: {ing['chars'] / ingest_s:,.0f} chars/s; raw encode of the same "
                  f"chunk texts: {ing['chars'] / raw_s:,.0f} chars/s; ratio {ratio:.2f}x (goal >= 0.8)")
            summary += [f"hybrid MRR {hyb:.3f} vs best baseline {max(fts, dense):.3f} ({margin:+.3f})",
                        f"ingest {ratio:.2f}x raw encode"]
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
                summary.append(f"{n // 1000}k: hybrid p95 {r['hybrid'][1]:.1f} ms, "
                               f"mount {r['mount_s'] * 1000:.0f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("summary: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
