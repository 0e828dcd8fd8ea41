"""How far can re-weighting the signals we have take the hybrid? A learned ranker, one run.

For each labelled corpus of bench/memory.py, every page gets 13 signals per
query, all computed from the same two engines the hybrid uses (zope.index's
BM25 formula over our chunks, all-MiniLM-L6-v2 cosines): the hybrid's five,
plus the first chunk's BM25, the second-best chunk's cosine, the best
adjacent pair of chunks (cosine and BM25), the share of the query's IDF found
in the page and in its best chunk, the page's length in chunks, and the best
chunk of one fused per-chunk score. A last set adds the two baselines' own
page rankings (FTS5 BM25 over paragraphs, dense over 1000-character chunks)
as signals. A linear softmax ranker over the pages is fitted to each set on
the tuning halves of both corpora together and scored on the test halves,
beside the shipped weights (memory.search.WEIGHTS) and the best baseline.

If the learned sets barely beat the shipped weights, the signals, not their
weights, bound the hybrid. Run: ``python bench/ranker_ceiling.py`` (about 8
minutes on 2 cores). The last line is the best test-half ratio reached for
the worst query kind.
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import queries as Q  # noqa: E402
import retrieval as R  # noqa: E402

from image import open_image  # noqa: E402
from kernel.schema import bootstrap  # noqa: E402

HYBRID = ["chunk_text", "page_text", "chunk_vector", "page_vector", "lead_vector"]
EXTRA = ["lead_text", "second_vector", "pair_vector", "pair_text", "cover_page", "cover_chunk",
         "log_chunks", "chunk_fused"]
BASELINES = ["rank_bm25", "rank_dense"]
UNSCALED = {"cover_page", "cover_chunk", "log_chunks"}     # already on a common scale


def _z(x, top=50):
    best = np.partition(x, len(x) - top)[-top:]
    sd = best.std()
    return (x - best.mean()) / (sd if sd > 1e-9 else 1.0)


def page_signals(loaded, pages, query, qvec):
    """{signal: per-page array} for one query."""
    from memory.search import query_postings, text_scores
    por, n, P = pages.page_of_row, len(loaded), len(pages)
    post = query_postings(loaded, query)
    ts = text_scores(loaded, query, post)
    ts = np.zeros(n, np.float32) if ts is None else ts
    vs = loaded.vector_scores(qvec)
    same_next = np.r_[por[1:] == por[:-1], False]
    order = np.lexsort((-vs, por))                       # rows by page, best cosine first
    second = pages.best(vs).copy()
    nxt = np.flatnonzero(np.r_[True, por[order][1:] != por[order][:-1]]) + 1
    nxt = nxt[nxt < n]
    nxt = nxt[por[order][nxt] == por[order][nxt - 1]]
    second[por[order][nxt]] = vs[order][nxt]
    idf = [np.log(1.0 + loaded.live / len(r)) for r, _ in post]
    total = sum(idf) or 1.0
    cover_page, cover_row = np.zeros(P), np.zeros(n)
    for (rows, _), w in zip(post, idf):
        cover_page[np.unique(por[rows])] += w
        cover_row[rows] += w
    return {
        "chunk_text": np.maximum(pages.best(ts), 0), "page_text": pages.bm25(post),
        "chunk_vector": pages.best(vs), "page_vector": pages.vectors @ qvec,
        "lead_vector": vs[pages.lead], "lead_text": ts[pages.lead], "second_vector": second,
        "pair_vector": pages.best(np.where(same_next, (vs + np.r_[vs[1:], 0]) / 2, vs)),
        "pair_text": pages.best(np.where(same_next, ts + np.r_[ts[1:], 0], ts)),
        "cover_page": cover_page / total, "cover_chunk": pages.best(cover_row) / total,
        "log_chunks": np.log(np.bincount(por, minlength=P)),
        "chunk_fused": pages.best(_z(ts) + _z(vs)),
    }


def corpus_data(tmp, name, emb):
    """(signals per query, answer page index, kinds, halves, best baseline MRR per kind/half)."""
    from memory.mount import load
    from memory.pages import pages_of
    pages_text, qs = R.load_corpus(name, tmp / name)
    img = open_image(tmp / f"image-{name}", create=True)
    bootstrap(img)
    R.ingest_corpus(img, name, tmp / name)
    loaded = load(img, name)
    pages = pages_of(loaded)
    names = [Path(str(loaded.sources[s])).stem for s in pages.source]
    where = {p: i for i, p in enumerate(names)}
    qvecs = emb.encode([q["query"] for q in qs])
    base = R.Baselines(pages_text, emb)
    lists = {"rank_bm25": [base.bm25(q["query"]) for q in qs],
             "rank_dense": [base.dense(v) for v in qvecs]}
    systems = {"bm25": lambda q, v: base.bm25(q), "dense": lambda q, v: base.dense(v)}
    systems["rrf"] = lambda q, v: R.rrf([base.bm25(q), base.dense(v)])
    res = R.evaluate(systems, qs, qvecs)
    best = {(k, h): max(res[b][(k, h)][0] for b in res) for k in Q.KINDS for h in ("tune", "test")}
    signals = []
    for i, (q, v) in enumerate(zip(qs, qvecs)):
        s = page_signals(loaded, pages, q["query"], v)
        for key, ranked in lists.items():        # a baseline's list as a score: 100 - rank
            x = np.zeros(len(names))
            for r, p in enumerate(ranked[i][:100]):
                x[where[p]] = 100 - r
            s[key] = x
        signals.append(s)
    img.close()
    return dict(signals=signals, answer=np.array([where[q["answer"]] for q in qs]),
                kind=np.array([q["kind"] for q in qs]),
                half=np.array([Q.split(q["answer"]) for q in qs]), best=best)


def features(d, names):
    return np.stack([np.stack([s[n] if n in UNSCALED else _z(s[n]) for n in names], 1)
                     for s in d["signals"]])          # queries x pages x signals


def fit(data, names, lam=1e-2):
    """Weights of a linear softmax ranker over pages, fitted on the tuning halves."""
    from scipy.optimize import minimize
    sets = []
    for d in data.values():
        sel = d["half"] == "tune"
        sets.append((features(d, names)[sel], d["answer"][sel]))
    n = sum(len(a) for _, a in sets)

    def loss(w):
        total, grad = 0.0, np.zeros_like(w)
        for X, a in sets:
            s = X @ w
            s -= s.max(1, keepdims=True)
            e = np.exp(s)
            z = e.sum(1)
            total -= (s[np.arange(len(a)), a] - np.log(z)).sum()
            grad -= X[np.arange(len(a)), a].sum(0) - np.einsum("qp,qpf->f", e / z[:, None], X)
        return total / n + lam * w @ w, grad / n + 2 * lam * w

    return minimize(loss, np.zeros(len(names)), jac=True, method="L-BFGS-B").x


def mrr(d, scores, kind, half):
    sel = (d["kind"] == kind) & (d["half"] == half)
    s, a = scores[sel], d["answer"][sel]
    rank = (s > s[np.arange(len(a)), a][:, None]).sum(1) + 1
    return float(np.where(rank <= 10, 1.0 / rank, 0.0).mean())


def main():
    from memory.embed import get_embedder
    from memory.search import WEIGHTS
    emb = get_embedder()
    with tempfile.TemporaryDirectory() as t:
        data = {name: corpus_data(Path(t), name, emb) for name in ("numpy", "vim")}
    shipped = [WEIGHTS["hybrid"][n] for n in HYBRID]
    rankers = {"shipped weights (5)": (HYBRID, np.array(shipped)),
               "learned, hybrid's 5": (HYBRID, None),
               "learned, 13 signals": (HYBRID + EXTRA, None),
               "learned, 13 + baselines": (HYBRID + EXTRA + BASELINES, None)}
    head = "".join(f"{c[:5] + ' ' + k[:6]:>14}" for c in data for k in Q.KINDS)
    print(f"test half, MRR@10 / best baseline per corpus and kind\n{'':<26}{head}  worst")
    worst_best = 0.0
    for label, (names, w) in rankers.items():
        w = fit(data, names) if w is None else w
        cells = []
        for c, d in data.items():
            s = features(d, names) @ w
            cells += [mrr(d, s, k, "test") / d["best"][(k, "test")] for k in Q.KINDS]
        worst_best = max(worst_best, min(cells))
        print(f"{label:<26}" + "".join(f"{x:>14.3f}" for x in cells) + f"  {min(cells):.3f}")
    print(f"best worst-kind ratio reached by any ranker: {worst_best:.3f} (goal 1.10)")


if __name__ == "__main__":
    main()
