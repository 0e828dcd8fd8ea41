"""What every loaded model shares: prompt handling, joining a stream, stats."""
import time

import numpy as np
from zope.interface import implementer

from .interfaces import IContextRun, IEngine, ILoadedModel
from .kv import check_kv


@implementer(IEngine)
class EngineBase:
    """What every engine shares: availability is "nothing is missing"."""

    name = None

    def available(self):
        return self.why_unavailable() is None


@implementer(ILoadedModel)
class LoadedBase:
    """Subclasses implement ``_encode``, ``_decode``, ``_template``, ``_stream_ids``,
    ``_logits`` and ``_prefill``, and set ``eos`` (the ids that end a turn).

    ``_stream_ids`` yields ``(text, tokens)`` pairs: the text a step added and
    how many tokens it consumed, so the stats count tokens, not pieces.
    """

    engine = None

    def __init__(self, folder, kv="fp16"):
        self.folder = folder
        self.load_seconds = 0.0
        self.last_stats = {}
        self.kv = check_kv(kv)

    # -- prompts --------------------------------------------------------------
    def chat_template(self, messages, add_generation_prompt=True):
        return self._template(list(messages), add_generation_prompt)

    def prompt_ids(self, prompt):
        """Token ids of a prompt: text is taken as already templated; a list of messages is templated."""
        text = prompt if isinstance(prompt, str) else self.chat_template(prompt)
        return self._encode(text)

    def count_tokens(self, text):
        return len(self._encode(text))

    def decode(self, ids):
        """Text of token ids, special tokens left out."""
        return self._decode([int(i) for i in ids])

    # -- generation -----------------------------------------------------------
    def stream(self, prompt, max_tokens=256, temperature=0.0, top_p=1.0, seed=None,
               ignore_eos=False, kv=None):
        kv = check_kv(kv or self.kv)
        ids = self.prompt_ids(prompt)
        start = time.perf_counter()
        n = 0
        for piece, tokens in self._stream_ids(ids, max_tokens, temperature, top_p, seed,
                                              ignore_eos, kv):
            n += tokens         # 0 for the detokenizer's final flush
            if piece:
                yield piece
        seconds = time.perf_counter() - start
        self.last_stats = {"prompt_tokens": len(ids), "tokens": n, "seconds": seconds,
                           "tokens_per_s": n / seconds if seconds else 0.0, "kv": kv}

    def generate(self, prompt, max_tokens=256, **kw):
        return "".join(self.stream(prompt, max_tokens=max_tokens, **kw))

    # -- scoring --------------------------------------------------------------
    def logprobs(self, prompt, continuation, full=False):
        p = self.prompt_ids(prompt)
        c = self._encode(continuation)
        if not c:
            raise ValueError("the continuation is empty: nothing to score")
        logits = self._logits(p + c)[len(p) - 1: len(p) + len(c) - 1].astype(np.float32)
        logz = _logsumexp(logits)
        dist = logits - logz[:, None]
        tokens = np.asarray(c)
        chosen = dist[np.arange(len(c)), tokens]
        return (tokens, chosen, dist) if full else (tokens, chosen)

    # -- long contexts --------------------------------------------------------
    def prefill(self, ids, kvs=("fp16",)):
        """``(kv, IContextRun)`` pairs: ``ids`` prefilled into a cache of each precision, one
        built only when the one before has been taken (close it first to hold one at a time)."""
        ids = [int(i) for i in ids]
        for kv in dict.fromkeys(kvs):
            yield kv, self._prefill(ids, check_kv(kv))


@implementer(IContextRun)
class ContextRun:
    """Subclasses implement ``_forward(ids) -> float32 [n, vocab]``, ``kv_bytes``, ``close``."""

    def __init__(self, kv, tokens, next_logits, fp_bits):
        self.kv, self.tokens, self.next_logits, self.fp_bits = kv, tokens, next_logits, fp_bits
        self.decode_seconds = 0.0

    def feed(self, ids):
        rows = self._forward([int(i) for i in ids])
        self.tokens += len(ids)
        self.next_logits = rows[-1]
        return rows

    def greedy(self, max_tokens, stop=()):
        out, start = [], time.perf_counter()
        for _ in range(max_tokens):
            tok = int(np.argmax(self.next_logits))
            if tok in stop:
                break
            out.append(tok)
            self.feed([tok])
        self.decode_seconds = time.perf_counter() - start
        return out


def _logsumexp(x):
    m = x.max(axis=1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=1))


class Detokenizer:
    """Turns token ids into text pieces as they come (no half characters, no O(n²) decode)."""

    def __init__(self, decode):
        self.decode = decode
        self.ids = []
        self.prefix = 0
        self.read = 0

    def add(self, token_id) -> str:
        self.ids.append(token_id)
        before = self.decode(self.ids[self.prefix:self.read])
        after = self.decode(self.ids[self.prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        before = self.decode(self.ids[self.prefix:self.read])
        after = self.decode(self.ids[self.prefix:])
        return after[len(before):]
