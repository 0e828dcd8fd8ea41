"""Mounted corpora: their search arrays held in this process, by image and corpus.

Mounting is recorded in the image per mind (``root['memory'].mounts``), so it
survives restarts; the arrays are loaded the first time a process searches
(or at ``mount``), and freed at ``unmount``.
"""
import logging
import threading
import time

import numpy as np

from . import accel
from .corpus import get_corpus, mounts
from .errors import NotMounted

log = logging.getLogger(__name__)
_loaded: dict = {}           # (image key, corpus name) -> Loaded
_lock = threading.Lock()


class Segment:
    """One segment's arrays, with its word -> postings position table."""

    def __init__(self, sid, arrays):
        self.id = sid
        self.arrays = arrays
        self.docids = arrays["docids"]
        self.vectors = np.ascontiguousarray(arrays["vectors"])
        self.indptr, self.rows, self.tf = arrays["indptr"], arrays["rows"], arrays["tf"]
        self.word_pos = {str(w): i for i, w in enumerate(arrays["words"])}
        self.nbytes = sum(a.nbytes for a in arrays.values())

    def __len__(self):
        return len(self.docids)


class Loaded:
    """One corpus's arrays in RAM, ready to score queries: its segments seen as one row space."""

    def __init__(self, name, model, dim, version, created, segments, dead, pipeline):
        self.name, self.model, self.dim = name, model, int(dim)
        self.version, self.created = version, created
        self.segments = segments
        self.pipeline = pipeline
        self.offsets = np.cumsum([0] + [len(s) for s in segments])
        cat = (lambda key, dtype: np.concatenate([s.arrays[key] for s in segments]).astype(dtype)
               if segments else np.zeros(0, dtype))
        self.docids = cat("docids", np.int64)
        self.times = cat("times", np.float64)
        self.doclen = cat("doclen", np.float64)
        self.minds, self.mind_of = self._codes(segments, "minds", "mind_of")
        self.sources, self.source_of = self._codes(segments, "sources", "source_of")
        self.sources = np.array(self.sources, dtype=str) if self.sources else np.zeros(0, "<U1")
        self.alive = ~np.isin(self.docids, dead) if len(dead) else None
        live = self.doclen if self.alive is None else self.doclen[self.alive]
        self.live = int(len(live))
        mean = float(live.mean()) if len(live) and live.sum() else 1.0
        self.norm = accel.K1 * ((1 - accel.B) + accel.B * self.doclen / mean)
        self.nbytes = sum(s.nbytes for s in segments)
        self._vectors = None
        self._pages = None         # pages.Pages, built on first search

    @staticmethod
    def _codes(segments, names, codes):
        table, parts = {}, []
        for s in segments:
            remap = np.array([table.setdefault(str(v), len(table)) for v in s.arrays[names]],
                             dtype=np.int32)
            parts.append(remap[s.arrays[codes]] if len(remap) else s.arrays[codes])
        return list(table), (np.concatenate(parts).astype(np.int32) if parts
                             else np.zeros(0, np.int32))

    def postings(self, word):
        """(rows, term frequencies) of ``word`` in the live rows, rows in the whole row space."""
        rows, tfs = [], []
        for s, off in zip(self.segments, self.offsets):
            p = s.word_pos.get(word)
            if p is not None:
                a, b = s.indptr[p], s.indptr[p + 1]
                rows.append(s.rows[a:b].astype(np.int64) + off)
                tfs.append(s.tf[a:b])
        if not rows:
            return None, None
        rows = rows[0] if len(rows) == 1 else np.concatenate(rows)
        tfs = tfs[0] if len(tfs) == 1 else np.concatenate(tfs)
        if self.alive is not None:
            keep = self.alive[rows]
            rows, tfs = rows[keep], tfs[keep]
        return rows, tfs

    def vector_scores(self, qvec):
        parts = [s.vectors @ qvec for s in self.segments]
        if not parts:
            return np.zeros(0, np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def vectors(self):
        """The vector matrix of every row (a copy when there are several segments)."""
        if self._vectors is None:
            self._vectors = (self.segments[0].vectors if len(self.segments) == 1 else
                             np.concatenate([s.vectors for s in self.segments])
                             if self.segments else np.zeros((0, self.dim), np.float32))
        return self._vectors

    def row_of(self, docid):
        """The row of ``docid``, or -1 (docids increase along the rows)."""
        r = int(np.searchsorted(self.docids, docid))
        return r if r < len(self.docids) and self.docids[r] == docid else -1

    def __len__(self):
        return len(self.docids)


def _key(img, name):
    # Scratch (memory:) images all share one location string: tell them apart by database.
    where = str(img.location)
    if getattr(img.location, "kind", None) == "memory":
        where = f"memory:{id(img.db)}"
    return (where, name)


def load(img, name, root=None) -> Loaded:
    """The corpus's arrays in this process, (re)loaded if the image has a newer version.

    ``root`` (the caller's open root) saves opening a connection per query.
    """
    if root is None:
        with img.view() as view:
            return load(img, name, view)
    corpus = get_corpus(root, name)
    version, model, created, dim = corpus.version, corpus.model, corpus.created, corpus.dim
    pipeline = list(corpus.lexicon._pipeline)
    key = _key(img, name)
    with _lock:
        have = _loaded.get(key)
        # created tells a corpus dropped and made again (its version restarts) from the old one
        if have is not None and (have.version, have.created) == (version, created):
            return have
    t0 = time.perf_counter()
    # segments already in memory are kept: an update reads only the new ones
    known = {s.id: s for s in have.segments} if have is not None and have.created == created else {}
    version, created, parts, dead = accel.refresh(img, name, {i: s.arrays for i, s in known.items()})
    segments = [known[i] if i in known and known[i].arrays is a else Segment(i, a)
                for i, a in parts]
    loaded = Loaded(name, model, dim, version, created, segments, dead, pipeline)
    with _lock:
        _loaded[key] = loaded
    log.info("loaded %s: %d chunks, %.1f MB in %.3f s", name, len(loaded),
             loaded.nbytes / 1e6, time.perf_counter() - t0)
    return loaded


def mount(img, name, mind) -> Loaded:
    """Record the mount for ``mind`` and load the arrays now; return them."""
    _check_mind_and_corpus(img, name, mind)
    for attempt in img.attempts():
        with attempt as conn:
            mounts(conn.root(), mind).add(name)
            conn.transaction_manager.get().note(f"memory: {mind} mounts {name}")
    return load(img, name)


def unmount(img, name, mind) -> bool:
    """Forget the mount for ``mind``; free the arrays when no other mind holds them."""
    removed = False
    for attempt in img.attempts():
        with attempt as conn:
            root = conn.root()
            held = mounts(root, mind)
            removed = name in held
            if removed:
                held.remove(name)
                conn.transaction_manager.get().note(f"memory: {mind} unmounts {name}")
            still = any(name in s for s in root["memory"].mounts.values())
    if not still:
        forget(img, name)
    return removed


def forget(img, name):
    with _lock:
        _loaded.pop(_key(img, name), None)


def mounted(img, mind) -> list:
    with img.view() as root:
        return list(mounts_view(root, mind))


def mounts_view(root, mind):
    table = root["memory"].mounts
    return table[mind].keys() if mind in table else ()


def require_mounted(root, names, mind):
    have = set(mounts_view(root, mind))
    for name in names:
        if name not in have:
            get_corpus(root, name)            # unknown beats unmounted
            raise NotMounted(f"corpus {name!r} is not mounted for {mind}; mount it with "
                             f"`batos memory mount {name} --mind {mind}`")


def _check_mind_and_corpus(img, name, mind):
    with img.view() as root:
        get_corpus(root, name)
        check_mind(root, mind)


def check_mind(root, mind):
    obj = root.get(mind) if isinstance(mind, str) else None
    if obj is None or "identity" not in getattr(obj, "slot_names", lambda: ())():
        raise ValueError(f"no mind named {mind!r}; the minds are orai and hermes")
