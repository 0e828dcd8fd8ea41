"""Chunks and corpora: the persistent records of the bifocal memory."""
import time

from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree, OOTreeSet
from persistent import Persistent
from zope.index.text.okapiindex import OkapiIndex
from zope.interface import implementer

from .errors import DimensionMismatch, UnknownCorpus
from .interfaces import IChunk, ICorpus
from .lexicon import make_lexicon


@implementer(IChunk)
class Chunk(Persistent):
    """One bifocal packet: prose and its vector, in one record."""

    def __init__(self, text, vector: bytes, source, start, end, title, corpus, mind, when,
                 resonance=0.0):
        self.text = text
        self.vector = vector
        self.source = source
        self.start = start
        self.end = end
        self.title = title
        self.corpus = corpus
        self.mind = mind
        self.time = when
        self.resonance = float(resonance)

    def vector_array(self):
        import numpy as np
        return np.frombuffer(self.vector, dtype="<f4")

    def index_text(self):
        """What the text index sees: the heading above the span, then the span."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    def __repr__(self):
        return (f"<Chunk {self.corpus}:{self.source}[{self.start}:{self.end}] "
                f"{self.text[:40]!r}>")


@implementer(ICorpus)
class Corpus(Persistent):
    # the search arrays (accel.py); class defaults let corpora from older images load
    segments = None        # PersistentList of {"id", "blob", "rows"}
    dead = None            # IITreeSet: docids removed from the records, still rows in a segment
    next_segment = 0

    def __init__(self, name, model, dim, *, budget, created=None):
        self.name = name
        self.model = model
        self.dim = int(dim)
        self.budget = int(budget)          # chunk token budget used at ingestion
        self.created = created or time.time()
        self.version = 0
        self.next_docid = 1
        self.chunks = IOBTree()            # docid -> Chunk
        self.sources = OOBTree()           # path -> {"sha256", "size", "docids", "time"}
        self.lexicon = make_lexicon()
        self.text = OkapiIndex(self.lexicon)
        self.accel = None                  # format 1: one Blob with all the arrays (see accel.py)
        self.accel_version = -1            # the version the segments stand for

    def check_dim(self, dim, what="the embedding model"):
        if int(dim) != self.dim:
            raise DimensionMismatch(
                f"{what} gives {dim}-dimensional vectors but corpus {self.name!r} holds "
                f"{self.dim}-dimensional ones (model {self.model}); use the corpus's model, or "
                f"ingest into a new corpus (`batos memory ingest NEW_NAME ... --model ...`)")

    def replace_source(self, path, record, drafts, mind=None, now=None):
        """Drop the chunks of ``path`` and add ``drafts``, all in the current transaction."""
        self.drop_source(path)
        now = now or time.time()
        docids = []
        for d in drafts:
            vec = d.vector
            self.check_dim(vec.shape[0], "this chunk's vector")
            docid = self.next_docid
            self.next_docid += 1
            chunk = Chunk(d.text, vec.astype("<f4").tobytes(), path, d.start, d.end, d.title,
                          self.name, mind, now)
            self.chunks[docid] = chunk
            self.text.index_doc(docid, chunk.index_text())
            docids.append(docid)
        self.sources[path] = dict(record, docids=tuple(docids), time=now, chunks=len(docids))
        self.version += 1
        return docids

    def drop_source(self, path):
        old = self.sources.get(path)
        if old is None:
            return 0
        for docid in old["docids"]:
            self.text.unindex_doc(docid)
            self.chunks.pop(docid, None)
        del self.sources[path]
        self.version += 1
        return len(old["docids"])

    def stats(self):
        return {"name": self.name, "model": self.model, "dim": self.dim, "budget": self.budget,
                "chunks": len(self.chunks), "sources": len(self.sources),
                "words": self.lexicon.wordCount(), "version": self.version,
                "index_current": self.accel_version == self.version,
                "created": self.created}

    def __repr__(self):
        return f"<Corpus {self.name} {self.model} dim={self.dim}>"


# -- the corpora and mounts under root['memory'] ------------------------------
def _memory(root):
    memory = root.get("memory")
    if memory is None:
        raise UnknownCorpus("this image has no memory object yet; run `batos init` first")
    return memory


def corpora(root) -> OOBTree:
    return _memory(root).corpora


def get_corpus(root, name) -> Corpus:
    corpus = corpora(root).get(name)
    if corpus is None:
        known = ", ".join(corpora(root).keys()) or "none yet"
        raise UnknownCorpus(f"no corpus named {name!r} (corpora: {known}); create one with "
                            f"`batos memory ingest {name} PATH...`")
    return corpus


def create_corpus(root, name, model, dim, budget) -> Corpus:
    if not name or "/" in name or name.strip() != name:
        raise ValueError(f"bad corpus name {name!r}: use letters, digits, '-', '_' or '.'")
    corpus = Corpus(name, model, dim, budget=budget)
    corpora(root)[name] = corpus
    return corpus


def mounts(root, mind) -> OOTreeSet:
    """The persistent set of corpus names ``mind`` has mounted (created on first use)."""
    table = _memory(root).mounts
    if mind not in table:
        table[mind] = OOTreeSet()
    return table[mind]
