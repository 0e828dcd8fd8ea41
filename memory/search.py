"""Text, vector and hybrid retrieval over the corpora a mind has mounted.

Results are pages (sources) shown by their best chunk. Each mode ranks pages
by a weighted sum of page signals (pages.py), each normalised by the mean and
spread of its best pages so that BM25 and cosines meet on one scale:
- text: the best chunk's BM25, and BM25 of the whole page;
- vector: the best chunk's cosine, the page centroid's, the first chunk's;
- hybrid: all five. The weights were tuned on bench/memory.py's tuning halves.
"""
from dataclasses import dataclass, field

import numpy as np

from .accel import K1
from .corpus import get_corpus
from .embed import get_embedder
from .errors import DimensionMismatch
from .lexicon import query_terms
from .mount import load, mounts_view, require_mounted
from .pages import pages_of

MODES = ("text", "vector", "hybrid")
# Page signals per mode and their weights, tuned on the tuning halves of
# bench/memory.py's two corpora (docs/memory.md has the figures).
WEIGHTS = {
    "text": {"chunk_text": 1.0, "page_text": 1.0},
    "vector": {"chunk_vector": 1.0, "page_vector": 0.5, "lead_vector": 0.5},
    "hybrid": {"chunk_text": 0.5, "chunk_vector": 1.0, "page_text": 0.5, "page_vector": 0.5,
               "lead_vector": 0.5},
}
NORM_TOP = 50             # pages whose scores set each signal's scale


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


def query_postings(loaded, query) -> list:
    """(rows, term frequencies) of each of ``query``'s terms that the corpus holds."""
    found = (loaded.postings(w) for w in query_terms(loaded.pipeline, query))
    return [(r, tf) for r, tf in found if r is not None and len(r)]


def text_scores(loaded, query, postings=None):
    """BM25 of every row for ``query`` (zope.index's Okapi formula), or None if no term is known."""
    rows, weights = [], []
    for r, tf in query_postings(loaded, query) if postings is None else postings:
        idf = np.log(1.0 + loaded.live / len(r))
        rows.append(r)
        weights.append(tf * (K1 + 1) / (tf + loaded.norm[r]) * idf)
    if not rows:
        return None
    return np.bincount(np.concatenate(rows), weights=np.concatenate(weights),
                       minlength=len(loaded)).astype(np.float32)


def vector_scores(loaded, qvec):
    if qvec.shape[-1] != loaded.dim:
        raise DimensionMismatch(
            f"the query vector has {qvec.shape[-1]} dimensions but corpus {loaded.name!r} holds "
            f"{loaded.dim}-dimensional vectors (model {loaded.model}); query with the corpus's "
            "own model")
    return loaded.vector_scores(qvec)


def _mask(loaded, f):
    if f is None or not any(v is not None for v in (f.mind, f.source_prefix, f.since, f.until)):
        return loaded.alive
    m = np.ones(len(loaded), dtype=bool) if loaded.alive is None else loaded.alive.copy()
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


def _scale(x, ok, top=NORM_TOP):
    """(mean, spread) of ``x`` over the ``top`` best allowed pages: z-scores on that scale
    let signals of unlike ranges (BM25, cosines) be summed."""
    vals = x[ok]
    if not len(vals):
        return 0.0, 1.0
    best = vals if len(vals) <= top else np.partition(vals, len(vals) - top)[-top:]
    sd = float(best.std())
    return float(best.mean()), (sd if sd > 1e-9 else 1.0)


def _signals(loaded, query, mode, weights, mask, query_vectors):
    """Per page of ``loaded``: {signal: raw score} for the signals ``weights`` uses."""
    pages = pages_of(loaded)
    ok = pages.allowed(mask)
    raw, rows = {}, {}
    if any(k in weights for k in ("chunk_text", "page_text")):
        postings = query_postings(loaded, query)      # shared by chunk and page BM25
        ts = text_scores(loaded, query, postings)
        if ts is None:
            ts = np.zeros(len(loaded), dtype=np.float32)
        rows["text"] = ts
        raw["chunk_text"] = np.maximum(pages.best(ts, mask), 0.0)
        if "page_text" in weights:
            raw["page_text"] = pages.bm25(postings)
        if mode == "text":          # a text search returns only pages that hold a query word
            ok = ok & ((raw["chunk_text"] > 0) | (raw.get("page_text", raw["chunk_text"]) > 0))
    if any(k in weights for k in ("chunk_vector", "page_vector", "lead_vector")):
        if loaded.model not in query_vectors:
            query_vectors[loaded.model] = get_embedder(loaded.model).encode([query])[0]
        qvec = query_vectors[loaded.model]
        vs = vector_scores(loaded, qvec)
        rows["vector"] = vs
        raw["chunk_vector"] = pages.best(vs, mask)
        raw["page_vector"] = pages.vectors @ qvec
        raw["lead_vector"] = np.where(pages.lead >= 0, vs[np.maximum(pages.lead, 0)], -1.0)
    return pages, ok, raw, rows


