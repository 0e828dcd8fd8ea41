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


class Loaded:
    """One corpus's arrays in RAM, ready to score queries."""

    def __init__(self, name, model, arrays, pipeline, created=None):
        self.name = name
        self.created = created
        self.model = model
        self.version = int(arrays["version"][0])
        self.dim = int(arrays["dim"][0])
        self.docids = arrays["docids"]
        self.vectors = np.ascontiguousarray(arrays["vectors"])
        self.times = arrays["times"]
        self.mind_of = arrays["mind_of"]
        self.minds = [str(m) for m in arrays["minds"]]
        self.source_of = arrays["source_of"]
        self.sources = arrays["sources"]
        self.indptr = arrays["indptr"]
        self.rows = arrays["rows"]
        self.weights = arrays["weights"]
        self.idf = arrays["idf"]
        wid_pos = {int(w): i for i, w in enumerate(arrays["wids"])}
        self.word_pos = {str(w): wid_pos.get(int(wid), -1)
                         for w, wid in zip(arrays["words"], arrays["word_wids"])}
        self.pipeline = pipeline
        self.nbytes = sum(a.nbytes for a in arrays.values() if hasattr(a, "nbytes"))

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
    version, model, created = corpus.version, corpus.model, corpus.created
    pipeline = list(corpus.lexicon._pipeline)
    key = _key(img, name)
    with _lock:
        have = _loaded.get(key)
        # created tells a corpus dropped and made again (its version restarts) from the old one
        if have is not None and (have.version, have.created) == (version, created):
            return have
    t0 = time.perf_counter()
    arrays = accel.refresh(img, name)
    loaded = Loaded(name, model, arrays, pipeline, created)
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
