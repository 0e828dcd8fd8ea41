"""Contracts of the bifocal memory, written once.

A *chunk* is the bifocal packet: the prose of a span of a source file and its
embedding vector, stored together in one persistent record with its metadata.
A *corpus* is one body of knowledge: its chunks by docid, a per-source record
(content hash + docids) that makes ingestion idempotent, a zope.index Okapi
(BM25) text index with its lexicon, and the search arrays (vectors, BM25
postings, filter metadata) in *segments*, one blob each, derived from those
records.

States of a corpus's search arrays, by ``corpus.version``:
- *current*: ``corpus.accel_version == corpus.version``; the segments, less
  the rows whose docids are in ``corpus.dead``, are exactly the live chunks.
  Every ingest commit keeps them current: it writes a segment for the chunks
  it adds and marks the ones it replaces dead, in the same transaction.
- *fragmented*: current, but with many segments or many dead rows; the end of
  an ingest merges them (``accel.compact``), which changes no result.
- *stale*: the records changed without the arrays (other code, or an image
  from before segments); mounting rebuilds them from the records first. The
  records are the truth, the arrays a cache.

Rules:
- Every chunk of a corpus has the corpus's dimension; an embedder of another
  dimension is refused before anything is written.
- A source's chunks change all together in one transaction, or not at all.
- Retrieval only searches corpora the asking mind has mounted; mounts persist
  in the image, the arrays they load live in the process.
"""
from zope.interface import Attribute, Interface


class IChunk(Interface):
    text = Attribute("the prose: exactly source[start:end]")
    vector = Attribute("float32 little-endian bytes of the normalised embedding")
    source = Attribute("absolute path of the file the prose came from")
    start = Attribute("character offset of the span in the decoded source")
    end = Attribute("character offset one past the span")
    title = Attribute("the nearest heading above the span, or ''")
    corpus = Attribute("name of the corpus")
    mind = Attribute("the mind that ingested it, or None for a shared corpus")
    time = Attribute("ingestion time, seconds since the epoch")
    resonance = Attribute("a float score curation may raise or lower (default 0.0)")


class ICorpus(Interface):
    name = Attribute("unique name in root['memory'].corpora")
    model = Attribute("embedding model: 'all-MiniLM-L6-v2' (bundled) or a folder path")
    dim = Attribute("vector dimension, fixed at creation")
    version = Attribute("incremented by every change to the chunks")

    def replace_source(path, record, drafts, mind=None, now=None):
        """Drop the chunks of ``path`` and add ``drafts``; return the new docids."""

    def stats():
        """Plain data: counts, model, dimension, sizes."""


class IEmbedder(Interface):
    dim = Attribute("vector dimension")
    max_tokens = Attribute("the model's maximum sequence length, in tokens")

    def encode(texts):
        """Normalised float32 array, one row per text. Safe to call from several
        threads: calls are serialised inside the embedder."""

    def tokenize(texts, **kw):
        """The model's tokenizer on ``texts`` (serialised like ``encode``)."""
