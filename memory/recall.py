"""Recall: each mind's own past exchanges, searchable like a corpus.

The ledger is the truth; the recall index is a cache of search arrays over
it, in the segments the corpora use (accel.py), one row per exchange: its
prose (request and answer), the vector recorded with it, its time, and its
ledger key as the row's source.

Recording stays one insert: ``ledger.record`` adds the key to the index's
*pending* set (a BTree set: concurrent writers do not conflict). A search
(recall_search.py) sees the persisted segments plus the pending exchanges,
tokenised in its process and cached by key, so an exchange is recallable
from its commit on.
``flush`` moves pending exchanges into a segment of their own in a short
transaction of its own (the kernel calls it after a mission; imports at
their end); nothing is ever rebuilt from the whole ledger unless asked
(``reindex``). A pruned exchange's row is marked dead, as in a corpus.

States, per mind: every ledger key is in exactly one of pending or a
segment's rows (``docid_of``). An image from before recall has its whole
ledger marked pending by bootstrap's upgrade; the kernel indexes what is
pending when it starts. ``reindex`` makes the index again from the ledger.
"""
import logging
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from BTrees.IIBTree import IITreeSet
from BTrees.OIBTree import OIBTree
from BTrees.OOBTree import OOTreeSet
from persistent import Persistent
from persistent.list import PersistentList

from . import accel
from .embed import DEFAULT_MODEL
from .lexicon import make_lexicon, query_terms

log = logging.getLogger(__name__)
FLUSH = 64                # pending exchanges worth a segment of their own


class RecallIndex(Persistent):
    """One mind's recall arrays: segments over its ledger, and the keys not in one yet."""

    def __init__(self, mind, model=DEFAULT_MODEL, dim=None):
        # the dimension of the ledger's vectors, learnt from the first one indexed
        self.mind, self.model, self.dim = mind, model, dim
        self.created = time.time()
        self.version = 0
        self.segments = PersistentList()      # {"id", "blob", "rows"}
        self.next_segment = 0
        self.dead = IITreeSet()
        self.next_docid = 1
        self.docid_of = OIBTree()              # ledger key -> docid of its row
        self.pending = OOTreeSet()             # ledger keys recorded, in no segment yet
        self.pipeline = list(make_lexicon()._pipeline)

    def __repr__(self):
        return f"<RecallIndex {self.mind} {len(self.docid_of)} indexed, {len(self.pending)} pending>"


def index_of(root, mind, create=False):
    """``root['memory'].recall[mind]`` (None in an image from before recall, unless ``create``)."""
    from .schema import per_mind
    return per_mind(root, "recall", mind, (lambda: RecallIndex(mind)) if create else None)


def note(root, mind, key):
    """Mark a newly recorded exchange for indexing (in the recording transaction)."""
    index_of(root, mind, create=True).pending.add(key)


def forget(root, mind, keys):
    """Take exchanges out of recall (they are being removed from the ledger)."""
    idx = index_of(root, mind)
    if idx is None:
        return
    for key in keys:
        if key in idx.pending:
            idx.pending.remove(key)
        docid = idx.docid_of.get(key)
        if docid is not None:
            idx.dead.add(docid)
            del idx.docid_of[key]
    idx.version += 1


# -- rows ---------------------------------------------------------------------------
def exchange_text(ex) -> str:
    return f"{ex.prompt}\n{ex.answer}"


@dataclass
class _Row:
    vector: np.ndarray
    time: float
    terms: Counter
    length: int


def _first_dim(ledger, keys):
    """The dimension of the first of ``keys``' exchanges that has a vector (384 if none)."""
    for key in keys:
        ex = ledger.get(key)
        if ex is not None and ex.vector:
            return len(ex.vector) // 4
    return 384


def _row(pipeline, ex, dim):
    terms = query_terms(pipeline, exchange_text(ex))
    vec = np.frombuffer(ex.vector, dtype="<f4") if ex.vector else np.zeros(dim, np.float32)
    if vec.shape[0] != dim:
        vec = np.zeros(dim, np.float32)     # an exchange recorded without its vector
    return _Row(vec, float(ex.time or 0.0), Counter(terms), len(terms))


def _arrays(keys, rows, docids, mind, dim):
    postings = {}
    for r, row in enumerate(rows):
        for word, tf in row.terms.items():
            p = postings.setdefault(word, ([], []))
            p[0].append(r)
            p[1].append(tf)
    postings = {w: (np.array(r), np.array(f, dtype=np.float64)) for w, (r, f) in postings.items()}
    vectors = (np.stack([row.vector for row in rows]).astype(np.float32) if rows
               else np.zeros((0, dim), np.float32))
    return accel._pack(docids, vectors, [row.time for row in rows],
                       [row.length for row in rows], [mind], np.zeros(len(rows), np.int32),
                       list(keys), np.arange(len(rows), dtype=np.int32), postings)


