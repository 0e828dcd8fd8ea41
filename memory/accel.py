"""The search arrays of a corpus: segments derived from its records, one blob each.

zope.index's Okapi index scores every hit of every query word in Python-level
BTrees (the brief measured 76 ms p95 at 100k chunks, with no top-k pruning).
For queries we keep flat arrays instead: per segment, the chunks' vectors,
doc lengths and filter metadata, and BM25 postings (per word: rows and term
frequencies). BM25 is computed at query time over the live rows with
zope.index's formula (K1, B, IDF = log(1 + N/df)), so a test can check it
against zope.index's own scores.

Segments, as in Lucene: an ingest commit appends one segment holding only the
chunks it added, and records the chunks it removed as *dead* docids, in the
same transaction as the records; so updating a few files of a 100k corpus
costs time in proportion to those files. When segments pile up or dead rows
pass a share, ``compact`` merges them from their arrays (no record is read).
A corpus whose arrays lag its records (``accel_version != version``: chunks
written by other code, or an old single-blob image) is rebuilt from the
records in full.
"""
import logging
import time
from collections import Counter

import numpy as np

from image.blobs import open_blob

log = logging.getLogger(__name__)
K1, B = 1.2, 0.75       # zope.index.text.okapiindex.OkapiIndex.K1 / .B
MAX_SEGMENTS = 8        # more, and compaction merges the small ones
MAX_DEAD = 0.3          # a larger share of dead rows, and compaction merges them all away
FORMAT = 2              # 1: the single blob of before segments


def is_current(corpus) -> bool:
    return corpus.accel_version == corpus.version and getattr(corpus, "segments", None) is not None


def _empty_strs():
    return np.zeros(0, dtype="<U1")


def _strs(values):
    return np.array(values, dtype=str) if len(values) else _empty_strs()


def _pack(docids, vectors, times, doclen, minds, mind_of, sources, source_of, postings):
    """A segment's arrays; ``postings`` is {word: (rows, tfs)}."""
    words = sorted(postings)
    indptr = np.zeros(len(words) + 1, dtype=np.int64)
    if words:
        indptr[1:] = np.cumsum([len(postings[w][0]) for w in words])
    rows = (np.concatenate([postings[w][0] for w in words]).astype(np.int32) if words
            else np.zeros(0, np.int32))
    tf = (np.concatenate([postings[w][1] for w in words]).astype(np.float32) if words
          else np.zeros(0, np.float32))
    return {"docids": np.asarray(docids, dtype=np.int64), "vectors": vectors,
            "times": np.asarray(times, dtype=np.float64), "doclen": np.asarray(doclen, np.float32),
            "minds": _strs(minds), "mind_of": np.asarray(mind_of, np.int32),
            "sources": _strs(sources), "source_of": np.asarray(source_of, np.int32),
            "words": _strs(words), "indptr": indptr, "rows": rows, "tf": tf,
            "format": np.array([FORMAT], dtype=np.int64)}


def _metadata(corpus, docids):
    n = len(docids)
    vectors = np.zeros((n, corpus.dim), dtype=np.float32)
    times = np.zeros(n, dtype=np.float64)
    mind_codes, source_codes = {}, {}
    mind_of = np.zeros(n, dtype=np.int32)
    source_of = np.zeros(n, dtype=np.int32)
    for row, docid in enumerate(docids):
        chunk = corpus.chunks[int(docid)]
        vectors[row] = np.frombuffer(chunk.vector, dtype="<f4")
        times[row] = chunk.time
        mind_of[row] = mind_codes.setdefault(chunk.mind or "", len(mind_codes))
        source_of[row] = source_codes.setdefault(chunk.source, len(source_codes))
    doclen = np.fromiter((corpus.text._docweight.get(int(d), 0) for d in docids),
                         dtype=np.float32, count=n)
    return (vectors, times, doclen, sorted(mind_codes, key=mind_codes.get), mind_of,
            sorted(source_codes, key=source_codes.get), source_of)


