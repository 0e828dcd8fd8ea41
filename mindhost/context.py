"""Context assembly: what a mind sees for one request, within its token budget.

Rules, in the order they claim the budget:
1. the identity text, the mind's notebook and the current request (last user
   turn) are always kept; if they alone exceed the budget, ContextOverflow
   says by how much and what to do;
2. recalled past exchanges (``recalled``, best first), each with its date,
   until they would use more than ``recall_tokens``; an exchange whose request
   is a turn kept in the window below is not repeated; they are shown oldest
   first, under "From earlier conversations";
3. retrieved corpus memory, best hit first, under "Relevant memory", until it
   would use more than ``memory_share`` of what is left;
4. recent conversation, newest first, in whole user+assistant pairs, until
   the budget is spent. Turns that do not fit are never dropped in silence:
   with a ``summarize`` callable they are folded into a running summary of
   the conversation (in steps of ``fold`` pairs, so it is regenerated every
   few turns, not every turn), shown under "Earlier in this conversation";
   without one, the system message says how many are not shown.

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
    sources: list = field(default_factory=list)       # corpus sources shown, best first
    parts: list = field(default_factory=list)         # every part: plain dicts with "kind"
    recall_used: int = 0
    summarized: int = 0                               # pairs folded into the summary


@dataclass
class Past:
    """A recalled exchange, as context assembly sees it."""
    key: str
    date: str
    prompt: str              # as shown (perhaps an excerpt)
    answer: str
    asked: str = None        # the whole request, to tell it in the window (default: prompt)

    def __post_init__(self):
        self.asked = self.prompt if self.asked is None else self.asked

    def line(self):
        return f"- [{self.date}] Owner: {self.prompt}\n  You: {self.answer}"


def measurer(model):
    """Tokens of a message list under ``model``'s chat template (with the generation prompt)."""
    return lambda messages: model.count_tokens(model.chat_template(messages))


@dataclass
class _Blocks:
    identity: str
    notebook: str = ""
    summary: str = ""
    recalled: list = field(default_factory=list)
    memory: list = field(default_factory=list)
    dropped: int = 0

    def system(self):
        text = self.identity
        if self.notebook:
            text += "\n\nYour notebook (facts you keep about the owner and the work):\n" \
                    + self.notebook
        if self.recalled:
            text += "\n\nFrom earlier conversations:\n" + "\n".join(p.line() for p in self.recalled)
        if self.memory:
            text += "\n\nRelevant memory:\n" + "\n".join(f"- [{s}] {b}" for s, b in self.memory)
        if self.summary:
            text += "\n\nEarlier in this conversation (summary):\n" + self.summary
        elif self.dropped:
            text += (f"\n\n({self.dropped} earlier turn{'s' if self.dropped != 1 else ''} "
                     "are not shown.)")
        return {"role": "system", "content": text}


def _by_date(recalled):
    return sorted(recalled, key=lambda p: (p.date, p.key))


def assemble(identity, request, *, measure, budget, history=(), memories=(), memory_share=0.4,
             notebook="", recalled=(), recall_tokens=0, summarize=None, summary_tokens=200,
             fold=4) -> Assembled:
    """Messages for one request. ``history``: earlier ``{"role", "content"}`` turns, oldest
    first; ``memories``: ``(source, text)`` pairs, best first; ``recalled``: ``Past``
    exchanges, best first; ``summarize(pairs)`` -> text, for the pairs that leave."""
    user = {"role": "user", "content": request}
    pairs = turn_pairs(list(history))
    b = _Blocks(identity, notebook=notebook, dropped=len(pairs))   # the note at its longest
    base = measure([b.system(), user])
    if base > budget:
        raise ContextOverflow(
            f"the identity text, the notebook and the request take {base} tokens; the budget "
            f"is {budget}. Shorten the request or the notebook, or raise the mind's context "
            "budget (engine.context_tokens).")
    # room the summary may need (with its heading), kept aside from recall and memory
    reserve = summary_tokens + 16 if summarize is not None and pairs else 0
    share = max(min(recall_tokens, budget - base - reserve), 0)
    # the window the request would keep if recall took its whole share: not recalled again
    window = _window(b, pairs, user, measure, budget - share)
    in_window = {p[0]["content"] for p in pairs[len(pairs) - window:] if p[0]["role"] == "user"}
    b.dropped = 0                           # recall's share is measured without the note
    cap = measure([b.system(), user]) + share
    misses = 0
    for past in recalled:
        if past.asked in in_window:
            continue
        trial = b.recalled + [past]
        b.recalled = _by_date(trial)
        if measure([b.system(), user]) > cap:
            b.recalled = _by_date(trial[:-1])     # a shorter one further down may fit,
            misses += 1
            if misses == 4:                        # but rarely after four that did not
                break
    chosen = list(b.recalled)
    used = measure([b.system(), user]) + reserve
    cap = used + int((budget - used) * memory_share) - reserve
    for src, body in memories:
        b.memory.append((src, body))
        if measure([b.system(), user]) > cap:
            b.memory.pop()
            break
    kept = _window(b, pairs, user, measure, budget)
    dropped = len(pairs) - kept
    if dropped and summarize is not None:
        room = budget - reserve
        while True:
            kept = _window(b, pairs, user, measure, room)
            dropped = min(len(pairs), -(-(len(pairs) - kept) // fold) * fold)  # whole folds
            b.summary = summarize(pairs[:dropped])
            b.dropped = dropped
            over = measure([b.system()] + [m for p in pairs[dropped:] for m in p] + [user])
            if over <= budget or dropped == len(pairs):
                break
            room -= over - budget          # the summary ran long: keep fewer turns
    b.dropped = dropped
    kept = len(pairs) - dropped
    b.recalled = [p for p in chosen if p.asked not in
                  {q[0]["content"] for q in pairs[dropped:]}]
    messages = [b.system()] + [m for p in pairs[dropped:] for m in p] + [user]
    parts = ([{"kind": "notebook"}] if notebook else []) + [
        {"kind": "recall", "key": p.key, "date": p.date} for p in b.recalled] + [
        {"kind": "corpus", "source": s} for s, _ in b.memory] + (
        [{"kind": "summary", "pairs": dropped}] if b.summary else [])
    return Assembled(messages, measure(messages), len(b.memory), len(memories) - len(b.memory),
                     kept, dropped, [s for s, _ in b.memory], parts, len(b.recalled),
                     dropped if b.summary else 0)


def _window(b, pairs, user, measure, budget) -> int:
    """How many of the newest pairs fit beside the system message within ``budget``."""
    kept = 0
    for i in range(len(pairs) - 1, -1, -1):
        b.dropped = i
        trial = [b.system()] + [m for p in pairs[i:] for m in p] + [user]
        if measure(trial) > budget:
            break
        kept += 1
    b.dropped = len(pairs) - kept
    return kept


def turn_pairs(history):
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
