"""Past conversations into a mind's ledger: the cold start for a mind's first nights.

Two JSONL formats, one conversation per line:

* OpenAI ``{"messages": [{"role": "user"|"assistant"|"system", "content": ...}, ...]}``
* ShareGPT ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}``

Each user turn followed by an assistant turn is one exchange. A rating
("good"/"bad") may sit on the line (every exchange of it) or on an assistant
turn (that exchange). The whole file is read and checked first: one bad line
and nothing is imported, with every bad line named. Embedding runs outside
any transaction; exchanges are recorded in batches of short transactions.
"""
import json
import time
from pathlib import Path

from image.errors import ImageError
from image.keys import new_key
from memory.ledger import RATINGS, Exchange

BATCH = 500
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
          "bot": "assistant", "model": "assistant", "system": "system", "developer": "system"}


class TranscriptError(ImageError):
    """A transcript file that cannot be read as conversations."""


def read_transcripts(path) -> list:
    """``[(prompt, answer, signals)]`` from a JSONL file; raises naming every bad line."""
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
        turns = [(_ROLES.get(t["role"]), t["content"], t.get("rating")) for t in data["messages"]]
    elif "conversations" in data:
        turns = [(_ROLES.get(t["from"]), t["value"], t.get("rating"))
                 for t in data["conversations"]]
    else:
        raise ValueError('no "messages" or "conversations" list')
    line_rating = _rating(data.get("rating"))
    out, prompt = [], None
    for role, content, rating in turns:
        if role is None:
            raise ValueError("a turn has an unknown role")
        if isinstance(content, list):          # OpenAI content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise TypeError(f"a {role} turn has no text")
        if role == "user":
            prompt = content
        elif role == "assistant" and prompt is not None:
            signals = {"source": "import", "file": where}
            r = _rating(rating) or line_rating
            if r:
                signals["rating"] = r
            out.append((prompt, content, signals))
            prompt = None
    return out


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
    pairs = read_transcripts(path)
    vectors = embedder.encode([f"{p}\n{a}" for p, a, _ in pairs])
    start = time.time()
    exchanges = [Exchange(mind, p, a, v.astype("<f4").tobytes(), start + i * 1e-6, signals=s)
                 for i, ((p, a, s), v) in enumerate(zip(pairs, vectors))]
    for i in range(0, len(exchanges), BATCH):
        batch = exchanges[i:i + BATCH]

        def write(root, batch=batch, first=i):
            ledger = root[mind].ledger
            for j, ex in enumerate(batch):       # keys in file order, to the microsecond
                ledger[new_key(start, tick=first + j)] = ex
        img.run(write, note=f"{mind}: {len(batch)} exchanges imported from {Path(path).name}")
        if progress is not None:
            progress(len(batch))
    return len(exchanges)
