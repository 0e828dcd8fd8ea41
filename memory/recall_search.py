"""Finding a mind's past exchanges: the recall segments held in this process, and the ranker.

One row is one exchange, so the page machinery of corpus search (files of
many chunks) has nothing to add: a row's hybrid score is its BM25 (zope's
Okapi formula, as search.py) plus its cosine to the query, each as a z-score
over the 50 best allowed rows, so that the two meet on one scale. Segments
are scored where they lie (no concatenated copy of the vectors), and a new
pending exchange costs one tokenisation, not a reload: at 100k exchanges a
query is a matrix-vector product and a few posting lists (bench/recall.py).
"""
import threading
from dataclasses import dataclass

import numpy as np

from . import accel
from .lexicon import query_terms
from .mount import _key
from .recall import _arrays, _first_dim, _row, index_of

TOP = 50                  # rows whose scores set each signal's scale
# Text against meaning, as the corpus hybrid weighs them once its page signals fold into
# one row (search.WEIGHTS["hybrid"]: 0.5 + 0.5 text, 1.0 + 0.5 + 0.5 vector), tuned on
# bench/memory.py's tuning halves, not on the recall evaluation.
TEXT, VECTOR = 1.0, 2.0
_cache: dict = {}         # (image, mind) -> _Held
_lock = threading.Lock()


class _Seg:
    """One segment's arrays, as the ranker reads them."""

    def __init__(self, sid, arrays):
        self.id = sid
        self.docids = arrays["docids"].astype(np.int64)
        self.times = arrays["times"].astype(np.float64)
        self.doclen = arrays["doclen"].astype(np.float64)
        self.vectors = _half(arrays["vectors"])     # torch float16: half the bytes, 4x faster
        self.keys = arrays["sources"][arrays["source_of"]] if len(self.docids) else \
            np.zeros(0, "<U1")
        self.indptr, self.rows, self.tf = arrays["indptr"], arrays["rows"], arrays["tf"]
        self.word_pos = {str(w): i for i, w in enumerate(arrays["words"])}

    def __len__(self):
        return len(self.docids)

    def cosines(self, qvec):
        """The rows' cosines to ``qvec``, by torch: numpy's threaded BLAS, spinning after a
        product, slows the next query embedding (torch) 2-10x on a 2-core box (measured)."""
        import torch
        q = torch.from_numpy(np.ascontiguousarray(qvec, dtype=np.float32)).to(torch.float16)
        return (self.vectors @ q).float().numpy()

    def postings(self, word):
        p = self.word_pos.get(word)
        if p is None:
            return None, None
        a, b = self.indptr[p], self.indptr[p + 1]
        return self.rows[a:b], self.tf[a:b]


class View:
    """A mind's exchanges as this process holds them: persisted segments + pending ones."""

    def __init__(self, segs, alive, pipeline, dim, model):
        # alive: per segment, None (every row) or a bool mask (pruned rows dead); the view's
        # own, so a prune seen by another thread's view never changes this one
        self.segs, self.alive, self.pipeline = segs, alive, pipeline
        self.dim, self.model = dim, model
        self.live = sum(int(a.sum()) if a is not None else len(s) for s, a in zip(segs, alive))
        total = sum(float(s.doclen[a].sum() if a is not None else s.doclen.sum())
                    for s, a in zip(segs, alive))
        self.avgdl = total / self.live if self.live and total else 1.0

    def __len__(self):
        return self.live

    def bm25(self, query):
        """Every row's BM25 for ``query`` (zope.index's Okapi formula, over the live rows:
        a pruned row neither scores nor counts), as one array over the segments in order."""
        terms = query_terms(self.pipeline, query)
        text = [np.zeros(len(seg), np.float64) for seg in self.segs]
        for w in terms:
            found = []
            for j, seg in enumerate(self.segs):
                rows, tf = seg.postings(w)
                if rows is not None and self.alive[j] is not None:
                    keep = self.alive[j][rows]
                    rows, tf = rows[keep], tf[keep]
                found.append((rows, tf))
            df = sum(len(r) for r, _ in found if r is not None)
            if not df:
                continue
            idf = np.log(1.0 + self.live / df)
            for j, (rows, tf) in enumerate(found):
                if rows is None or not len(rows):
                    continue
                seg = self.segs[j]
                norm = accel.K1 * ((1 - accel.B) + accel.B * seg.doclen[rows] / self.avgdl)
                text[j] += np.bincount(rows, weights=tf * (accel.K1 + 1) / (tf + norm) * idf,
                                       minlength=len(seg))
        return np.concatenate(text) if text else np.zeros(0)

    def scores(self, query, qvec=None):
        """``(keys, hybrid scores, allowed, times)`` over every row (text alone without
        ``qvec``)."""
        ok = np.concatenate([np.ones(len(s), bool) if a is None else a
                             for s, a in zip(self.segs, self.alive)]) if self.segs else \
            np.zeros(0, bool)
        score = TEXT * _z(self.bm25(query), ok)
        if qvec is not None and self.segs:
            vec = np.concatenate([seg.cosines(qvec) for seg in self.segs])
            score = score + VECTOR * _z(vec.astype(np.float64), ok)
        times = np.concatenate([s.times for s in self.segs]) if self.segs else np.zeros(0)
        return _Keys(self.segs), score, ok, times


