"""Every linear layer shape of a batos-int8 runtime through Int8Linear, 1 to 32 rows.

    python tests/int8_shapes_run.py RUNTIME_FOLDER

Run in a subprocess by tests/test_engines.py: a crash in torch's int8 kernel
kills this process, not the test session. The weights are the runtime's own,
loaded by ``load_int8`` as a user's model is (safetensors hands out tensors
at any alignment). For each shape and row count the inputs come contiguous,
transposed, strided and, in bfloat16, at an odd address; the layer's output
is compared with the float product of its dequantized weight. Prints one JSON
line: the worst relative error, and the shapes and row counts tried.
"""
import json
import sys

import torch


def layouts(rows, k, gen):
    x = torch.randn(rows, k, generator=gen)
    yield "contiguous", x
    yield "transposed", x.t().contiguous().t()
    yield "strided", torch.stack([x, x], dim=-1)[..., 0]
    buf = torch.empty(rows * k + 8, dtype=torch.bfloat16)
    odd = buf[3:3 + rows * k].view(rows, k)         # 6 bytes past an aligned start
    odd.copy_(x)
    yield "bf16-unaligned", odd
    yield "batched", x.reshape(1, rows, k)


def main(folder):
    from mindhost.engines.int8 import Int8Linear, load_int8
    model = load_int8(folder)
    by_shape = {}
    for name, m in model.named_modules():
        if isinstance(m, Int8Linear):
            by_shape.setdefault((m.out_features, m.in_features), (name, m))
    gen = torch.Generator().manual_seed(0)
    worst, tried = 0.0, 0
    for (n, k), (name, layer) in sorted(by_shape.items()):
        w = layer.qweight.float() * layer.scale[:, None]
        for rows in range(1, 33):
            for how, x in layouts(rows, k, gen):
                with torch.inference_mode():
                    y = layer(x)
                ref = x.float().reshape(-1, k) @ w.T
                err = ((y.float().reshape(-1, n) - ref).abs().max() / ref.abs().max()).item()
                if not err < 0.05:      # NaN fails too
                    raise SystemExit(f"{name} {tuple(w.shape)} {rows} rows {how}: relative "
                                     f"error {err:.4f}")
                worst, tried = max(worst, err), tried + 1
    print(json.dumps({"shapes": sorted(map(list, by_shape)), "calls": tried, "worst": worst}))


if __name__ == "__main__":
    main(sys.argv[1])
