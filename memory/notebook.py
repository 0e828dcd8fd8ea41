"""Each mind's notebook: a short, capped block of its system prompt that it keeps itself.

Durable facts about the owner and the work ("the owner hates the colour
blue"; "the SQL schema moved to v2"). Every version is kept with who wrote
it (``owner`` or the mind), when, and the exchange that caused it.

Rules:
- The cap is in tokens of the mind's own tokenizer (the caller counts). A
  text over the cap is refused with ``NotebookFull``, never cut: the owner
  is told by how much; a note the mind wanted to add is kept in ``refused``
  for the owner to read (``batos mind notebook MIND``).
- The owner's edit wins: a rewrite by the mind based on an older version
  than the current one is refused, and a note is appended to the current
  text, so an edit made meanwhile is never overwritten.
"""
import re
import time

from BTrees.IOBTree import IOBTree
from persistent import Persistent
from persistent.list import PersistentList

from .errors import MemoryLayerError

WRITERS = ("owner", "mind", "import")


class NotebookFull(MemoryLayerError):
    """A notebook text over the mind's cap."""


class Notebook(Persistent):
    def __init__(self, mind):
        self.mind = mind
        self.text = ""
        self.version = 0
        self.versions = IOBTree()          # n -> plain dict: text, time, by, exchange, why, tokens
        self.refused = PersistentList()    # notes the mind could not add: plain dicts

    def history(self):
        return [dict(v, version=n) for n, v in self.versions.items()]


def get(root, mind, create=False):
    from .schema import per_mind
    return per_mind(root, "notebooks", mind, (lambda: Notebook(mind)) if create else None)


def text_of(root, mind) -> tuple:
    """``(text, version)`` of ``mind``'s notebook; ``("", 0)`` when it has none."""
    nb = get(root, mind)
    return (nb.text, nb.version) if nb is not None else ("", 0)


def write(root, mind, text, *, by, tokens, cap, exchange=None, why="", based_on=None) -> int:
    """Make ``text`` the notebook's new version; return its number.

    ``tokens``: the text's length in the mind's tokens; over ``cap`` raises NotebookFull.
    ``based_on``: the version a rewrite started from; a newer version (an edit made
    meanwhile) refuses the rewrite.
    """
    if by not in WRITERS:
        raise ValueError(f"a notebook is written by one of {', '.join(WRITERS)}, not {by!r}")
    nb = get(root, mind, create=True)
    if based_on is not None and based_on != nb.version:
        raise NotebookFull(f"{mind}'s notebook changed (version {nb.version}) since version "
                           f"{based_on} this rewrite started from; the newer text stands")
    if tokens > cap:
        raise NotebookFull(
            f"{mind}'s notebook would be {tokens} tokens, {tokens - cap} over its cap of {cap}; "
            f"shorten it, or raise the cap (`batos mind set {mind} --notebook-tokens N`)")
    text = text.strip()
    if text == nb.text:
        return nb.version
    nb.version += 1
    nb.text = text
    nb.versions[nb.version] = {"text": text, "time": time.time(), "by": by,
                               "exchange": exchange, "why": why, "tokens": int(tokens)}
    return nb.version


def refuse(root, mind, note, why, exchange=None):
    nb = get(root, mind, create=True)
    nb.refused.append({"note": note, "why": why, "exchange": exchange, "time": time.time()})
    del nb.refused[:-50]                 # the latest fifty are enough to act on


# -- what the owner says to remember --------------------------------------------------------
# An instruction, at the start of a sentence: "Remember that ...", "Please note: ...". A
# question ("Do you remember what I said?") is never one.
CUE = re.compile(
    r"^(?:please\s+)?(?:(?P<keep>remember|note|keep in mind|don'?t forget|do not forget|"
    r"never forget)(?:\s+that)?|(?P<rule>from now on))[,:]?\s+(?P<rest>.{3,300})$", re.I | re.S)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


def cue(request):
    """The fact a request explicitly asks to be remembered ("remember that ...", "from now
    on ..."), as a line; None if it asks for nothing of the kind."""
    for sentence in _SENTENCES.split(request.strip()):
        sentence = sentence.strip()
        m = CUE.match(sentence)
        if m is None or sentence.endswith("?"):
            continue
        fact = m.group("rest").strip().rstrip(" .!")
        if m.group("rule"):
            fact = "From now on, " + fact
        return fact[:1].upper() + fact[1:] if fact else None
    return None


def with_note(text, note) -> str:
    """``text`` with ``note`` added as a line (unchanged if it is already there)."""
    line = f"- {note}"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if line in lines:
        return text
    return "\n".join(lines + [line])
