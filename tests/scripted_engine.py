"""A test double for logic around an engine: answers come from a script.

Not registered: tests (and later the kernel's tests) build one with the
answers they need. It honours the same interface as the real engines
(``verifyObject`` checks it), so code written against it runs on them.
Tokens are words; the vocabulary grows as words are seen; log-probabilities
are uniform over a fixed width (a real vocabulary does not grow between calls).
"""
from mindhost.engines.base import EngineBase, LoadedBase

WIDTH = 4096


class ScriptError(AssertionError):
    """The script has no answer left for a call."""


class ScriptedEngine(EngineBase):
    name = "scripted"

    def __init__(self, answers=()):
        self.answers = answers

    def why_unavailable(self):
        return None

    def load(self, folder="scripted", device=None, dtype=None, kv="fp16"):
        return ScriptedModel(self, self.answers)

    def quantize(self, src, dest, bits=8, progress=None):
        raise NotImplementedError("the scripted engine has no weights to quantize")


class ScriptedModel(LoadedBase):
    """``answers``: a list (one per call, in order) or a callable ``prompt text -> answer``."""

    def __init__(self, engine, answers):
        super().__init__("scripted")
        self.engine = engine
        self.answers = answers if callable(answers) else list(answers)
        self.calls = []              # the prompt text of every generation, for assertions
        self.vocab = {}
        self.quantized = False
        self.compute_dtype = "none"
        self.eos = set()

    def _template(self, messages, add_generation_prompt):
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
        return text + ("<|assistant|>\n" if add_generation_prompt else "")

    def _encode(self, text):
        return [self.vocab.setdefault(w, len(self.vocab) % WIDTH) for w in text.split()]

    def _decode(self, ids):
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words.get(i, "?") for i in ids)

    def _prefill(self, ids, kv):
        raise NotImplementedError("the scripted engine holds no KV cache")

    def _next_answer(self, text):
        if callable(self.answers):
            return self.answers(text)
        if not self.answers:
            raise ScriptError(f"the script has no answer left for call {len(self.calls)}")
        return self.answers.pop(0)

    def _stream_ids(self, ids, max_tokens, temperature, top_p, seed, ignore_eos, kv):
        words = self._next_answer(self._last_text).split(" ")
        for i, word in enumerate(words[:max_tokens]):
            yield (word if i == 0 else " " + word), 1

    def prompt_ids(self, prompt):
        self._last_text = prompt if isinstance(prompt, str) else self.chat_template(prompt)
        self.calls.append(self._last_text)
        return self._encode(self._last_text)

    def _logits(self, ids):
        import numpy as np
        return np.zeros((len(ids), WIDTH), dtype=np.float32)

    def memory_bytes(self):
        return 0

    def unload(self):
        pass
