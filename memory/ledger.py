"""Each mind's exchange ledger: every exchange as a bifocal packet.

A packet keeps the prose (request and answer) with its embedding, the mind
that answered, the time, the mission it belonged to and the signals the
night's curation scores (the owner's rating, a correction, ...). Each mind
has its own ledger (``root[mind].ledger``, an OOBTree keyed by time), so each
curates only its own record. Embedding happens before the transaction;
recording is one insert, and keys from different writers never collide.
"""
import time

from persistent import Persistent
from persistent.mapping import PersistentMapping

from image.keys import new_key

RATINGS = ("good", "bad")


class Exchange(Persistent):
    """One request and answer, with its vector and where it came from."""

    def __init__(self, mind, prompt, answer, vector: bytes, when, *, mission=None,
                 model=None, signals=None):
        self.mind = mind
        self.prompt = prompt
        self.answer = answer
        self.vector = vector
        self.time = when
        self.mission = mission
        self.model = model
        self.signals = PersistentMapping(signals or {})

    def text(self):
        """The prose half of the packet, as embedded."""
        return f"{self.prompt}\n{self.answer}"

    def __repr__(self):
        return f"<Exchange {self.mind} {self.prompt[:30]!r} -> {self.answer[:30]!r}>"


def packet(embedder, mind, prompt, answer, **kw) -> Exchange:
    """Embed outside any transaction; the packet is then recorded in a short one."""
    vec = embedder.encode([f"{prompt}\n{answer}"])[0]
    return Exchange(mind, prompt, answer, vec.astype("<f4").tobytes(),
                    kw.pop("when", None) or time.time(), **kw)


def record(root, exchange, tick=0, at=None) -> str:
    """Insert ``exchange`` under a key of when it is recorded (``at``, default its time), so
    curation's cursor sees imported past exchanges; recallable from this commit on."""
    from . import recall
    key = new_key(at or exchange.time, tick)
    root[exchange.mind].ledger[key] = exchange
    recall.note(root, exchange.mind, key)
    return key


def prune(root, mind, *, before=None, rating=None, keep_rated=True) -> list:
    """Remove exchanges from ``mind``'s ledger and recall: those older than ``before`` (epoch
    seconds), or rated ``rating``. With ``keep_rated`` an exchange rated good survives age.
    Returns the keys removed (in the caller's transaction)."""
    from . import recall
    if before is None and rating is None:
        raise ValueError("say what to prune: an age (before) or a rating")
    if rating is not None and rating not in RATINGS:
        raise ValueError(f"a rating is one of {', '.join(RATINGS)}, not {rating!r}")
    ledger = root[mind].ledger
    gone = []
    for key, ex in ledger.items():
        old = before is not None and (ex.time or 0) < before
        if old and keep_rated and ex.signals.get("rating") == "good":
            old = False
        if old or (rating is not None and ex.signals.get("rating") == rating):
            gone.append(key)
    for key in gone:
        del ledger[key]
    recall.forget(root, mind, gone)
    return gone


def rate(root, mind, key, rating, note=None):
    """The owner's verdict on an exchange: 'good' or 'bad', with an optional note."""
    if rating not in RATINGS:
        raise ValueError(f"a rating is one of {', '.join(RATINGS)}, not {rating!r}")
    ledger = root[mind].ledger
    if key not in ledger:
        raise KeyError(f"{mind}'s ledger has no exchange {key!r}")
    ledger[key].signals["rating"] = rating
    if note:
        ledger[key].signals["note"] = note


def recent(root, mind, n=10) -> list:
    """The last ``n`` exchanges, oldest first, as ``(key, exchange)``."""
    ledger = root[mind].ledger
    keys = list(ledger.keys()[-n:]) if n else []     # BTree slices: no full scan
    return [(k, ledger[k]) for k in keys]


def as_history(exchanges) -> list:
    """Exchanges as chat turns, for context assembly."""
    turns = []
    for _, ex in exchanges:
        turns += [{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.answer}]
    return turns
