"""The mlx engine: mlx-lm, the default on Apple Silicon (Metal); also runs on Linux CPU.

On a CPU without Metal, everything computes in float32 (with float16
activations, mlx-lm's 8-bit kernels ran the bundled model at 0.03 tokens/s;
in float32 at 0.88), and still the torch engine is faster, so it is the
default on such hosts; this one still loads, runs and
quantizes there, which is what lets the tests cover it everywhere.
"""
import contextlib
import gc
import importlib.util
import io
import time
from pathlib import Path

from . import EngineError, has_metal, register
from .base import ContextRun, EngineBase, LoadedBase
from .kv import KV_NBITS, group_size

PREFILL_STEP = 2048     # mlx-lm's prefill_step_size: the prompt goes in chunks this long


@register
class MlxEngine(EngineBase):
    name = "mlx"

    def why_unavailable(self):
        if importlib.util.find_spec("mlx_lm") is None:
            return "the Python package 'mlx-lm' is not installed (pip install mlx-lm)"
        try:
            import mlx.core  # noqa: F401
        except ImportError as e:    # Linux needs the CPU backend: pip install 'mlx[cpu]'
            return f"mlx does not import ({e}); on Linux install it with pip install 'mlx[cpu]'"
        return None

    def load(self, folder, device=None, dtype=None, kv="fp16"):
        return MlxModel(self, Path(folder), dtype, kv)

    def quantize(self, src, dest, bits=8, group_size=64, progress=None):
        from mlx_lm.convert import convert

        from .convert import fix_rope_theta
        dest = Path(dest)
        if dest.exists():
            raise EngineError(f"{dest} already exists; mlx-lm writes into a new folder")
        with contextlib.redirect_stdout(io.StringIO()):     # mlx-lm prints its progress
            convert(str(src), str(dest), quantize=True, q_bits=bits, q_group_size=group_size)
        fix_rope_theta(dest)
        return {"quant_method": "mlx-affine", "bits": bits, "group_size": group_size}



class MlxModel(LoadedBase):
    def __init__(self, engine, folder, dtype=None, kv="fp16"):
        super().__init__(folder, kv)
        import mlx.core as mx
        from mlx_lm import load
        self.engine = engine
        start = time.perf_counter()
        try:
            self.model, self.tokenizer = load(str(folder))
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise EngineError(f"the mlx engine could not load {folder}: {e}") from e
        self.quantized = bool(_config_quant(folder))
        self.eos = set(self.tokenizer.eos_token_ids)
        # half precision is slow on a CPU: 8-bit weights too, whose scales set the dtype the
        # rest computes in (the bundled model's Q8: 0.03 tok/s as stored, 0.88 in float32)
        want = dtype or (None if has_metal() else "float32")
        if want:
            self.model.set_dtype(getattr(mx, want))
        mx.eval(self.model.parameters())
        self.load_seconds = time.perf_counter() - start
        self.compute_dtype = ("8-bit affine weights, " if self.quantized else "") + \
            str(want or "as stored").removeprefix("mlx.core.")

    def _template(self, messages, add_generation_prompt):
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _encode(self, text):
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _kv_args(self, kv):
        """mlx-lm's generation options for a KV precision: quantized from the first token."""
        if kv == "fp16":
            return {}
        return {"kv_bits": KV_NBITS[kv], "kv_group_size": group_size(self._head_dim()),
                "quantized_kv_start": 0}

    def _head_dim(self):
        args = self.model.args
        return getattr(args, "head_dim", None) or args.hidden_size // args.num_attention_heads

    def _prefill(self, ids, kv):
        import mlx.core as mx
        import numpy as np
        from mlx_lm.models.cache import make_prompt_cache
        cache = make_prompt_cache(self.model)
        opts = self._kv_args(kv)
        arr = mx.array(ids)
        # as mlx-lm's generate_step: all but the last token in chunks, the cache quantized
        # after each; then the last token alone, against the quantized cache
        for i in range(0, len(ids) - 1, PREFILL_STEP):
            self.model(arr[None, i:min(i + PREFILL_STEP, len(ids) - 1)], cache=cache)
            self._quantize_cache(cache, opts)
            mx.eval([c.state for c in cache])
        logits = self.model(arr[None, -1:], cache=cache)[0, -1]
        self._quantize_cache(cache, opts)
        mx.eval(logits, [c.state for c in cache])
        return MlxRun(self, kv, cache, len(ids), np.array(logits.astype(mx.float32)))

    def _quantize_cache(self, cache, opts):
        from mlx_lm.generate import maybe_quantize_kv_cache
        if opts:
            try:
                maybe_quantize_kv_cache(cache, 0, opts["kv_group_size"], opts["kv_bits"])
            except NotImplementedError as e:     # sliding-window layers: mlx-lm cannot
                raise EngineError(f"the mlx engine cannot quantize {self.folder}'s KV cache "
                                  f"({e}); use kv fp16 for it") from e

    def _stream_ids(self, ids, max_tokens, temperature, top_p, seed, ignore_eos, kv):
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler
        if seed is not None:
            mx.random.seed(seed)
        sampler = make_sampler(temp=temperature or 0.0, top_p=top_p if top_p < 1.0 else 0.0)
        saved = self.tokenizer.eos_token_ids
        if ignore_eos:
            self.tokenizer.eos_token_ids = set()
        try:
            for r in stream_generate(self.model, self.tokenizer, ids, max_tokens=max_tokens,
                                     sampler=sampler, **self._kv_args(kv)):
                if r.finish_reason == "stop":
                    break
                yield r.text, 1
        except NotImplementedError as e:        # sliding-window layers: mlx-lm cannot
            raise EngineError(f"the mlx engine cannot quantize {self.folder}'s KV cache ({e}); "
                              "use kv fp16 for it") from e
        finally:
            self.tokenizer.eos_token_ids = saved

    def _logits(self, ids):
        import mlx.core as mx
        import numpy as np
        logits = self.model(mx.array([ids]))[0].astype(mx.float32)
        return np.array(logits)

    def memory_bytes(self):
        from mlx.utils import tree_flatten
        return sum(v.nbytes for _, v in tree_flatten(self.model.parameters()))

    def unload(self):
        import mlx.core as mx
        self.model = None
        gc.collect()
        mx.clear_cache()


class MlxRun(ContextRun):
    def __init__(self, owner, kv, cache, tokens, next_logits):
        super().__init__(kv, tokens, next_logits, _fp_bits(cache))
        self.owner, self.cache = owner, cache

    def _forward(self, ids):
        import mlx.core as mx
        import numpy as np
        logits = self.owner.model(mx.array([ids]), cache=self.cache)[0].astype(mx.float32)
        return np.array(logits)

    def kv_bytes(self):
        return sum(c.nbytes for c in self.cache)

    def close(self):
        self.cache = None


def _fp_bits(cache):
    """Bits of the dtype keys are computed in: the arrays of an fp16 cache, the scales of a
    quantized one."""
    keys = cache[0].keys
    arr = keys[1] if isinstance(keys, (tuple, list)) else keys
    return arr.dtype.size * 8


def _config_quant(folder):
    import json
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg.get("quantization") or cfg.get("quantization_config")
