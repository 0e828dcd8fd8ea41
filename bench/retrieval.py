"""Retrieval quality on the labelled corpora: our three modes beside naive baselines, one run.

Baselines (each list collapsed to pages before scoring, as a user sees pages):
- ``bm25``: SQLite FTS5 BM25 with the porter stemmer over paragraph chunks;
- ``dense``: fixed 1000-character chunks, the same embedding model, cosine;
- ``rrf``: plain reciprocal rank fusion (K = 60) of those two page lists.
Metrics per query kind: MRR@10 and recall@10 at page level (each query has
one answer page), on the tuning half and on the test half (``queries.split``).
"""
import re
import sqlite3
import time
from pathlib import Path

import corpora
import numpy as np
import queries as Q

K = 10
DEPTH = 100          # chunks per list before collapsing to pages


def page_order(pages):
    seen, out = set(), []
    for p in pages:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def scores(ranked, answer):
    """(reciprocal rank, hit) of ``answer`` in the first K pages of ``ranked``."""
    for i, p in enumerate(ranked[:K]):
        if p == answer:
            return 1.0 / (i + 1), 1.0
    return 0.0, 0.0


def rrf(lists, k=60):
    fused = {}
    for lst in lists:
        for i, p in enumerate(lst):
            fused[p] = fused.get(p, 0.0) + 1.0 / (k + i + 1)
    return sorted(fused, key=lambda p: -fused[p])


# -- baselines ---------------------------------------------------------------------
def paragraphs(text):
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def fixed(text, size=1000):
    return [text[i:i + size] for i in range(0, len(text), size)]


def fts_query(q):
    return " OR ".join(f'"{w}"' for w in re.findall(r"\w+", q.lower()))


class Baselines:
    def __init__(self, pages, emb):
        self.para = [(p, t) for p, text in pages.items() for t in paragraphs(text)]
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE c USING fts5(body, tokenize='porter unicode61')")
        self.db.executemany("INSERT INTO c(rowid, body) VALUES (?, ?)",
                            [(i, t) for i, (_, t) in enumerate(self.para)])
        self.fixed = [(p, t) for p, text in pages.items() for t in fixed(text)]
        self.vecs = emb.encode([t for _, t in self.fixed], batch_size=32)

    def bm25(self, q):
        rows = self.db.execute("SELECT rowid FROM c WHERE c MATCH ? ORDER BY bm25(c) LIMIT ?",
                               (fts_query(q), DEPTH)).fetchall()
        return page_order([self.para[r][0] for (r,) in rows])

    def dense(self, qvec):
        s = self.vecs @ qvec
        top = np.argpartition(-s, DEPTH)[:DEPTH]
        return page_order([self.fixed[r][0] for r in top[np.argsort(-s[top])]])


# -- ours --------------------------------------------------------------------------
def ingest_corpus(img, name, folder, budget=None):
    from memory.ingest import ingest
    from memory.mount import mount
    t0 = time.perf_counter()
    summary = ingest(img, name, [folder], budget=budget)
    mount(img, name, "hermes")
    return summary, time.perf_counter() - t0


def ours(img, name, mode, q, qvec, **tuning):
    from memory.mount import load
    from memory.search import rank
    loaded = load(img, name)
    ranked = rank([loaded], q, mode, k=DEPTH, query_vectors={loaded.model: qvec}, **tuning)
    return page_order([Path(str(loaded.sources[loaded.source_of[r]])).stem
                       for _, r, *_ in ranked])


def evaluate(systems, qs, qvecs):
    """{system: {(kind, half): (mrr, recall, n)}} for ``systems`` {name: fn(q, qvec) -> pages}."""
    out = {}
    for name, fn in systems.items():
        cells = {}
        for q, v in zip(qs, qvecs):
            rr, hit = scores(fn(q["query"], v), q["answer"])
            for key in ((q["kind"], Q.split(q["answer"])), ("all", Q.split(q["answer"]))):
                cells.setdefault(key, []).append((rr, hit))
        out[name] = {k: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v])),
                         len(v)) for k, v in cells.items()}
    return out


KINDS = Q.KINDS + ("all",)


def table(title, results, half="test"):
    lines = [f"{title}: MRR@10 / recall@10 on the {half} half"]
    n = {k: next(iter(results.values())).get((k, half), (0, 0, 0))[2] for k in KINDS}
    lines.append(f"  {'':<14}" + "".join(f"{k + f' ({n[k]})':>20}" for k in KINDS))
    for name, cells in results.items():
        lines.append(f"  {name:<14}" + "".join(
            f"{cells[(k, half)][0]:>12.3f} / {cells[(k, half)][1]:.2f}" if (k, half) in cells
            else f"{'-':>20}" for k in KINDS))
    return "\n".join(lines)


def win_ratios(results, half="test", ours_name="hybrid", base=("bm25", "dense", "rrf"),
               singles=("text", "vector")):
    """Per kind: hybrid / best baseline MRR@10, and whether hybrid >= each single mode."""
    out = {}
    for k in Q.KINDS:
        h = results[ours_name][(k, half)][0]
        best = max(results[b][(k, half)][0] for b in base)
        out[k] = (h / best if best else float("inf"),
                  all(h >= results[s][(k, half)][0] for s in singles))
    return out


def load_corpus(name, folder):
    pages = {p: (Path(folder) / f"{p}.txt").read_text(encoding="utf-8")
             for p in corpora.write(name, folder)}
    return pages, Q.load(name)
