"""What a mission sends to a model: gathered from the image, assembled by ``mindhost.context``.

One path for the PSM's generations and ``batos context``, so what the
command shows is what a mission would send:

* ``gather`` reads the image: the mind's recall settings, its notebook, its
  past exchanges for the request (``memory.recall_search.find``), the corpora it
  has mounted, and the summaries of this conversation made before;
* ``build`` measures and assembles with the leased model, summarising turns
  that leave the window (new summaries are returned, to be stored after);
* ``store_summaries`` keeps new summaries with the conversation: keyed by a
  hash chained over its pairs, so any client's history (console, API) finds
  the summary of its own earlier turns, and it grows one fold at a time.
"""
import dataclasses
import hashlib
import json
import logging
import time

from BTrees.OOBTree import OOBTree

from image.errors import ImageError
from memory import notebook, recall_search
from memory.dates import day_label
from memory.schema import per_mind
from memory.snippets import focus
from mindhost.context import Past, assemble, measurer, turn_pairs
from mindhost.settings import recall_of
from prototypes import settings as st

log = logging.getLogger("batos.context")
SUMMARY_PROMPT = (
    "Summarise the conversation below in a few short sentences. Keep every fact, name, "
    "date, number and decision; leave out greetings.\n\n{previous}{turns}")


@dataclasses.dataclass
class Gathered:
    settings: dict
    notebook: str = ""
    notebook_version: int = 0
    recalled: list = dataclasses.field(default_factory=list)
    memories: list = dataclasses.field(default_factory=list)
    summaries: dict = dataclasses.field(default_factory=dict)   # prefix key -> plain dict
    full: bool = True          # False: identity only (plans, routing, synthesis prompts)


def prefix_keys(pairs) -> list:
    """A key per prefix of the conversation (1..n pairs), each hashed over the one before."""
    keys, h = [], hashlib.sha256()
    for pair in pairs:
        h.update(json.dumps([[t["role"], t["content"]] for t in pair]).encode())
        keys.append(h.copy().hexdigest()[:32])
    return keys


def _summaries(root, mind, create=False):
    return per_mind(root, "summaries", mind, OOBTree if create else None)


def gather(img, root, mind, request, *, history=(), memories=True, corpus_k=4,
           now=None, embedder=None) -> Gathered:
    """Everything of the image that a generation for ``request`` may see (plain data)."""
    s = st.plain(recall_of(root[mind]))
    g = Gathered(s, full=bool(memories))
    if not memories:
        return g
    g.notebook, g.notebook_version = notebook.text_of(root, mind)
    if s["recall_tokens"]:
        for r in _recalled(img, root, mind, request, s["candidates"], now, embedder):
            g.recalled.append(Past(r.key, day_label(r.exchange.time),
                                   focus(r.exchange.prompt, request, s["prompt_chars"]),
                                   focus(r.exchange.answer, request, s["answer_chars"]),
                                   r.exchange.prompt))
    g.memories = corpus_memories(img, root, mind, request, corpus_k)
    stored = _summaries(root, mind)
    if stored is not None and history:
        for key in prefix_keys(turn_pairs(list(history))):
            if key in stored:
                g.summaries[key] = dict(stored[key])
    return g


def _recalled(img, root, mind, request, k, now, embedder):
    """Recall's hits; a damaged index (a lost segment blob) costs the recall, not the answer."""
    try:
        return recall_search.find(img, root, mind, request, k=k, now=now, embedder=embedder)
    except (ImageError, OSError, ValueError) as e:
        log.error("recall for %s is unavailable: %s; make its index again with `batos ledger "
                  "reindex %s` (the ledger itself is intact)", mind, e, mind,
                  extra={"event": "recall_unavailable", "mind": mind})
        return []


def corpus_memories(img, root, mind, request, k=4) -> list:
    """Hits from the corpora mounted for ``mind``, best first (none mounted: none)."""
    from memory.mount import mounts_view
    if not list(mounts_view(root, mind)):
        return []
    from memory.search import search
    hits = search(img, root, request, mind=mind, k=k)
    return [(f"{h.corpus}:{h.chunk.source}", h.chunk.text) for h in hits]


def build(model, identity, request, g, *, budget, history=(), made=None):
    """The assembled context (``mindhost.context.Assembled``) for ``request``; summaries it
    had to make are added to ``made`` (prefix key -> plain dict) for the caller to store."""
    s = g.settings
    made = {} if made is None else made
    base = model.count_tokens(model.chat_template([{"role": "system", "content": identity},
                                                   {"role": "user", "content": request}]))
    recall_tokens = min(s["recall_tokens"], int(max(budget - base, 0) * s["recall_share"]))
    summarize = (_summarizer(model, g.summaries, made, s["summary_tokens"], s["fold"])
                 if g.full else None)
    return assemble(identity, request, measure=measurer(model), budget=budget, history=history,
                    memories=g.memories, memory_share=s["corpus_share"], notebook=g.notebook,
                    recalled=g.recalled if recall_tokens else (), recall_tokens=recall_tokens,
                    summarize=summarize, summary_tokens=s["summary_tokens"], fold=s["fold"])


