"""Context assembly: what a mind sees for one request, within its token budget.

Rules, in the order they claim the budget:
1. the identity text (system message) and the current request (last user
   turn) are always kept; if they alone exceed the budget, ContextOverflow
   says by how much and what to do;
2. retrieved memory, best hit first, goes into the system message under
   "Relevant memory", each entry as ``[source] text``, until it would use
   more than ``memory_share`` of what is left;
3. recent conversation, newest first, in whole user+assistant pairs, until
   the budget is spent; older turns are dropped, and the system message says
   how many ("N earlier turns are not shown").

Tokens are measured with the mind's own chat template and tokenizer (the
``measure`` callable), so the budget holds exactly, not by estimate.
"""
from dataclasses import dataclass, field

from image.errors import ImageError


class ContextOverflow(ImageError):
    """The identity text and the request alone do not fit the mind's token budget."""


@dataclass
class Assembled:
    messages: list
    tokens: int
    memory_used: int = 0
    memory_dropped: int = 0
    turns_used: int = 0
    turns_dropped: int = 0
    sources: list = field(default_factory=list)


def measurer(model):
    """Tokens of a message list under ``model``'s chat template (with the generation prompt)."""
    return lambda messages: model.count_tokens(model.chat_template(messages))


def _system(identity, memory, dropped):
    text = identity
    if memory:
        text += "\n\nRelevant memory:\n" + "\n".join(f"- [{src}] {body}" for src, body in memory)
    if dropped:
        text += f"\n\n({dropped} earlier turn{'s' if dropped != 1 else ''} are not shown.)"
    return {"role": "system", "content": text}


def assemble(identity, request, *, measure, budget, history=(), memories=(),
             memory_share=0.4) -> Assembled:
    """Messages for one request. ``history``: earlier ``{"role", "content"}`` turns, oldest
    first; ``memories``: ``(source, text)`` pairs, best first."""
    user = {"role": "user", "content": request}
    pairs = _pairs(list(history))
    worst = len(pairs)      # the "not shown" note at its longest, so the budget always holds
    base = measure([_system(identity, [], worst), user])
    if base > budget:
        raise ContextOverflow(
            f"the identity text and the request take {base} tokens; the budget is {budget}. "
            "Shorten the request, or raise the mind's context budget (engine.context_tokens).")
    memory, cap = [], base + int((budget - base) * memory_share)
    for src, body in memories:
        trial = memory + [(src, body)]
        if measure([_system(identity, trial, worst), user]) > cap:
            break
        memory = trial
    kept = []
    for pair in reversed(pairs):
        dropped = len(pairs) - len(kept) - 1
        trial = [_system(identity, memory, dropped)] + [m for p in [pair] + kept for m in p] + [user]
        if measure(trial) > budget:
            break
        kept.insert(0, pair)
    dropped = len(pairs) - len(kept)
    messages = [_system(identity, memory, dropped)] + [m for p in kept for m in p] + [user]
    return Assembled(messages, measure(messages), len(memory), len(memories) - len(memory),
                     len(kept), dropped, [src for src, _ in memory])


def _pairs(history):
    """Group turns into user+assistant pairs (a lone turn is a pair of one)."""
    pairs, current = [], []
    for turn in history:
        if turn["role"] == "user" and current:
            pairs.append(current)
            current = []
        current.append(turn)
    if current:
        pairs.append(current)
    return pairs
