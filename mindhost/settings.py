"""The minds' settings slots: ``engine`` (how a mind generates) and Hermes's ``routing``.

One definition each (``prototypes.settings``); read them with ``engine_of`` /
``routing_of``, never with ``.get(key, default)`` at the point of use.
"""
import dataclasses

from prototypes import settings as st


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """``mind.engine``: which engine and how it generates by default."""
    name: str = "auto"                      # auto: mlx with Metal, else torch
    max_tokens: int = st.number(512, min=1)
    temperature: float = st.number(0.0, min=0.0)
    # SmolLM2 reads 8192; 4096 leaves room for recall (2000) beside the window
    context_tokens: int = st.number(4096, min=16)
    # the KV cache: fp16 unquantized (in the compute dtype), or q8 / q4 (engines/kv.py)
    kv: str = st.choice("fp16", ("fp16", "q8", "q4"))


@dataclasses.dataclass(frozen=True)
class RoutingSettings:
    """``hermes.routing``: when the majordomo hands a request to Orai.

    ``rules`` costs no generation (keywords, length); ``mind`` asks Hermes
    itself with ``prompt`` (it answers ORAI or HERMES); ``off`` never hands over."""
    mode: str = st.choice("rules", ("rules", "mind", "off"))
    to: str = st.choice("orai", ("orai", "hermes"))
    max_words: int = st.number(80, min=1)
    keywords: tuple[str, ...] = st.listing((
        "story", "poem", "essay", "creative", "imagine", "brainstorm", "design", "in depth",
        "philosophy", "novel", "song", "invent"))
    prompt: str = ("Reply with one word. Reply ORAI if this request needs deep or creative "
                   "work, else reply HERMES.\n\nRequest: {request}")


@dataclasses.dataclass(frozen=True)
class RecallSettings:
    """``mind.recall``: what of its past a mind sees beside the request (mindhost/context.py).

    ``recall_tokens`` for past exchanges, at most ``recall_share`` of what the identity,
    notebook and request leave; ``notebook``: whether the mind adds to its notebook what the
    owner asks it to remember (``cues``) or only the owner writes it (``off``); ``fold``: turns leaving the window are summarised this many pairs at a time."""
    recall_tokens: int = st.number(2000, min=0)
    recall_share: float = st.number(0.6, min=0.0, max=1.0)
    candidates: int = st.number(40, min=1)
    # a recalled request or answer longer than this shows its sentences nearest the request
    prompt_chars: int = st.number(1200, min=40)
    answer_chars: int = st.number(1200, min=40)
    corpus_share: float = st.number(0.4, min=0.0, max=1.0)
    notebook: str = st.choice("cues", ("cues", "off"))
    notebook_tokens: int = st.number(256, min=16)
    summary_tokens: int = st.number(160, min=16)
    fold: int = st.number(4, min=1)


def recall_of(mind_obj) -> RecallSettings:
    return st.read(mind_obj, "recall", RecallSettings)


def engine_of(mind_obj) -> EngineSettings:
    return st.read(mind_obj, "engine", EngineSettings)


def routing_of(mind_obj) -> RoutingSettings:
    return st.read(mind_obj, "routing", RoutingSettings)
