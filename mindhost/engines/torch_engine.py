"""The torch engine: transformers models on CPU or CUDA, and the batos-int8 runtime.

On a CPU the weights compute in float32 (half-precision matmuls are slow
there); on CUDA in float16. Decoding is a plain loop over the KV cache, so
streaming costs nothing beyond the model's own forward passes.
"""
import gc
import json
import time
from pathlib import Path

from . import EngineError, register
from .base import Detokenizer, EngineBase, LoadedBase


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

    def load(self, folder, device=None, dtype=None):
        return TorchModel(self, Path(folder), device or self.device(), dtype)

    def quantize(self, src, dest, bits=8, progress=None):
        if bits != 8:
            raise EngineError(f"the torch engine makes 8-bit runtimes only, not {bits}-bit")
        from .int8 import quantize_folder
        return quantize_folder(src, dest, progress)



class TorchModel(LoadedBase):
    def __init__(self, engine, folder, device, dtype=None):
        super().__init__(folder)
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

    def _stream_ids(self, ids, max_tokens, temperature, top_p, seed, ignore_eos):
        import torch
        gen = torch.Generator(device=self.device)
        if seed is not None:
            gen.manual_seed(seed)
        detok = Detokenizer(self._decode)
        with torch.inference_mode():
            inp = torch.tensor([ids], device=self.device)
            out = self.model(input_ids=inp, use_cache=True, logits_to_keep=1)
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