def build(corpus) -> dict:
    """One segment with every chunk of ``corpus`` as it is in this connection."""
    t0 = time.perf_counter()
    docids = np.fromiter(corpus.chunks.keys(), dtype=np.int64)
    meta = _metadata(corpus, docids)
    words_of = corpus.lexicon._words          # wid -> word
    postings = {}
    for wid, d2f in corpus.text._wordinfo.items():
        keys = np.fromiter(d2f.keys(), dtype=np.int64)
        if len(keys):
            postings[words_of[wid]] = (np.searchsorted(docids, keys),
                                       np.fromiter(d2f.values(), dtype=np.float64))
    arrays = _pack(docids, *meta, postings)
    log.info("search arrays for %s: %d chunks, %d words in %.2f s", corpus.name, len(docids),
             len(postings), time.perf_counter() - t0)
    return arrays


def build_rows(corpus, docids) -> dict:
    """A segment with only the chunks ``docids`` (new ones, in this transaction)."""
    docids = np.asarray(sorted(docids), dtype=np.int64)
    meta = _metadata(corpus, docids)
    words_of = corpus.lexicon._words
    index = corpus.text
    per_word = {}
    for row, docid in enumerate(docids):
        for wid, f in Counter(index.get_words(int(docid))).items():
            per_word.setdefault(words_of[wid], ([], []))
            per_word[words_of[wid]][0].append(row)
            per_word[words_of[wid]][1].append(f)
    postings = {w: (np.array(r), np.array(f, dtype=np.float64)) for w, (r, f) in per_word.items()}
    return _pack(docids, *meta, postings)


def _blob(arrays):
    from ZODB.blob import Blob
    blob = Blob()
    with blob.open("w") as f:
        np.savez(f, **arrays)
    return blob


def _segment(corpus, arrays):
    corpus.next_segment = getattr(corpus, "next_segment", 0) + 1
    return {"id": corpus.next_segment, "blob": _blob(arrays), "rows": int(len(arrays["docids"]))}


def store(corpus, arrays):
    """Replace every segment by ``arrays`` (a full build; in the caller's transaction)."""
    from BTrees.IIBTree import IITreeSet
    from persistent.list import PersistentList
    corpus.segments = PersistentList([_segment(corpus, arrays)])
    corpus.dead = IITreeSet()
    corpus.accel = None                     # the single blob of format 1, if any
    corpus.accel_version = corpus.version


def append(corpus, added, removed):
    """Record a change of the records in the arrays, in the same transaction.

    Call only if the arrays were current before the change (``is_current``).
    """
    live = set(added)
    gone = [d for d in removed if d not in live]
    if gone:
        corpus.dead.update(gone)
    if added:
        corpus.segments.append(_segment(corpus, build_rows(corpus, added)))
    corpus.accel_version = corpus.version


def read(blob, owner=None) -> dict:
    with open_blob(blob, "r", owner=owner) as f, np.load(f, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def merge(parts, dead) -> dict:
    """One segment from segments' arrays, without the rows whose docid is in ``dead``."""
    minds, sources, vocab, rows_before = {}, {}, {}, 0
    cols = {k: [] for k in ("docids", "vectors", "times", "doclen", "mind_of", "source_of")}
    wcode, wrow, wtf = [], [], []
    for p in parts:
        k = ~np.isin(p["docids"], dead)
        new_row = np.cumsum(k) - 1 + rows_before           # old local row -> merged row
        for c in ("docids", "vectors", "times", "doclen"):
            cols[c].append(p[c][k])
        for c, table, names in (("mind_of", minds, "minds"), ("source_of", sources, "sources")):
            codes = np.array([table.setdefault(str(v), len(table)) for v in p[names]], np.int32)
            cols[c].append(codes[p[c][k]] if len(codes) else p[c][k])
        codes = np.array([vocab.setdefault(str(w), len(vocab)) for w in p["words"]], np.int64)
        alive = k[p["rows"]]
        wcode.append(np.repeat(codes, np.diff(p["indptr"]))[alive])
        wrow.append(new_row[p["rows"]][alive])
        wtf.append(p["tf"][alive])
        rows_before += int(k.sum())
    wcode, wrow, wtf = np.concatenate(wcode), np.concatenate(wrow), np.concatenate(wtf)
    order = np.lexsort((wrow, wcode))
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(wcode, minlength=len(vocab)))
    return {
        "docids": np.concatenate(cols["docids"]), "vectors": np.concatenate(cols["vectors"]),
        "times": np.concatenate(cols["times"]), "doclen": np.concatenate(cols["doclen"]),
        "minds": _strs(list(minds)), "mind_of": np.concatenate(cols["mind_of"]).astype(np.int32),
        "sources": _strs(list(sources)),
        "source_of": np.concatenate(cols["source_of"]).astype(np.int32),
        "words": _strs(list(vocab)), "indptr": indptr,
        "rows": wrow[order].astype(np.int32), "tf": wtf[order].astype(np.float32),
        "format": np.array([FORMAT], dtype=np.int64)}


