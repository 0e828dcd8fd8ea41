"""Curation: a mind's day of exchanges into a training set, from that mind's perspective.

Each mind keeps its own settings in its ``curation`` slot (weights, threshold,
phrases, replay share). An exchange scores from real signals:

* the owner's rating (``:rate``, or one carried by an imported transcript);
* the next turn of the same conversation (the next exchange within
  ``window_seconds``): approval phrases raise it, correction phrases lower
  it, and a re-query (the owner asks the same thing again: most words
  shared) lowers it;
* a step of a multi-step mission that completed raises it;
* an exchange that put a line in the mind's notebook (the owner asked it to
  remember something) raises it: the night makes that memory instinct too.

Then: noise goes (acknowledgements, answers too short), what scores below the
threshold goes, secrets and personal data are redacted, near-duplicates
(cosine of the packets' vectors) keep the best, every example is anchored
with the mind's identity text, and golden examples of earlier generations
are mixed back in (``replay_share``, default 15%): real transcripts are never
thrown away. Every decision keeps its reasons, for ``batos curate --dry-run``.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from prototypes import settings as st
from prototypes.persist import jsonable

from .redact import redact
from .schema import cursor

WEIGHTS = {"good": 3.0, "bad": -3.0, "approval": 1.0, "correction": -2.0, "requery": -1.0,
           "delegated": 0.5, "noted": 1.0}


@dataclasses.dataclass(frozen=True)
class CurationSettings:
    """A mind's ``curation`` slot: how it scores its own day (weights update the defaults)."""
    weights: dict[str, float] = st.mapping(WEIGHTS)
    threshold: float = 0.5               # keep what scores at least this
    # golden examples of earlier generations mixed into the set
    replay_share: float = st.number(0.15, min=0.0, max=1.0)
    dedup_cosine: float = st.number(0.95, min=0.0, max=1.0)
    # word overlap (Jaccard) of two requests in a row that makes the second a re-query
    requery_overlap: float = st.number(0.8, min=0.0, max=1.0)
    min_answer_words: int = st.number(2, min=0)
    # the next exchange within this many seconds is the same conversation
    window_seconds: float = st.number(900.0, min=0.0)
    valid_share: float = st.number(0.1, min=0.0, max=0.9)
    approval: tuple[str, ...] = st.listing((
        "thanks", "thank you", "great", "perfect", "exactly", "well done", "good answer",
        "that's right", "correct", "nice"))
    correction: tuple[str, ...] = st.listing((
        "no,", "no.", "wrong", "that's not", "that is not", "incorrect", "actually,",
        "not what i asked", "you forgot"))
    acknowledgements: tuple[str, ...] = st.listing((
        "ok", "okay", "k", "thanks", "thank you", "cool", "great", "yes", "no", "fine", "sure",
        "nice"))


DEFAULTS = st.defaults(CurationSettings)
# Each mind scores from its own perspective: Hermes values precision (a
# re-query costs more), Orai the deep work of multi-step missions.
MIND_DEFAULTS = {
    "hermes": {"weights": {"requery": -1.5}},
    "orai": {"weights": {"delegated": 1.0}},
}


def settings_for(mind_obj) -> dict:
    """The mind's curation settings over its defaults (plain data); SettingsError if wrong."""
    own = dict(mind_obj.lookup("curation", None) or {})
    own.pop("since", None)          # the cursor of an image not yet migrated (night/schema.py)
    name = mind_obj.lookup("name", None)
    return st.plain(st.check(CurationSettings, own, where=f"{name}.curation",
                             base=MIND_DEFAULTS.get(name, {})))


@dataclasses.dataclass
class Row:
    key: str
    prompt: str
    answer: str
    score: float = 0.0
    reasons: list = dataclasses.field(default_factory=list)
    decision: str = "kept"           # kept | dropped: why | replay
    vector: np.ndarray = None


