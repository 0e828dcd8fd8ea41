"""The bifocal memory: chunks of prose with their vectors, text and vector indexes, mounts.

- ``memory.ingest.ingest`` writes corpora, ``memory.ingest.drop`` removes one;
- ``memory.mount.mount`` / ``unmount`` choose what a mind searches;
- ``memory.search.search`` retrieves (text, vector or hybrid).

Importing this package is cheap; sentence-transformers loads on first embedding.
"""
from .errors import (
    DimensionMismatch,
    EmbedderError,
    MemoryLayerError,
    NotMounted,
    UnknownCorpus,
)

__all__ = ["DimensionMismatch", "EmbedderError", "MemoryLayerError", "NotMounted", "UnknownCorpus"]