def fragmented(corpus) -> bool:
    segs = getattr(corpus, "segments", None) or ()
    rows = sum(s["rows"] for s in segs)
    return len(segs) > MAX_SEGMENTS or (rows > 0 and len(corpus.dead) > MAX_DEAD * rows)


def _plan_merge(segs, dead_share):
    """Indexes of the segments to merge: all of them, or the small ones after the largest."""
    if dead_share > MAX_DEAD:
        return list(range(len(segs)))
    big = max(range(len(segs)), key=lambda i: segs[i]["rows"])
    tail = [i for i in range(len(segs)) if i != big]
    if sum(segs[i]["rows"] for i in tail) >= segs[big]["rows"]:
        return list(range(len(segs)))
    return tail


def compact(img, name) -> bool:
    """Merge a fragmented corpus's segments (outside any transaction); True if it did."""
    from .corpus import get_corpus
    with img.view() as root:
        corpus = get_corpus(root, name)
        if not is_current(corpus) or not fragmented(corpus):
            return False
        segs = list(corpus.segments)
        rows = sum(s["rows"] for s in segs)
        picks = _plan_merge(segs, len(corpus.dead) / max(rows, 1))
        version = corpus.version
        dead = np.fromiter(corpus.dead, dtype=np.int64)
        ids = [segs[i]["id"] for i in picks]
        parts = [read(segs[i]["blob"], corpus) for i in picks]
        merged = merge(parts, dead)
        # dead rows of the merged segments are gone now; those of the others stay dead
        dead = dead[~np.isin(dead, np.concatenate([p["docids"] for p in parts]))]
    t0 = time.perf_counter()
    for attempt in img.attempts():
        with attempt as conn:
            corpus = get_corpus(conn.root(), name)
            if corpus.version != version or [s["id"] for s in corpus.segments
                                             if s["id"] in ids] != ids:
                return False                  # changed meanwhile: the next ingest compacts
            first = next(i for i, s in enumerate(corpus.segments) if s["id"] in ids)
            kept = [s for s in corpus.segments if s["id"] not in ids]
            kept.insert(first, _segment(corpus, merged))
            corpus.segments[:] = kept
            corpus.dead.clear()
            corpus.dead.update(dead.tolist())
            conn.transaction_manager.get().note(f"memory: compact search arrays of {name}")
    log.info("compacted %d segments of %s into one (%d rows) in %.2f s", len(ids), name,
             len(merged["docids"]), time.perf_counter() - t0)
    return True


def refresh(img, name, have=None):
    """The corpus's current segments: (version, created, [(id, arrays)], dead docids).

    Stale arrays are rebuilt from the records and stored first. ``have`` maps
    segment ids to arrays already in memory, which are not read again.
    """
    from .corpus import get_corpus
    have = have or {}
    with img.view() as root:
        corpus = get_corpus(root, name)
        if is_current(corpus):
            segs = [(s["id"], have.get(s["id"]) or read(s["blob"], corpus)) for s in corpus.segments]
            return (corpus.version, corpus.created, segs,
                    np.fromiter(corpus.dead, dtype=np.int64))
        arrays = build(corpus)
        version, created = corpus.version, corpus.created
    for attempt in img.attempts():
        with attempt as conn:
            corpus = get_corpus(conn.root(), name)
            if corpus.version != version:        # changed meanwhile: the next load rebuilds
                return version, created, [(0, arrays)], np.zeros(0, np.int64)
            store(corpus, arrays)
            conn.transaction_manager.get().note(f"memory: search arrays for {name}")
            sid = corpus.segments[0]["id"]
    return version, created, [(sid, arrays)], np.zeros(0, np.int64)
