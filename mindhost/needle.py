"""Long real text, and needles hidden in it: the inputs of ``batos report context``.

The default text is Python's own Language Reference as CPython ships it
(``pydoc_data.topics``: about 465,000 characters, written by the Python
documentation team), so every machine has the same long, real document
offline. A needle is a sentence made per run from a seed (a name and a
five-digit code), so no model can have memorised it.
"""
import random
from dataclasses import dataclass
from pathlib import Path

from image.errors import ImageError

NAMES = ("Alice", "Marek", "Priya", "Tomas", "Yuki", "Omar", "Lena", "Kofi", "Ines", "Ravi",
         "Sanna", "Diego", "Mei", "Arjun", "Nadia", "Felix")


class TextError(ImageError):
    """The long text cannot be read, or is too short for the lengths asked for."""


def python_reference() -> tuple[str, str]:
    """Python's Language Reference topics, in a fixed order, and where they come from."""
    import pydoc_data.topics as topics
    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    return text, "Python Language Reference (pydoc_data.topics, shipped with CPython)"


def file_text(path) -> tuple[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise TextError(f"cannot read the text {path}: {e}") from e
    if not text.strip():
        raise TextError(f"{path} is empty; give a long document with --text")
    return text, str(path)


def corpus_text(root, name) -> tuple[str, str]:
    """The longest document of a memory corpus, its chunks joined in order."""
    from memory.corpus import get_corpus
    corpus = get_corpus(root, name)
    if not len(corpus.sources):
        raise TextError(f"the corpus {name!r} holds no documents")
    path, record = max(corpus.sources.items(), key=lambda kv: len(kv[1]["docids"]))
    chunks = sorted((corpus.chunks[d] for d in record["docids"]), key=lambda c: c.start)
    return "\n".join(c.text for c in chunks), f"corpus {name}: {path}"


@dataclass(frozen=True)
class Needle:
    name: str
    code: str
    depth: float

    @property
    def sentence(self):
        return f"The secret code for {self.name} is {self.code}."

    @property
    def question(self):
        return f"What is the secret code for {self.name}?"

    @property
    def answer_prefix(self):
        return f"The secret code for {self.name} is"


def make_needle(seed, length, depth) -> Needle:
    rng = random.Random(f"{seed}:{length}:{depth}")
    return Needle(rng.choice(NAMES), str(rng.randrange(10000, 100000)), depth)


def needle_prompt(model, doc_ids, length, needle: Needle, start=0) -> list:
    """Token ids of a chat prompt of about ``length`` tokens: the haystack (real text from
    ``doc_ids``) with the needle on its own line at ``depth``, the question, and the start
    of the answer, so the next tokens are the code or a miss."""
    overhead = len(model.prompt_ids(_message(model, "", needle))) + 8
    hay = model.decode(doc_ids[start:start + max(length - overhead, 16)])
    cut = hay.find("\n", int(needle.depth * len(hay)))
    cut = len(hay) if cut < 0 else cut + 1
    return model.prompt_ids(_message(model, hay[:cut] + needle.sentence + "\n" + hay[cut:],
                                     needle))


def _message(model, body, needle):
    msg = (f"A secret code is hidden in the text below.\n\n<text>\n{body}\n</text>\n\n"
           f"{needle.question}")
    return model.chat_template([{"role": "user", "content": msg}]) + needle.answer_prefix