@dataclasses.dataclass
class Curated:
    mind: str
    generation: int
    rows: list
    examples: list                   # chat messages lists, train then valid
    n_valid: int
    redactions: dict
    settings: dict
    since: str = None
    until: str = None

    def counts(self):
        out = {}
        for r in self.rows:
            kind = r.decision.split(":")[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def card(self) -> dict:
        scores = [r.score for r in self.rows if r.decision != "replay"]
        hist = np.histogram(scores, bins=[-np.inf, -2, 0, 0.5, 2, np.inf])[0].tolist() \
            if scores else []
        return {"mind": self.mind, "generation": self.generation, "made": time.time(),
                "exchanges_seen": len([r for r in self.rows if r.decision != "replay"]),
                "counts": self.counts(), "examples": len(self.examples), "valid": self.n_valid,
                "dropped_by": _dropped_by(self.rows), "redactions": self.redactions,
                "score_histogram": {"bins": ["<-2", "-2..0", "0..0.5", "0.5..2", ">=2"],
                                    "counts": hist},
                "since": self.since, "until": self.until,
                "filters": ["acknowledgements",
                            f"answers under {self.settings['min_answer_words']} words",
                            f"score under {self.settings['threshold']}",
                            "secrets and personal data redacted",
                            f"near-duplicates (cosine >= {self.settings['dedup_cosine']})"],
                "settings": self.settings}


def _dropped_by(rows):
    out = {}
    for r in rows:
        if r.decision.startswith("dropped"):
            why = r.decision.split(": ", 1)[1]
            out[why] = out.get(why, 0) + 1
    return out


def curate(root, mind, since=None) -> Curated:
    """Score and select ``mind``'s exchanges after ledger key ``since`` (default: its
    last curation); read-only: nothing in the image changes."""
    m = root[mind]
    s = settings_for(m)
    since = since if since is not None else cursor(m)
    ledger = m.ledger
    keys = list(ledger.keys(min=since, excludemin=True) if since else ledger.keys())
    rows = [Row(k, ledger[k].prompt, ledger[k].answer,
                vector=np.frombuffer(ledger[k].vector, dtype="<f4") if ledger[k].vector else None)
            for k in keys]
    exchanges = [ledger[k] for k in keys]
    _score(root, rows, exchanges, s, _noted(root, mind))
    kept = [r for r in rows if r.decision == "kept"]
    _dedup(kept, s["dedup_cosine"])
    kept = [r for r in kept if r.decision == "kept"]
    redactions = {}
    examples = [_anchor(m.identity, r, redactions) for r in kept]
    replay = _replay(ledger, s["replay_share"], len(examples), m.generation + 1, set(keys))
    rows += replay
    examples += [_anchor(m.identity, r, redactions) for r in replay]
    n_valid = _valid_count(len(examples), s["valid_share"])
    return Curated(mind, m.generation + 1, rows, examples, n_valid, redactions, s,
                   since, keys[-1] if keys else since)


def _words(text):
    return text.lower().strip().strip("!.?").strip()


def _noted(root, mind) -> set:
    """Keys of the exchanges that gave the mind's notebook a version it wrote."""
    from memory import notebook
    nb = notebook.get(root, mind)
    return {v["exchange"] for v in nb.versions.values() if v["by"] == "mind"} if nb else set()


def _score(root, rows, exchanges, s, noted=frozenset()):
    w = s["weights"]
    acks = set(s["acknowledgements"])
    for i, (row, ex) in enumerate(zip(rows, exchanges)):
        sig = ex.signals
        rating = sig.get("rating")
        if rating in ("good", "bad"):
            row.score += w[rating]
            row.reasons.append(f"rated {rating}" + (f" ({sig['note']})" if sig.get("note") else ""))
        nxt = exchanges[i + 1] if i + 1 < len(exchanges) else None
        if nxt is not None and nxt.time - ex.time <= s["window_seconds"]:
            follow = nxt.prompt.lower().strip()
            if any(follow.startswith(p) for p in s["approval"]):
                row.score += w["approval"]
                row.reasons.append("approved next turn")
            elif any(follow.startswith(p) or f" {p}" in follow[:40] for p in s["correction"]):
                row.score += w["correction"]
                row.reasons.append("corrected next turn")
            elif (_jaccard(row.prompt, nxt.prompt) >= s["requery_overlap"]
                  and _words(nxt.prompt) not in acks):
                row.score += w["requery"]
                row.reasons.append("asked again next turn")
        mission = root["missions"].get(ex.mission) if ex.mission and "missions" in root else None
        if mission is not None and len(mission.plan) > 1 and mission.state == "COMPLETE":
            row.score += w["delegated"]
            row.reasons.append("step of a completed multi-step mission")
        if row.key in noted:
            row.score += w["noted"]
            row.reasons.append("the owner asked to remember it (notebook)")
        if _words(row.prompt) in acks:
            row.decision = "dropped: acknowledgement"
        elif len(row.answer.split()) < s["min_answer_words"]:
            row.decision = "dropped: answer too short"
        elif row.score < s["threshold"]:
            row.decision = "dropped: score under threshold"


def _jaccard(a, b):
    """Word overlap of two requests: the owner asking the same thing again."""
    wa, wb = set(_words(a).split()), set(_words(b).split())
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def _cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else 0.0


def _dedup(kept, threshold):
    """Near-duplicates keep the best-scored (then the latest)."""
    order = sorted(kept, key=lambda r: (r.score, r.key), reverse=True)
    chosen = []
    for r in order:
        if r.vector is not None and any(c.vector is not None and _cos(r.vector, c.vector) >= threshold
                                         for c in chosen):
            r.decision = "dropped: near-duplicate"
            continue
        chosen.append(r)


def _anchor(identity, row, counts):
    return {"messages": [{"role": "system", "content": identity},
                         {"role": "user", "content": redact(row.prompt, counts)},
                         {"role": "assistant", "content": redact(row.answer, counts)}]}


def _replay(ledger, share, n_new, generation, seen):
    """Golden examples of earlier generations, ``share`` of the final set (stable choice)."""
    if not n_new or share <= 0:
        return []
    golden = [k for k in ledger if k not in seen
              and (ledger[k].signals.get("golden") or 0) and ledger[k].signals["golden"] < generation]
    want = min(len(golden), round(n_new * share / (1 - share)))
    golden.sort(key=lambda k: hashlib.sha256(f"{generation}:{k}".encode()).hexdigest())
    return [Row(k, ledger[k].prompt, ledger[k].answer, decision="replay",
                reasons=[f"golden since generation {ledger[k].signals['golden']}"])
            for k in sorted(golden[:want])]


def _valid_count(n, share):
    """mlx-lm and the trainers want a validation file: hold out a share, at least one."""
    return 0 if n < 2 else max(1, round(n * share))


def write_dataset(cur: Curated, folder) -> Path:
    """train.jsonl, valid.jsonl and the dataset card (card.json, card.md), atomically."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    # a stable split: the held-out examples are every k-th, not the newest
    idx = list(range(len(cur.examples)))
    step = max(1, len(idx) // cur.n_valid) if cur.n_valid else 0
    valid = set(idx[::step][:cur.n_valid]) if step else set()
    for name, pick in (("train.jsonl", lambda i: i not in valid), ("valid.jsonl", valid.__contains__)):
        with open(tmp / name, "w", encoding="utf-8") as f:
            for i, ex in enumerate(cur.examples):
                if pick(i):
                    f.write(json.dumps(ex, ensure_ascii=False) + "\n")
    card = cur.card()
    (tmp / "card.json").write_text(json.dumps(card, indent=1, default=jsonable))
    (tmp / "card.md").write_text(card_markdown(card))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def card_markdown(card) -> str:
    lines = [f"# {card['mind']}: training set for generation {card['generation']}", "",
             f"- exchanges seen: {card['exchanges_seen']}",
             f"- examples: {card['examples']} ({card['valid']} held out for validation)",
             f"- decisions: {', '.join(f'{k} {v}' for k, v in sorted(card['counts'].items()))}",
             f"- dropped by: {', '.join(f'{k} {v}' for k, v in card['dropped_by'].items()) or 'none'}",
             f"- redactions: {', '.join(f'{k} {v}' for k, v in card['redactions'].items()) or 'none'}",
             "- filters: " + "; ".join(card["filters"]),
             "- score histogram: " + ", ".join(
                 f"{b} {c}" for b, c in zip(card["score_histogram"]["bins"],
                                            card["score_histogram"]["counts"])), ""]
    return "\n".join(lines)