# -- moving pending exchanges into segments ---------------------------------------------
def flush(img, mind, *, at_least=FLUSH) -> int:
    """Index ``mind``'s pending exchanges into a new segment if there are ``at_least``;
    return how many. Tokenising runs on a read-only view; the write is one short transaction."""
    with img.view() as root:
        idx = index_of(root, mind)
        if idx is None or len(idx.pending) < max(at_least, 1):
            return 0
        ledger = root[mind].ledger
        keys = [k for k in idx.pending if k in ledger]
        dim = idx.dim or _first_dim(ledger, keys)
        rows = [_row(idx.pipeline, ledger[k], dim) for k in keys]
        gone = [k for k in idx.pending if k not in ledger]
    done, t0 = 0, time.perf_counter()
    for attempt in img.attempts():
        with attempt as conn:
            idx = index_of(conn.root(), mind)
            if idx.dim not in (None, dim):
                return 0                       # learnt meanwhile by another writer: next time
            idx.dim = dim
            keep = [i for i, k in enumerate(keys) if k in idx.pending]
            docids = np.arange(idx.next_docid, idx.next_docid + len(keep), dtype=np.int64)
            arrays = _arrays([keys[i] for i in keep], [rows[i] for i in keep], docids, mind, dim)
            if keep:
                idx.next_docid += len(keep)
                idx.next_segment += 1
                idx.segments.append({"id": idx.next_segment, "blob": accel._blob(arrays),
                                     "rows": len(keep)})
                for i, d in zip(keep, docids):
                    idx.docid_of[keys[i]] = int(d)
                    idx.pending.remove(keys[i])
            for k in gone:
                if k in idx.pending:
                    idx.pending.remove(k)
            idx.version += 1
            done = len(keep)
            conn.transaction_manager.get().note(f"recall: {done} exchanges of {mind} indexed")
    if done:
        log.info("recall: %d exchanges of %s indexed in %.2f s", done, mind,
                 time.perf_counter() - t0)
        compact(img, mind)
    return done


def compact(img, mind) -> bool:
    """Merge a fragmented recall index's small segments (arrays only; no record is read)."""
    with img.view() as root:
        idx = index_of(root, mind)
        segs = list(idx.segments)
        rows = sum(s["rows"] for s in segs)
        dead_share = len(idx.dead) / max(rows, 1)
        if len(segs) <= accel.MAX_SEGMENTS and dead_share <= accel.MAX_DEAD:
            return False
        picks = accel._plan_merge(segs, dead_share)
        ids = [segs[i]["id"] for i in picks]
        dead = np.fromiter(idx.dead, dtype=np.int64)
        parts = [accel.read(segs[i]["blob"], idx) for i in picks]
    merged = accel.merge(parts, dead)
    # the dead rows of the merged segments are gone; rows pruned meanwhile stay dead
    gone = set(dead[np.isin(dead, np.concatenate([p["docids"] for p in parts]))].tolist())
    for attempt in img.attempts():
        with attempt as conn:
            idx = index_of(conn.root(), mind)
            if [s["id"] for s in idx.segments if s["id"] in ids] != ids:
                return False                  # merged by another process meanwhile
            first = next(i for i, s in enumerate(idx.segments) if s["id"] in ids)
            kept = [s for s in idx.segments if s["id"] not in ids]
            idx.next_segment += 1
            kept.insert(first, {"id": idx.next_segment, "blob": accel._blob(merged),
                                "rows": int(len(merged["docids"]))})
            idx.segments[:] = kept
            still = [d for d in idx.dead if d not in gone]
            idx.dead.clear()
            idx.dead.update(still)
            idx.version += 1
            conn.transaction_manager.get().note(f"recall: compact {mind}'s segments")
    return True


def reindex(img, mind) -> int:
    """A new recall index for ``mind`` from its whole ledger (a lost or damaged segment);
    return how many exchanges it holds."""
    def fresh(root):
        from .schema import per_mind
        idx = RecallIndex(mind)
        per_mind(root, "recall", mind, lambda: idx)          # the table, if it is missing
        root["memory"].recall[mind] = idx
        for key in root[mind].ledger.keys():
            idx.pending.add(key)
        return len(idx.pending)
    n = img.run(fresh, note=f"recall: {mind}'s index made again from its ledger")
    flush(img, mind, at_least=1)
    return n
