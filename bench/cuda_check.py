"""The CUDA checks behind bench/device.sh: a small random Llama served, trained and
requantized by the torch engine on the GPU, each figure printed; the last line says
whether every step passed. Builds its model locally (no downloads)."""
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main():
    import torch
    if not torch.cuda.is_available():
        print(f"no CUDA device visible to torch {torch.__version__} "
              f"(built for CUDA {torch.version.cuda}); nothing checked")
        return 2
    from scale import build

    from mindhost.engines import get_engine
    from mindhost.engines.int8 import quantize_folder
    from night.train import TrainConfig, train_lora
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{torch.cuda.get_device_name(0)}")
    work = Path(tempfile.mkdtemp(prefix="batos-cuda-"))
    anchor, _, _, data = build("0.1B", work)
    eng = get_engine("torch")
    ok = True
    prompt = [{"role": "user", "content": "Name three colours."}]

    def step(name, fn):
        nonlocal ok
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as e:          # report every step, then fail the script
            ok = False
            print(f"{name}: FAILED {type(e).__name__}: {e}")
            return None
        out = {"seconds": round(time.perf_counter() - t, 2),
               "cuda_peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3), **out}
        print(f"{name}: {json.dumps(out)}")
        return out

    def serve(folder):
        def run():
            m = eng.load(folder, device="cuda")
            t = time.perf_counter()
            text = m.generate(prompt, max_tokens=32, ignore_eos=True)
            tps = 32 / (time.perf_counter() - t)
            ids = m.tokenizer(m.chat_template(prompt), add_special_tokens=False)["input_ids"]
            gpu = m._logits(ids)
            m.unload()
            cpu_m = eng.load(folder, device="cpu")
            cpu = cpu_m._logits(ids)
            cpu_m.unload()
            agree = float((gpu.argmax(-1) == cpu.argmax(-1)).mean())
            return {"tokens_per_s": round(tps, 1), "chars": len(text),
                    "top1_agreement_with_cpu": round(agree, 3), "dtype": m.compute_dtype}
        return run

    step("serve fp16", serve(anchor))

    def train():
        rec = train_lora(anchor, data, work / "adapter",
                         TrainConfig(iters=5, batch_size=2, max_seq_len=64))
        assert all(math.isfinite(x) for x in rec["loss"]), rec["loss"]
        return {"loss_first": rec["loss"][0], "loss_last": rec["loss"][-1]}
    step("train lora", train)
    step("requantize", lambda: {"quantization": quantize_folder(anchor, work / "q8")["quant_method"]})
    step("serve int8", serve(work / "q8"))
    print(f"CUDA path: {'all steps passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
