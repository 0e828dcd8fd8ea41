"""The torch engine's quantized KV cache: transformers' ``QuantizedLayer`` with our quantizer.

transformers' ``QuantizedLayer`` does the bookkeeping (the prompt attends
unquantized and is quantized once; newer tokens wait in an unquantized tail of
up to ``residual_length`` and are folded in when it fills). Its shipped
backends do not serve here: quanto has no 8-bit, and HQQ's 4-bit packing fails
whenever tokens x KV heads is odd (SmolLM2 has 3 KV heads, so every odd-length
prompt; measured, hqq 0.2.8). So the quantizer is ours, in mlx-lm's format:
affine (min/max) codes in groups along the head dimension, per token and
head, with a scale and a bias per group in the compute dtype; 4-bit codes are
packed two to a byte.
"""
import torch
from transformers.cache_utils import Cache, QuantizedLayer, get_layer_types_and_kwargs


class AffineQuantizedLayer(QuantizedLayer):
    def _quantize(self, tensor, axis):
        g, levels = self.q_group_size, 2 ** self.nbits - 1
        shape, dtype = tensor.shape, tensor.dtype
        x = tensor.float().reshape(*shape[:-1], shape[-1] // g, g)
        lo = x.amin(-1, keepdim=True)
        scale = ((x.amax(-1, keepdim=True) - lo) / levels).clamp_min(1e-8)
        q = ((x - lo) / scale).round_().clamp_(0, levels).to(torch.uint8)
        if self.nbits == 4:
            q = q[..., 0::2] | (q[..., 1::2] << 4)
        return q, scale.to(dtype), lo.to(dtype), dtype

    def _dequantize(self, qtensor):
        q, scale, lo, dtype = qtensor
        if self.nbits == 4:
            q = torch.stack((q & 0x0F, q >> 4), dim=-1).flatten(-2)
        x = q.float() * scale.float() + lo.float()
        return x.flatten(-2).to(dtype)


class AffineQuantizedCache(Cache):
    """A cache of ``AffineQuantizedLayer``; refused for models with other than full attention."""

    def __init__(self, config, nbits, q_group_size, residual_length):
        config = config.get_text_config(decoder=True)
        layer_types, _ = get_layer_types_and_kwargs(config)
        other = set(layer_types) - {"full_attention"}
        if other:
            raise ValueError(f"a quantized KV cache needs full attention in every layer; this "
                             f"model also has {', '.join(sorted(other))}")
        super().__init__(layers=[
            AffineQuantizedLayer(nbits=nbits, axis_key=-1, axis_value=-1,
                                 q_group_size=q_group_size, residual_length=residual_length)
            for _ in range(config.num_hidden_layers)])
