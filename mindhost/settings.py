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
    context_tokens: int = st.number(2048, min=16)
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


def engine_of(mind_obj) -> EngineSettings:
    return st.read(mind_obj, "engine", EngineSettings)


def routing_of(mind_obj) -> RoutingSettings:
    return st.read(mind_obj, "routing", RoutingSettings)
