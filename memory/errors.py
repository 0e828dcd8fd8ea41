"""Errors the memory layer raises; each message says what to do next."""
from image.errors import ImageError


class MemoryLayerError(ImageError):
    """Base class of memory errors (not the builtin MemoryError)."""


class UnknownCorpus(MemoryLayerError):
    """No corpus of that name in the image."""


class NotMounted(MemoryLayerError):
    """A search named a corpus the mind has not mounted."""


class DimensionMismatch(MemoryLayerError):
    """Vectors of one dimension met a corpus or index of another."""


class EmbedderError(MemoryLayerError):
    """The embedding model folder is missing or is not a sentence-transformers model."""