def rank(loaded_list, query, mode="hybrid", k=10, filters=None, query_vectors=None,
         weights=None, collapse=True):
    """Ranked (corpus index, row, score, scores, ranks) over loaded corpora; no database access.

    Pages (sources) are ranked by a weighted sum of normalised page signals
    (``WEIGHTS[mode]``, or ``weights``); each page is shown by its best chunk,
    once (``collapse``), or by all its chunks in order of their own scores.
    ``query_vectors`` maps a model to its query vector (computed if missing).
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    weights = dict(WEIGHTS[mode] if weights is None else weights)
    query_vectors = dict(query_vectors or {})
    ranked = []
    for ci, loaded in enumerate(loaded_list):
        if not len(loaded):
            continue
        mask = _mask(loaded, filters)
        pages, ok, raw, rows = _signals(loaded, query, mode, weights, mask, query_vectors)
        scale = {name: _scale(raw[name], ok) for name in weights if name in raw}
        score = sum(weights[name] * (raw[name] - m) / sd for name, (m, sd) in scale.items())
        score = np.where(ok, score, -np.inf)
        top = _top(score, None, k)
        # a chunk's own evidence, on its page signals' scale, picks the chunks shown
        own = np.zeros(len(loaded))
        for name, key in (("chunk_text", "text"), ("chunk_vector", "vector")):
            if name in scale:
                m, sd = scale[name]
                own += weights[name] * (rows[key] - m) / sd
        for p in top:
            members = pages.rows(p)
            if mask is not None:
                members = members[mask[members]]
            members = members[np.argsort(-own[members], kind="stable")]
            if collapse:
                members = members[:1]
            for r in members:     # the best chunk carries the page's score; the others less
                gap = 0.0 if r == members[0] else own[members[0]] - own[r]
                ranked.append((ci, int(r), float(score[p] - gap),
                               _scores(rows, raw, p, r, mode, score[p]),
                               _ranks(rows, mask, r)))
    ranked.sort(key=lambda e: -e[2])
    return ranked[:k] if collapse else ranked


def _scores(rows, raw, page, r, mode, fused):
    out = {key: float(v[r]) for key, v in rows.items()}
    out.update({name: float(v[page]) for name, v in raw.items() if name.startswith(("page", "lead"))})
    out[mode] = float(fused) if mode == "hybrid" else out.get(mode, float(fused))
    return out


def _ranks(rows, mask, r):
    """1-based rank of row ``r`` by each mode's chunk score among the allowed rows."""
    out = {}
    for key, v in rows.items():
        s = v if mask is None else v[mask]
        if key == "text" and v[r] <= 0:
            continue
        out[key] = int((s > v[r]).sum()) + 1
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
    # resonance lives on the chunk objects: rank every chunk of more pages, then keep one per page
    by_chunk = filters is not None and filters.min_resonance is not None
    ranked = rank(loaded, query, mode, max(4 * k, 50) if by_chunk else k, filters, query_vectors,
                  collapse=not by_chunk, **tuning)
    hits, shown = [], set()
    for ci, r, score, scores, rk in ranked:
        corpus = get_corpus(root, names[ci])
        docid = int(loaded[ci].docids[r])
        chunk = corpus.chunks.get(docid)
        if chunk is None:       # removed since the arrays were built
            continue
        if by_chunk and (chunk.resonance < filters.min_resonance or (ci, chunk.source) in shown):
            continue
        shown.add((ci, chunk.source))
        hits.append(Hit(chunk, names[ci], docid, score, scores, rk))
        if len(hits) == k:
            break
    return hits
