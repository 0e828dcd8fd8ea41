"""The torch engine: transformers models on CPU or CUDA, and the batos-int8 runtime.

On a CPU the weights compute in float32 (half-precision matmuls are slow
there); on CUDA in float16. Decoding is a plain loop over the KV cache, so
streaming costs nothing beyond the model's own forward passes. A quantized
KV cache is transformers' ``QuantizedLayer`` with our quantizer (torch_kv.py).
"""
import gc
import json
import time
from pathlib import Path

from . import EngineError, register
from .base import ContextRun, Detokenizer, EngineBase, LoadedBase
from .kv import KV_NBITS, RESIDUAL, check_kv, group_size


@register
class TorchEngine(EngineBase):
    name = "torch"

    def why_unavailable(self):
        import importlib.util
        for mod in ("torch", "transformers", "accelerate", "safetensors"):
            if importlib.util.find_spec(mod) is None:
                return f"the Python package {mod!r} is not installed (pip install {mod})"
        return None

    def device(self):
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"

    def load(self, folder, device=None, dtype=None, kv="fp16"):
        return TorchModel(self, Path(folder), device or self.device(), dtype, kv)

    def quantize(self, src, dest, bits=8, progress=None):
        if bits != 8:
            raise EngineError(f"the torch engine makes 8-bit runtimes only, not {bits}-bit")
        from .int8 import quantize_folder
        return quantize_folder(src, dest, progress)



class TorchModel(LoadedBase):
    def __init__(self, engine, folder, device, dtype=None, kv="fp16"):
        super().__init__(folder, kv)
        import torch
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .int8 import is_int8_folder, load_int8
        self.engine = engine
        self.device = device
        self.dtype = dtype or (torch.float16 if device == "cuda" else torch.float32)
        start = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            if is_int8_folder(folder):
                self.model = load_int8(folder, device, self.dtype)
                self.quantized = True
            else:
                self.model = AutoModelForCausalLM.from_pretrained(
                    folder, dtype=self.dtype, device_map=None).to(device).eval()
                self.quantized = False
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
            raise EngineError(f"the torch engine could not load {folder}: {e}") from e
        self.load_seconds = time.perf_counter() - start
        self.eos = _eos_ids(folder, self.tokenizer)
        self.compute_dtype = ("int8 weights, " if self.quantized else "") + \
            str(self.dtype).removeprefix("torch.")

    def _template(self, messages, add_generation_prompt):
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _encode(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _stream_ids(self, ids, max_tokens, temperature, top_p, seed, ignore_eos, kv):
        import torch
        gen = torch.Generator(device=self.device)
        if seed is not None:
            gen.manual_seed(seed)
        detok = Detokenizer(self._decode)
        with torch.inference_mode():
            inp = torch.tensor([ids], device=self.device)
            out = self.model(input_ids=inp, past_key_values=self.new_cache(kv), use_cache=True,
                             logits_to_keep=1)
            for i in range(max_tokens):
                nxt = _pick(out.logits[0, -1], temperature, top_p, gen)
                if nxt in self.eos and not ignore_eos:
                    break
                yield detok.add(nxt), 1
                if i + 1 == max_tokens:
                    break
                out = self.model(input_ids=torch.tensor([[nxt]], device=self.device),
                                 past_key_values=out.past_key_values, use_cache=True)
        yield detok.flush(), 0

    def _logits(self, ids):
        import torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device))
        return out.logits[0].float().cpu().numpy()

    # -- KV caches ------------------------------------------------------------
    def new_cache(self, kv):
        from transformers.cache_utils import DynamicCache
        config = self.model.config
        if kv == "fp16":
            return DynamicCache(config=config)
        from .torch_kv import AffineQuantizedCache
        text = config.get_text_config(decoder=True)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        group = group_size(head_dim)        # a SettingsError says what to do
        try:
            return AffineQuantizedCache(config, KV_NBITS[kv], group, RESIDUAL["torch"])
        except ValueError as e:
            raise EngineError(f"the torch engine cannot hold a {kv} KV cache for {self.folder}: "
                              f"{e}") from e

    def prefill(self, ids, kvs=("fp16",)):
        """One forward pass for all ``kvs``: a quantized cache's first update quantizes what the
        prefill computed and attends unquantized, so each cache equals a prefill of its own.
        Each quantized one is built when asked for; the fp16 one comes last."""
        import torch
        kvs = [check_kv(kv) for kv in dict.fromkeys(kvs)]
        first = "fp16" if "fp16" in kvs or len(kvs) > 1 else kvs[0]
        cache = self.new_cache(first)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([[int(i) for i in ids]], device=self.device),
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[0, -1].float().cpu().numpy()
        del out
        for kv in kvs:
            if kv != first:
                quantized = self.new_cache(kv)
                with torch.inference_mode():
                    for i, layer in enumerate(cache.layers):
                        quantized.update(layer.keys, layer.values, i)
                yield kv, TorchRun(self, kv, quantized, len(ids), logits.copy())
        if first in kvs:
            yield first, TorchRun(self, first, cache, len(ids), logits)

    def memory_bytes(self):
        if self.quantized:
            from .int8 import int8_nbytes
            return int8_nbytes(self.model)
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def unload(self):
        import torch
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class TorchRun(ContextRun):
    def __init__(self, owner, kv, cache, tokens, next_logits):
        super().__init__(kv, tokens, next_logits, _bits(owner.dtype))
        self.owner, self.cache = owner, cache

    def _forward(self, ids):
        import torch
        with torch.inference_mode():
            out = self.owner.model(input_ids=torch.tensor([ids], device=self.owner.device),
                                   past_key_values=self.cache, use_cache=True)
        return out.logits[0].float().cpu().numpy()

    def kv_bytes(self):
        return cache_bytes(self.cache)

    def close(self):
        self.cache = None


def cache_bytes(cache) -> int:
    """What a transformers cache holds: full-precision tensors, quantized codes, scales, biases."""
    import torch

    def size(x):
        if torch.is_tensor(x):
            return x.numel() * x.element_size()
        if isinstance(x, dict):
            return sum(size(v) for v in x.values())
        if isinstance(x, (tuple, list)):
            return sum(size(v) for v in x)
        return 0
    return sum(size(getattr(layer, name, None)) for layer in cache.layers
               for name in ("keys", "values", "_quantized_keys", "_quantized_values"))


def _bits(dtype) -> int:
    return dtype.itemsize * 8


def _pick(logits, temperature, top_p, gen):
    import torch
    if not temperature:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen))


def _eos_ids(folder, tokenizer) -> set:
    """End-of-turn tokens: the tokenizer's, generation_config.json's, and <|im_end|>-style ones."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    try:
        gc_eos = json.loads((Path(folder) / "generation_config.json").read_text()).get("eos_token_id")
        ids.update(gc_eos if isinstance(gc_eos, list) else [gc_eos] if gc_eos is not None else [])
    except (OSError, ValueError):
        pass
    for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return ids
