"""Inference engines behind one interface (see ``interfaces.py``).

One registry dict, one way in (``register``), a loud error on duplicates.
Engines import their library lazily, so ``batos --help`` stays fast and an
engine whose library is missing says so when asked for, not at import.
"""
import platform

from image.errors import ImageError

ENGINES = {}


def quiet_offline():
    """Engines never download: weights come from the store. Library progress bars are ours to draw."""
    import os
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")      # read when tqdm is first imported
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class EngineError(ImageError):
    """An engine is unknown, unavailable on this host, or failed on a model."""


def register(cls):
    """Class decorator: add an engine under ``cls.name``."""
    if cls.name in ENGINES:
        raise ValueError(f"engine {cls.name!r} is registered twice "
                         f"({ENGINES[cls.name].__module__} and {cls.__module__})")
    ENGINES[cls.name] = cls
    return cls


def _load_builtin():
    quiet_offline()
    from . import mlx_engine, torch_engine  # noqa: F401  (they register themselves)


def get_engine(name):
    """The engine called ``name``, or 'auto' for this host's default; EngineError if unusable."""
    _load_builtin()
    if name in (None, "", "auto"):
        name = default_engine_name()
    cls = ENGINES.get(name)
    if cls is None:
        raise EngineError(f"no engine {name!r}; known: {', '.join(sorted(ENGINES))}")
    engine = cls()
    if not engine.available():
        raise EngineError(f"the {name} engine cannot run here: {engine.why_unavailable()}")
    return engine


def has_metal() -> bool:
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return False
    try:
        import mlx.core as mx
    except ImportError:
        return False
    return mx.metal.is_available()


def default_engine_name() -> str:
    """mlx where Metal runs it fast (Apple Silicon), torch everywhere else (CPU or CUDA)."""
    return "mlx" if has_metal() else "torch"


def engines_report() -> list:
    """One row per registered engine: name, available, why not, default."""
    _load_builtin()
    default = default_engine_name()
    rows = []
    for name, cls in sorted(ENGINES.items()):
        e = cls()
        rows.append({"name": name, "available": e.available(), "why": e.why_unavailable(),
                     "default": name == default})
    return rows

