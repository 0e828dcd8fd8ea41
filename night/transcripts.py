"""Past conversations into a mind's ledger: the cold start for a mind's first nights.

Two JSONL formats, one conversation per line:

* OpenAI ``{"messages": [{"role": "user"|"assistant"|"system", "content": ...}, ...]}``
* ShareGPT ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}``

Each user turn followed by an assistant turn is one exchange. A rating
("good"/"bad") may sit on the line (every exchange of it) or on an assistant
turn (that exchange). So may a ``timestamp`` (ISO 8601, or seconds since the
epoch): an exchange happened at its user turn's timestamp, else its
assistant turn's, else the line's; with none, at the import. Recall shows it
as that exchange's date; its ledger key is still the import's time (file
order), so the night's curation, which reads the ledger after its cursor,
sees imported exchanges. The whole file is read and checked first: one bad line
and nothing is imported, with every bad line named. Embedding runs outside
any transaction; exchanges are recorded in batches of short transactions.
"""
import json
import time
from pathlib import Path

from image.errors import ImageError
from memory.ledger import RATINGS, Exchange

BATCH = 500
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
          "bot": "assistant", "model": "assistant", "system": "system", "developer": "system"}


class TranscriptError(ImageError):
    """A transcript file that cannot be read as conversations."""


def read_transcripts(path) -> list:
    """``[(prompt, answer, signals, when or None)]`` from a JSONL file; raises naming every bad line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TranscriptError(f"cannot read {path}: {e}") from e
    pairs, bad = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pairs += _conversation(json.loads(line), f"{path.name}:{n}")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            bad.append(f"line {n}: {e}")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise TranscriptError(f"{path} has {len(bad)} bad line{'s' * (len(bad) > 1)} "
                              f"({shown}); nothing was imported. Each line must be "
                              '{"messages": [...]} (OpenAI) or {"conversations": [...]} (ShareGPT).')
    if not pairs:
        raise TranscriptError(f"{path} holds no user turn answered by an assistant turn")
    return pairs


def _conversation(data, where):
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    if "messages" in data:
        turns = [(_ROLES.get(t["role"]), t["content"], t.get("rating"), _when(t.get("timestamp")))
                 for t in data["messages"]]
    elif "conversations" in data:
        turns = [(_ROLES.get(t["from"]), t["value"], t.get("rating"), _when(t.get("timestamp")))
                 for t in data["conversations"]]
    else:
        raise ValueError('no "messages" or "conversations" list')
    line_rating = _rating(data.get("rating"))
    line_when = _when(data.get("timestamp"))
    out, prompt, asked = [], None, None
    for role, content, rating, when in turns:
        if role is None:
            raise ValueError("a turn has an unknown role")
        if isinstance(content, list):          # OpenAI content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise TypeError(f"a {role} turn has no text")
        if role == "user":
            prompt, asked = content, when
        elif role == "assistant" and prompt is not None:
            signals = {"source": "import", "file": where}
            r = _rating(rating) or line_rating
            if r:
                signals["rating"] = r
            out.append((prompt, content, signals, asked or when or line_when))
            prompt = None
    return out


def _when(value):
    """Seconds since the epoch from ISO 8601 text or a number; None if absent."""
    import datetime as dt
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is neither ISO 8601 text nor epoch seconds")
    text = str(value).strip()
    try:
        seconds = float(value) if isinstance(value, (int, float)) else float(text)
    except ValueError:
        try:
            stamp = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise ValueError(f"timestamp {value!r} is neither ISO 8601 text "
                             "(2024-05-04T09:30:00Z) nor epoch seconds") from None
        return stamp.timestamp()
    if not -1e10 < seconds < 1e11:
        raise ValueError(f"timestamp {value!r} is out of range for epoch seconds (milliseconds? "
                         "divide by 1000)")
    return seconds


def _rating(value):
    if value is None:
        return None
    value = str(value).lower()
    if value not in RATINGS:
        raise ValueError(f"rating {value!r} is not one of {', '.join(RATINGS)}")
    return value


def import_transcripts(img, mind, path, embedder, progress=None) -> int:
    """Read, embed, then record every exchange in ``mind``'s ledger; return how many."""
    from mindhost.minds import check_mind
    check_mind(mind)
    from memory import recall
    from memory.ledger import record
    pairs = read_transcripts(path)
    vectors = embedder.encode([f"{p}\n{a}" for p, a, _, _ in pairs])
    start = time.time()
    # keys keep file order to the microsecond among exchanges of one time (float times collide)
    exchanges = [(Exchange(mind, p, a, v.astype("<f4").tobytes(), w or start, signals=s), i)
                 for i, ((p, a, s, w), v) in enumerate(zip(pairs, vectors))]
    for i in range(0, len(exchanges), BATCH):
        batch = exchanges[i:i + BATCH]

        def write(root, batch=batch):
            for ex, tick in batch:
                record(root, ex, tick, at=start)
        img.run(write, note=f"{mind}: {len(batch)} exchanges imported from {Path(path).name}")
        if progress is not None:
            progress(len(batch))
    recall.flush(img, mind, at_least=1)
    return len(exchanges)
