"""Contracts of the inference engines (one per library: torch, mlx)."""
from zope.interface import Attribute, Interface


class IEngine(Interface):
    """A library that runs models: loads them and makes 8-bit runtimes of them.

    Rules:
    - ``available()`` never imports more than it must and never raises; an
      engine whose library is missing says why in ``why_unavailable()``.
    - ``load`` takes a model folder already checked against its manifest; it
      reads nothing else and downloads nothing.
    - ``quantize`` writes a complete model folder (config.json, weights,
      tokenizer) that ``load`` of the same engine runs; it never touches the
      source folder, and the folder records ``quantization`` in config.json.
    """

    name = Attribute("registry name: 'torch', 'mlx', ...")

    def available():
        """True when this host can run the engine."""

    def why_unavailable():
        """A sentence saying what is missing, or None."""

    def load(folder, device=None, dtype=None, kv="fp16"):
        """An ILoadedModel for the folder (device and dtype: the engine's defaults for this
        host; ``kv``: the KV cache precision its generations use unless told otherwise)."""

    def quantize(src, dest, bits=8, progress=None):
        """Write an 8-bit runtime of the FP16/FP32 folder ``src`` into ``dest``."""


class ILoadedModel(Interface):
    """One model in memory, ready to run.

    Prompts are either text (already chat-templated) or a list of messages
    (``{"role", "content"}`` dicts), which are chat-templated first. Greedy
    decoding when temperature is 0 (the default), so results repeat.
    """

    engine = Attribute("the IEngine that loaded it")
    folder = Attribute("the model folder")
    load_seconds = Attribute("wall time of load()")
    compute_dtype = Attribute("what the weights compute in here, in words ('float32', ...)")
    eos = Attribute("the set of token ids that end a turn")
    kv = Attribute("the default KV cache precision of its generations: fp16, q8 or q4 (kv.py)")
    last_stats = Attribute("dict of the last generation: prompt_tokens, tokens, seconds, tokens_per_s")

    def chat_template(messages, add_generation_prompt=True):
        """The prompt text for a conversation, by the model's own chat template."""

    def count_tokens(text):
        """Tokens in ``text`` (no special tokens added)."""

    def decode(ids):
        """The text of token ids (special tokens left out)."""

    def stream(prompt, max_tokens=256, temperature=0.0, top_p=1.0, seed=None, ignore_eos=False,
               kv=None):
        """Yield text pieces as tokens are generated; stops at end of turn unless ``ignore_eos``.
        ``kv`` overrides the model's KV cache precision for this generation."""

    def generate(prompt, max_tokens=256, **kw):
        """The whole answer as one string (``stream`` joined)."""

    def logprobs(prompt, continuation, full=False):
        """Per-token log-probabilities of ``continuation`` after ``prompt``.

        Returns ``(token_ids, logprobs)`` as numpy arrays; with ``full`` also
        the log-softmax over the vocabulary at each position (``[n, vocab]``),
        which is what KL divergence between two runtimes needs.
        """

    def prefill(ids, kvs=("fp16",)):
        """Yield ``(kv, IContextRun)``: the token ids prefilled into a KV cache of each
        precision, the next built only when asked for, so a caller that closes each run
        before taking the next holds one cache at a time.

        The runs are independent (feeding one never changes another). An engine may
        share one forward pass between them where that gives the same caches it would
        build one at a time (torch: its quantized cache quantizes what the prefill
        computed and attends unquantized while prefilling; its fp16 cache then stays
        beside each quantized one and is yielded last)."""

    def memory_bytes():
        """Bytes the weights take in memory."""

    def unload():
        """Free the weights; the object is unusable afterwards."""


class IContextRun(Interface):
    """A context held in a KV cache of one precision, scored and extended one step at a time.

    Every logits row is float32 over the vocabulary and predicts the token after the
    position it belongs to; what is fed joins the cache, exactly as generation would."""

    kv = Attribute("its KV cache precision: fp16, q8 or q4")
    tokens = Attribute("tokens in the cache")
    next_logits = Attribute("logits predicting the token after the last one cached")
    fp_bits = Attribute("bits of the dtype the model computes in (what an fp16 cache holds)")
    decode_seconds = Attribute("wall time of the last ``greedy``")

    def feed(ids):
        """Append ``ids`` (teacher forcing); ``[len(ids), vocab]`` logits, one row per id."""

    def greedy(max_tokens, stop=()):
        """Generate greedily up to ``max_tokens`` ids, stopping before any id in ``stop``."""

    def kv_bytes():
        """Bytes the cache holds now (codes, scales, biases and any unquantized tail)."""

    def close():
        """Free the cache."""
