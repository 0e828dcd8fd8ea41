"""KV cache precisions, one format for both engines, and the bytes it holds.

``fp16`` keeps keys and values unquantized, in the dtype the model computes
in (float16 on Metal and CUDA; float32 on a CPU, where the engines compute
in float32). ``q8`` and ``q4`` are affine (min/max) codes of 8 or 4 bits in
groups of ``group_size`` along the head dimension, one scale and one bias
per group in the compute dtype: mlx-lm's ``QuantizedKVCache`` on mlx, and
on torch transformers' ``QuantizedLayer`` with our quantizer in the same
format (torch_kv.py), which keeps up to ``RESIDUAL`` of the newest tokens
unquantized before it folds them in.
"""
from image.errors import SettingsError

KV_CHOICES = ("fp16", "q8", "q4")
KV_NBITS = {"q8": 8, "q4": 4}
GROUP_SIZES = (64, 32)          # what mlx.quantize accepts, largest first (128 would also do)
RESIDUAL = {"torch": 128, "mlx": 0}


def check_kv(kv) -> str:
    if kv not in KV_CHOICES:
        raise SettingsError(f"unknown KV cache precision {kv!r}; use one of {', '.join(KV_CHOICES)}")
    return kv


def group_size(head_dim: int) -> int:
    """The group for a head dimension: 64 where it divides, else 32."""
    for g in GROUP_SIZES:
        if head_dim % g == 0:
            return g
    raise SettingsError(f"a quantized KV cache needs a head dimension divisible by 32; this "
                        f"model's is {head_dim}: use kv fp16 for it")


def bits_per_element(kv: str, compute_bits: float = 16, group: int = 64) -> float:
    """Bits one cached key or value element takes: codes plus its share of scale and bias."""
    check_kv(kv)
    if kv == "fp16":
        return float(compute_bits)
    return KV_NBITS[kv] + 2 * compute_bits / group
