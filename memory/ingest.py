"""Ingesting files into a corpus: idempotent by content hash, batched commits.

Reading, chunking and embedding happen outside any transaction; each batch
of files is then written in one short, retried transaction, and a changed
file's old chunks are replaced in the same transaction as its new ones.
"""
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from . import accel
from .chunking import DEFAULT_BUDGET, chunk_documents
from .corpus import create_corpus, get_corpus
from .embed import DEFAULT_MODEL, get_embedder, model_path
from .errors import DimensionMismatch, UnknownCorpus
from .structure import FORMATS, parse

log = logging.getLogger(__name__)
MAX_BYTES = 5_000_000          # larger files are skipped (say --max-bytes to change)
BATCH_CHARS = 200_000          # text per commit


@dataclass
class Source:
    path: str
    sha256: str
    size: int
    fmt: str
    text: str


def scan(paths, max_bytes=MAX_BYTES):
    """(sources, skipped): readable text files under ``paths``; skipped ones with a reason."""
    sources, skipped, seen = [], [], set()
    for p in paths:
        p = Path(p).expanduser()
        if not p.exists():
            skipped.append({"path": str(p), "reason": "does not exist"})
            continue
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            f = f.resolve()
            if str(f) in seen:
                continue
            seen.add(str(f))
            src, why = _read(f, max_bytes)
            if why:
                skipped.append({"path": str(f), "reason": why})
            else:
                sources.append(src)
    return sources, skipped


def _read(f: Path, max_bytes):
    fmt = FORMATS.get(f.suffix.lower())
    if fmt is None:
        return None, f"unsupported type {f.suffix or '(no suffix)'}"
    try:
        size = f.stat().st_size
        if size > max_bytes:
            return None, f"oversized ({size:,} bytes > {max_bytes:,})"
        data = f.read_bytes()
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"
    if b"\x00" in data[:8192]:
        return None, "binary"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"undecodable (not UTF-8 at byte {e.start})"
    if not text.strip():
        return None, "empty"
    return Source(str(f), hashlib.sha256(data).hexdigest(), len(data), fmt, text), None


def ingest(img, name, paths, *, model=None, mind=None, budget=None, max_bytes=MAX_BYTES,
           progress=None, batch_chars=BATCH_CHARS, prune=False) -> dict:
    """Ingest ``paths`` into corpus ``name`` (created on first use); return a summary.

    ``prune`` also removes the chunks of every file of the corpus that no longer
    exists on disk, in one transaction.
    """
    t0 = time.perf_counter()
    sources, skipped = scan(paths, max_bytes)
    corpus_model, corpus_budget = _ensure_corpus(img, name, model, budget)
    pruned = _prune(img, name) if prune else (0, 0)
    with img.view() as root:
        corpus = get_corpus(root, name)
        known = {s.path: corpus.sources[s.path]["sha256"] for s in sources
                 if s.path in corpus.sources}
    todo = [s for s in sources if known.get(s.path) != s.sha256]
    unchanged = len(sources) - len(todo)
    embedder = get_embedder(corpus_model) if todo else None
    added = replaced = chunks_added = chunks_removed = 0
    total = sum(len(s.text) for s in todo)
    if progress:
        progress(0, total)
    for batch in _batches(todo, batch_chars):
        docs = [parse(s.text, s.fmt) for s in batch]
        drafts = chunk_documents(docs, embedder, budget=corpus_budget)
        removed = _commit(img, name, batch, drafts, mind)
        chunks_removed += removed
        chunks_added += sum(len(d) for d in drafts)
        replaced += sum(1 for s in batch if s.path in known)
        added += sum(1 for s in batch if s.path not in known)
        if progress:
            progress(sum(len(s.text) for s in batch), total)
    if _stale(img, name):
        accel.refresh(img, name)
    accel.compact(img, name)
    summary = {"corpus": name, "model": corpus_model, "files": len(sources), "added": added,
               "replaced": replaced, "unchanged": unchanged, "skipped": skipped,
               "chunks_added": chunks_added, "chunks_removed": chunks_removed,
               "pruned": pruned[0], "chunks_pruned": pruned[1],
               "chars": total, "seconds": round(time.perf_counter() - t0, 3)}
    log.info("ingest %s: %d added, %d replaced, %d unchanged, %d skipped, %d chunks",
             name, added, replaced, unchanged, len(skipped), chunks_added)
    return summary