def _summarizer(model, known, made, tokens, fold):
    """``summarize(pairs)``: the stored summary of exactly those pairs, or a new one made
    from the longest stored shorter one, ``fold`` pairs per generation."""
    def summarize(pairs):
        keys = prefix_keys(pairs)
        done = max((i + 1 for i, k in enumerate(keys) if k in known), default=0)
        text = known[keys[done - 1]]["text"] if done else ""
        while done < len(pairs):
            step = pairs[done:done + fold]
            turns = "\n".join(f"{t['role']}: {t['content']}" for p in step for t in p)
            previous = f"Summary so far: {text}\n\nNew turns:\n" if text else "Turns:\n"
            prompt = [{"role": "user", "content": SUMMARY_PROMPT.format(previous=previous,
                                                                        turns=turns)}]
            made_text = model.generate(prompt, max_tokens=tokens, temperature=0.0).strip()
            text = made_text or _extract(model, text, step, tokens)
            done += len(step)
            known[keys[done - 1]] = made[keys[done - 1]] = {
                "text": text, "pairs": done, "time": time.time()}
        return text
    return summarize


def _extract(model, previous, step, tokens):
    """A summary without the model (it gave none): the owner's requests, newest kept first,
    within ``tokens``."""
    lines = ([previous] if previous else []) + [
        f"The owner said: {t['content'][:160]}" for p in step for t in p if t["role"] == "user"]
    while len(lines) > 1 and model.count_tokens("\n".join(lines)) > tokens:
        lines.pop(0)
    text = "\n".join(lines)
    while text and model.count_tokens(text) > tokens:
        text = text[: int(len(text) * 0.9)]
    return text


def provenance(asm) -> dict:
    """What of the past an answer saw, compactly, for its exchange's signals: the recalled
    exchanges' keys, whether the notebook was in, and how many pairs the summary folded."""
    out = {"recall": [p["key"] for p in asm.parts if p["kind"] == "recall"]}
    if any(p["kind"] == "notebook" for p in asm.parts):
        out["notebook"] = True
    if asm.summarized:
        out["summary"] = asm.summarized
    return out


def store_summaries(root, mind, made):
    if made:
        table = _summaries(root, mind, create=True)
        for key, value in made.items():
            table[key] = dict(value)


def framing(info, options, max_tokens=None):
    """``(identity, max_tokens, temperature, budget)`` of a generation: the mind's settings
    (``pool.describe``) under a mission's options."""
    settings, opts = info["settings"], dict(options or {})
    max_tokens = max_tokens or opts.get("max_tokens") or settings["max_tokens"]
    temperature = opts.get("temperature")
    temperature = settings["temperature"] if temperature is None else temperature
    identity = info["identity"] + (f"\n\n{opts['system']}" if opts.get("system") else "")
    return identity, max_tokens, temperature, settings["context_tokens"] - max_tokens


def show(img, root, mind, request, *, pool, history=(), options=None, now=None,
         embedder=None):
    """What a chat mission for ``request`` would send to ``mind``'s model: the assembled
    context and what was gathered, by the PSM's own path (``batos context``)."""
    info = pool.describe(root, mind)
    identity, _, _, budget = framing(info, options)
    with pool.lease(info) as model:
        return prepare(img, root, mind, request, model=model, identity=identity, budget=budget,
                       history=history, now=now, embedder=embedder)


def prepare(img, root, mind, request, *, model, identity, budget, history=(), memories=True,
            made=None, now=None, embedder=None):
    """``gather`` then ``build``: the one path from a request to the messages sent."""
    g = gather(img, root, mind, request, history=history, memories=memories, now=now,
               embedder=embedder)
    return build(model, identity, request, g, budget=budget, history=history, made=made), g


# -- the notebook, after an exchange ----------------------------------------------------------
def keep_note(root, mind, request, exchange_key, count):
    """What the owner asked ``mind`` to remember, added to its notebook (cues mode).

    ``count(text)``: tokens of ``text`` in the mind's tokenizer. Returns the new version,
    or None; a note over the cap is refused and kept in ``notebook.refused``."""
    s = recall_of(root[mind])
    fact = notebook.cue(request) if s.notebook != "off" else None
    if not fact:
        return None
    text, _ = notebook.text_of(root, mind)
    new = notebook.with_note(text, fact)
    if new == text:
        return None
    try:
        return notebook.write(root, mind, new, by="mind", tokens=count(new),
                              cap=s.notebook_tokens, exchange=exchange_key,
                              why="the owner asked me to remember it")
    except notebook.NotebookFull as e:
        notebook.refuse(root, mind, fact, str(e), exchange_key)
        return None
