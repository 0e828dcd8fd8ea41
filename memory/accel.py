"""The search arrays of a corpus, built from its records and kept in one blob.

zope.index's Okapi index scores every hit of every query word in Python-level
BTrees (the brief measured 76 ms p95 at 100k chunks, with no top-k pruning).
For queries we keep the same BM25 in flat arrays: per word, the rows that
hold it and their length-normalised term weights, so scoring a query is a
few numpy gathers. The arrays are derived from the Okapi index itself (same
K1, B and IDF), and tests check they rank exactly as zope.index does.

One .npz file (uncompressed, no pickles) holds: row -> docid, the vector
matrix, the postings, and per-row metadata for filters.
"""
import logging
import time

import numpy as np

from image.blobs import open_blob

log = logging.getLogger(__name__)
K1, B = 1.2, 0.75       # zope.index.text.okapiindex.OkapiIndex.K1 / .B


def build(corpus) -> dict:
    """The arrays for ``corpus`` as it is in this connection (reads every chunk once)."""
    t0 = time.perf_counter()
    docids = np.fromiter(corpus.chunks.keys(), dtype=np.int64)
    n = len(docids)
    vectors = np.zeros((n, corpus.dim), dtype=np.float32)
    times = np.zeros(n, dtype=np.float64)
    mind_codes, source_codes = {}, {}
    mind_of = np.zeros(n, dtype=np.int32)
    source_of = np.zeros(n, dtype=np.int32)
    for row, chunk in enumerate(corpus.chunks.values()):
        vectors[row] = np.frombuffer(chunk.vector, dtype="<f4")
        times[row] = chunk.time
        mind_of[row] = mind_codes.setdefault(chunk.mind or "", len(mind_codes))
        source_of[row] = source_codes.setdefault(chunk.source, len(source_codes))
    minds = sorted(mind_codes, key=mind_codes.get)
    sources = sorted(source_codes, key=source_codes.get)

    index = corpus.text
    doclen = np.fromiter((index._docweight.get(int(d), 0) for d in docids), dtype=np.float64, count=n)
    mean = float(doclen.mean()) if n and doclen.sum() else 1.0
    norm = K1 * ((1 - B) + B * doclen / mean)           # per row
    wids, indptr, rows, weights, idf = [], [0], [], [], []
    for wid, d2f in index._wordinfo.items():
        keys = np.fromiter(d2f.keys(), dtype=np.int64)
        freqs = np.fromiter(d2f.values(), dtype=np.float64)
        r = np.searchsorted(docids, keys)
        wids.append(wid)
        rows.append(r.astype(np.int32))
        weights.append((freqs * (K1 + 1) / (freqs + norm[r])).astype(np.float32))
        idf.append(np.log(1.0 + n / len(keys)) if len(keys) else 0.0)
        indptr.append(indptr[-1] + len(keys))
    vocab = corpus.lexicon._wids           # word -> wid
    words = np.array(list(vocab.keys()), dtype=str) if len(vocab) else np.zeros(0, dtype="<U1")
    word_wids = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
    arrays = {
        "docids": docids, "vectors": vectors, "times": times, "mind_of": mind_of,
        "minds": np.array(minds, dtype=str), "source_of": source_of,
        "sources": np.array(sources, dtype=str) if sources else np.zeros(0, dtype="<U1"),
        "wids": np.array(wids, dtype=np.int64), "indptr": np.array(indptr, dtype=np.int64),
        "rows": np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32),
        "weights": np.concatenate(weights) if weights else np.zeros(0, dtype=np.float32),
        "idf": np.array(idf, dtype=np.float32), "words": words, "word_wids": word_wids,
        "version": np.array([corpus.version], dtype=np.int64),
        "dim": np.array([corpus.dim], dtype=np.int64),
    }
    log.info("search arrays for %s: %d chunks, %d words in %.2f s", corpus.name, n,
             len(wids), time.perf_counter() - t0)
    return arrays


def store(corpus, arrays):
    """Write ``arrays`` into the corpus's blob (in the caller's transaction)."""
    from ZODB.blob import Blob
    blob = Blob()
    with blob.open("w") as f:
        np.savez(f, **arrays)
    corpus.accel = blob
    corpus.accel_version = int(arrays["version"][0])


def load(corpus) -> dict:
    """Read the corpus's arrays into memory (the caller checks they are current)."""
    with open_blob(corpus.accel, "r", owner=corpus) as f, \
            np.load(f, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def refresh(img, name):
    """Rebuild and store a corpus's arrays if stale; return them (current)."""
    from .corpus import get_corpus
    with img.view() as root:
        corpus = get_corpus(root, name)
        if corpus.accel is not None and corpus.accel_version == corpus.version:
            return load(corpus)
        arrays = build(corpus)
    version = int(arrays["version"][0])
    for attempt in img.attempts():
        with attempt as conn:
            corpus = get_corpus(conn.root(), name)
            if corpus.version != version:        # changed meanwhile: the next mount rebuilds
                return arrays
            store(corpus, arrays)
            conn.transaction_manager.get().note(f"memory: search arrays for {name}")
    return arrays