def _stale(img, name):
    with img.view() as root:
        c = get_corpus(root, name)
        return c.accel_version != c.version


def _ensure_corpus(img, name, model, budget):
    with img.view() as root:
        try:
            c = get_corpus(root, name)
        except UnknownCorpus:
            c = None
        if c is not None:
            if model not in (None, "") and str(_model_id(model)) != str(c.model):
                dim = get_embedder(model).dim
                if dim != c.dim:
                    c.check_dim(dim, f"model {model}")
                raise DimensionMismatch(
                    f"corpus {name!r} was built with {c.model}; ingesting with {model} would mix "
                    "two embedding spaces. Leave out --model, or use a new corpus name")
            return c.model, c.budget
    model_id = _model_id(model)
    dim = get_embedder(model_id).dim
    for attempt in img.attempts():
        with attempt as conn:
            root = conn.root()
            if name not in root["memory"].corpora:
                create_corpus(root, name, model_id, dim, budget or DEFAULT_BUDGET)
                conn.transaction_manager.get().note(f"memory: create corpus {name}")
    return model_id, budget or DEFAULT_BUDGET


def _model_id(model):
    """What a corpus records: the default's name, or a folder's absolute path."""
    if model in (None, "", DEFAULT_MODEL):
        return DEFAULT_MODEL
    return str(model_path(model))


def _batches(sources, limit):
    batch, size = [], 0
    for s in sources:
        if batch and size + len(s.text) > limit:
            yield batch
            batch, size = [], 0
        batch.append(s)
        size += len(s.text)
    if batch:
        yield batch


def _commit(img, name, batch, drafts, mind):
    """The batch's chunks, and a search-array segment for them, in one transaction."""
    removed = []
    for attempt in img.attempts():
        with attempt as conn:
            corpus = get_corpus(conn.root(), name)
            current = accel.is_current(corpus)
            removed, added = [], []
            now = time.time()
            for s, ds in zip(batch, drafts):
                old = corpus.sources.get(s.path)
                removed += list(old["docids"]) if old else []
                added += corpus.replace_source(s.path, {"sha256": s.sha256, "size": s.size,
                                                        "format": s.fmt}, ds, mind=mind, now=now)
            if current:
                accel.append(corpus, added, removed)
            conn.transaction_manager.get().note(
                f"memory: ingest {len(batch)} file(s) into {name}")
    return len(removed)


def _prune(img, name):
    """Drop the chunks of the corpus's files that are gone from disk: (files, chunks)."""
    with img.view() as root:
        gone = [p for p in get_corpus(root, name).sources.keys() if not Path(p).exists()]
    if not gone:
        return 0, 0
    for attempt in img.attempts():
        with attempt as conn:
            corpus = get_corpus(conn.root(), name)
            current = accel.is_current(corpus)
            removed = []
            for path in gone:
                old = corpus.sources.get(path)
                if old is not None:
                    removed += list(old["docids"])
                    corpus.drop_source(path)
            if current:
                accel.append(corpus, [], removed)
            conn.transaction_manager.get().note(
                f"memory: prune {len(gone)} missing file(s) from {name}")
    log.info("pruned %d missing file(s), %d chunks from %s", len(gone), len(removed), name)
    return len(gone), len(removed)


def drop(img, name):
    """Remove a corpus and every mount of it."""
    from .mount import forget
    for attempt in img.attempts():
        with attempt as conn:
            root = conn.root()
            get_corpus(root, name)
            del root["memory"].corpora[name]
            for held in root["memory"].mounts.values():
                if name in held:
                    held.remove(name)
            conn.transaction_manager.get().note(f"memory: drop corpus {name}")
    forget(img, name)


__all__ = ["MAX_BYTES", "drop", "ingest", "scan"]
