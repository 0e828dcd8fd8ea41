"""Text, vector and hybrid retrieval over the corpora a mind has mounted.

Hybrid fuses the two rankings by weighted reciprocal rank fusion: each
candidate scores ``w_text / (K + rank_text) + w_vector / (K + rank_vector)``.
K and the weights were tuned on bench/memory.py's labelled set.
"""
from dataclasses import dataclass, field

import numpy as np

from .corpus import get_corpus
from .embed import get_embedder
from .errors import DimensionMismatch
from .mount import load, mounts_view, require_mounted

MODES = ("text", "vector", "hybrid")
RRF_K = 60                # tuned on bench/memory.py's eval set (see docs/memory.md)
TEXT_WEIGHT = 1.0
VECTOR_WEIGHT = 2.0
CANDIDATES = 100          # per mode and corpus, before fusion and filters


@dataclass
class Filters:
    mind: str = None           # chunks ingested by this mind ('' for shared ones)
    source_prefix: str = None  # source path starts with this
    since: float = None        # ingested at or after (epoch seconds)
    until: float = None        # ingested before
    min_resonance: float = None

    def active(self):
        return any(v is not None for v in (self.mind, self.source_prefix, self.since, self.until,
                                           self.min_resonance))


@dataclass
class Hit:
    chunk: object              # memory.corpus.Chunk, live in the caller's connection
    corpus: str
    docid: int
    score: float               # the asked mode's score (hybrid: the fused one)
    scores: dict = field(default_factory=dict)   # text (BM25), vector (cosine), hybrid
    ranks: dict = field(default_factory=dict)    # 1-based rank per mode, where ranked

    def row(self):
        c = self.chunk
        return {"corpus": self.corpus, "docid": self.docid, "source": c.source,
                "start": c.start, "end": c.end, "title": c.title, "score": self.score,
                "scores": self.scores, "ranks": self.ranks, "mind": c.mind, "time": c.time,
                "resonance": c.resonance, "text": c.text}


def text_scores(loaded, query):
    """BM25 of every row for ``query`` (zope.index's Okapi formula), or None if no term is known."""
    words = [query]
    for element in loaded.pipeline:
        words = element.process(words)
    spans = [loaded.word_pos.get(w, -1) for w in words]
    spans = [p for p in spans if p >= 0]
    if not spans:
        return None
    rows = np.concatenate([loaded.rows[loaded.indptr[p]:loaded.indptr[p + 1]] for p in spans])
    weights = np.concatenate([loaded.weights[loaded.indptr[p]:loaded.indptr[p + 1]] * loaded.idf[p]
                              for p in spans])
    return np.bincount(rows, weights=weights, minlength=len(loaded)).astype(np.float32)


def vector_scores(loaded, qvec):
    if qvec.shape[-1] != loaded.dim:
        raise DimensionMismatch(
            f"the query vector has {qvec.shape[-1]} dimensions but corpus {loaded.name!r} holds "
            f"{loaded.dim}-dimensional vectors (model {loaded.model}); query with the corpus's "
            "own model")
    return loaded.vectors @ qvec


def _mask(loaded, f):
    if f is None or not any(v is not None for v in (f.mind, f.source_prefix, f.since, f.until)):
        return None
    m = np.ones(len(loaded), dtype=bool)
    if f.mind is not None:
        code = loaded.minds.index(f.mind) if f.mind in loaded.minds else -1
        m &= loaded.mind_of == code
    if f.source_prefix is not None:
        ok = np.array([str(s).startswith(f.source_prefix) for s in loaded.sources], dtype=bool)
        m &= ok[loaded.source_of] if len(ok) else False
    if f.since is not None:
        m &= loaded.times >= f.since
    if f.until is not None:
        m &= loaded.times < f.until
    return m


def _top(scores, mask, n, positive=False):
    s = scores if mask is None else np.where(mask, scores, -np.inf)
    if positive:
        s = np.where(s > 0, s, -np.inf)
    n = min(n, len(s))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-s, n - 1)[:n]
    idx = idx[np.isfinite(s[idx])]
    return idx[np.argsort(-s[idx], kind="stable")]


def rank(loaded_list, query, mode="hybrid", k=10, filters=None, query_vectors=None,
         rrf_k=None, weights=None, candidates=None):
    """Ranked (corpus index, row, score, scores, ranks) over loaded corpora; no database access.

    ``query_vectors`` maps a model to its query vector (computed if missing).
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    rrf_k = RRF_K if rrf_k is None else rrf_k
    wt, wv = weights or (TEXT_WEIGHT, VECTOR_WEIGHT)
    over = max(candidates or CANDIDATES, 4 * k)
    query_vectors = dict(query_vectors or {})
    per = {"text": [], "vector": []}
    full = []
    for ci, loaded in enumerate(loaded_list):
        mask = _mask(loaded, filters)
        ts = text_scores(loaded, query) if mode in ("text", "hybrid") else None
        vs = None
        if mode in ("vector", "hybrid"):
            if loaded.model not in query_vectors:
                query_vectors[loaded.model] = get_embedder(loaded.model).encode([query])[0]
            vs = vector_scores(loaded, query_vectors[loaded.model])
        full.append((ts, vs))
        if ts is not None:
            per["text"] += [(float(ts[r]), ci, int(r)) for r in _top(ts, mask, over, positive=True)]
        if vs is not None:
            per["vector"] += [(float(vs[r]), ci, int(r)) for r in _top(vs, mask, over)]
    ranks = {}
    for m, entries in per.items():
        entries.sort(key=lambda e: -e[0])
        for i, (_, ci, r) in enumerate(entries):
            ranks.setdefault((ci, r), {})[m] = i + 1
    out = []
    for (ci, r), rk in ranks.items():
        ts, vs = full[ci]
        scores = {}
        if ts is not None:
            scores["text"] = float(ts[r])
        if vs is not None:
            scores["vector"] = float(vs[r])
        if mode == "hybrid":
            fused = sum(w / (rrf_k + rk[m]) for m, w in (("text", wt), ("vector", wv)) if m in rk)
            scores["hybrid"] = fused
            score = fused
        elif mode not in rk:
            continue
        else:
            score = scores[mode]
        out.append((ci, r, score, scores, rk))
    out.sort(key=lambda e: -e[2])
    return out


def search(img, root, query, *, corpora=None, mind="hermes", mode="hybrid", k=10,
           filters=None, query_vectors=None, **tuning):
    """Hits (chunk objects from ``root``'s connection) for ``query`` in ``mind``'s mounted corpora.

    ``corpora`` narrows the search to some of the mounted corpora; naming one
    that is not mounted (or does not exist) is an error.
    """
    names = list(corpora) if corpora else list(mounts_view(root, mind))
    require_mounted(root, names, mind)
    loaded = [load(img, n, root) for n in names]
    ranked = rank(loaded, query, mode, k, filters, query_vectors, **tuning)
    hits = []
    for ci, r, score, scores, rk in ranked:
        corpus = get_corpus(root, names[ci])
        docid = int(loaded[ci].docids[r])
        chunk = corpus.chunks.get(docid)
        if chunk is None:       # removed since the arrays were built
            continue
        if filters and filters.min_resonance is not None and chunk.resonance < filters.min_resonance:
            continue
        hits.append(Hit(chunk, names[ci], docid, score, scores, rk))
        if len(hits) == k:
            break
    return hits