def _half(vectors):
    """Vectors as a float16 torch tensor: a cosine needs 3 digits, and a 100k x 384 product
    takes 4.3 ms in float16 against 16.6 ms in float32 on this box's CPU (memory-bound)."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(torch.float16)


class _Keys:
    """Row -> ledger key over the segments, without copying their key arrays per query."""

    def __init__(self, segs):
        self.segs = segs
        self.offsets = np.cumsum([0] + [len(s) for s in segs])

    def __getitem__(self, row):
        j = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return self.segs[j].keys[row - self.offsets[j]]


def _z(x, ok):
    vals = x[ok]
    if not len(vals):
        return x
    best = vals if len(vals) <= TOP else np.partition(vals, len(vals) - TOP)[-TOP:]
    sd = float(best.std())
    return (x - float(best.mean())) / (sd if sd > 1e-9 else 1.0)


def top(keys, score, ok, k):
    """The ``k`` best allowed keys, best first, with their scores."""
    s = np.where(ok, score, -np.inf)
    n = min(k, int(ok.sum()))
    if n <= 0:
        return []
    idx = np.argpartition(-s, n - 1)[:n]
    idx = idx[np.argsort(-s[idx], kind="stable")]
    return [(str(keys[i]), float(s[i])) for i in idx]


# -- held in this process ---------------------------------------------------------------------
class _Held:
    def __init__(self, created):
        self.created = created
        self.segments = {}          # persisted segment id -> _Seg
        self.rows = {}              # pending key -> recall._Row
        self.view = None
        self.state = None           # (version, pending keys) the view stands for
        self.lock = threading.Lock()


def view(img, root, mind):
    """The ``View`` of ``mind``'s exchanges as ``root`` sees them (None: none yet)."""
    idx = index_of(root, mind)
    if idx is None:
        return None
    ck = _key(img, f"recall:{mind}")       # as mounted corpora are keyed, per image
    with _lock:
        held = _cache.get(ck)
        if held is None or held.created != idx.created:
            held = _cache[ck] = _Held(idx.created)
    with held.lock:               # two threads of one process build it once
        return _build(held, idx, root, mind)


def _build(held, idx, root, mind):
    pending = tuple(idx.pending)
    if held.view is not None and held.state == (idx.version, pending):
        return held.view
    segs, alive = [], []
    dead = np.fromiter(idx.dead, dtype=np.int64) if len(idx.dead) else None
    for s in idx.segments:
        seg = held.segments.get(s["id"]) or _Seg(s["id"], accel.read(s["blob"], idx))
        alive.append(~np.isin(seg.docids, dead) if dead is not None else None)
        segs.append(seg)
    held.segments = {s.id: s for s in segs}
    ledger = root[mind].ledger
    dim = idx.dim or _first_dim(ledger, pending)
    rows, keys = [], []
    for key in pending:
        row = held.rows.get(key)
        if row is None:
            ex = ledger.get(key)
            if ex is None:
                continue
            row = held.rows[key] = _row(idx.pipeline, ex, dim)
        rows.append(row)
        keys.append(key)
    for key in set(held.rows) - set(pending):
        del held.rows[key]
    if rows:
        segs.append(_Seg(-1, _arrays(keys, rows, -np.arange(1, len(rows) + 1), mind, dim)))
        alive.append(None)
    if not segs:
        return None
    held.view = View(segs, alive, idx.pipeline, dim, idx.model)
    held.state = (idx.version, pending)
    return held.view


# -- finding ----------------------------------------------------------------------------------
@dataclass
class Recalled:
    key: str
    exchange: object         # live in the caller's connection
    score: float
    dated: bool = False      # on a day the request names


def find(img, root, mind, query, *, k=30, now=None, exclude=(), embedder=None) -> list:
    """``mind``'s past exchanges for ``query``, best first: first those of the days the query
    names (dates.named_days), then the rest by hybrid score; ``exclude``: keys to leave out.
    ``embedder``: the one that made the ledger's vectors (default: the bundled MiniLM); one
    of another dimension ranks by text alone."""
    import logging
    import time

    from .dates import day_range, named_days
    from .embed import get_embedder
    data = view(img, root, mind)
    if data is None or not len(data):
        return []
    embedder = embedder or get_embedder()
    qvec = np.asarray(embedder.encode([query])[0], dtype=np.float32)
    if qvec.shape[0] != data.dim:
        logging.getLogger(__name__).warning(
            "recall for %s: the embedder gives %d dimensions, the ledger holds %d; ranking "
            "by text alone", mind, qvec.shape[0], data.dim)
        qvec = None
    exclude, seen, out = set(exclude), set(), []
    ledger = root[mind].ledger
    keys, score, allowed, times = data.scores(query, qvec)

    def take(ok, dated):
        for key, s in top(keys, score, ok, k + len(exclude)):
            if key in seen or key in exclude:
                continue
            ex = ledger.get(key)
            if ex is not None:
                seen.add(key)
                out.append(Recalled(key, ex, s, dated))
    for day in named_days(query, time.time() if now is None else now)[:3]:
        since, until = day_range(day)
        take(allowed & (times >= since) & (times < until), True)
    take(allowed, False)
    return out[:max(k, sum(r.dated for r in out))]
