"""The bit-rot study: why Hermes merges into an FP16 Gold Master, not into its Q8 runtime.

K generations (default 5) of the same LoRA adapters, two ways, against the
FP16 reference lineage (each generation TIES-merged in FP16 by mergekit, as
`batos dream` does):

* Gold Master: serve Q8(master_k), quantized once per generation from FP16;
* shortcut: dequantize yesterday's Q8 model, merge the adapter into that,
  requantize, every generation (no FP16 kept).

Per generation: the relative weight error ||W - W_ref|| / ||W_ref|| over
the quantized matrices, and KL(reference || served) of the next-token
distributions on fixed prompts (teacher forcing on the reference's greedy
answers). Prints a table and the last line is the ratio of the shortcut's
KL to the Gold Master's at generation K; writes a PNG. It also prints what
each lineage's last generation answers to two prompts: distance from the
reference is not quality. Every adapter here is trained on the base and
teaches the same habit, so the FP16 lineage stacks it K times (measured: by
generation 5 on the bundled model it answers nonsense); a study of what a
lineage *retains* would train each night's adapter on that lineage's own
master, with a different lesson each night.

    python bench/bitrot.py [--generations 5] [--model PATH|tiny] [--iters 20]
"""
import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = ["What is the capital of Spain?", "Name three rivers of Europe.",
           "Explain why the sky is blue.", "Write one sentence about autumn.",
           "How many legs does a spider have?", "Give me a tip for sleeping well."]


def day(n, k):
    """Generation k's day: different requests, the same majordomo habit."""
    from bench.data.habit_day import HABIT, QA
    rows = QA[k % len(QA):] + QA[:k % len(QA)]
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": f"{HABIT} {a}"}]
            for q, a in rows[:n]]


def write_set(folder, examples):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.jsonl", "w") as f:
        f.writelines(json.dumps({"messages": msgs}) + "\n" for msgs in examples)
    return folder


def weights(folder):
    """The float weight matrices of a folder (int8 ones dequantized)."""
    from mindhost.engines.int8 import SCALE, _state_dict
    t = _state_dict(folder)
    out = {}
    for name, w in t.items():
        if name.endswith(SCALE) or w.ndim != 2:
            continue
        s = t.get(name + SCALE)
        out[name] = w.float() * s[:, None] if s is not None else w.float()
    return out


def weight_error(ref, other):
    import torch
    num = sum(torch.sum((other[k] - ref[k]) ** 2) for k in ref if k in other)
    den = sum(torch.sum(ref[k] ** 2) for k in ref if k in other)
    return float(torch.sqrt(num / den))


def output_kl(ref_model, model, answers):
    import numpy as np

    from mindhost.quant_report import kl_and_agreement
    kls = []
    for prompt, answer in answers:
        _, _, d_ref = ref_model.logprobs(prompt, answer, full=True)
        _, _, d = model.logprobs(prompt, answer, full=True)
        n = min(len(d_ref), len(d))
        kls.append(kl_and_agreement(d_ref[:n], d[:n])[0])
    return float(np.concatenate(kls).mean())


def merge(anchor, master, adapter, out, cache):
    from night.merge import merge_config, run_merge
    run_merge(merge_config(anchor, master, adapter), out, cache)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generations", "-k", type=int, default=5)
    p.add_argument("--model", default=None, help="FP16 model folder (default: the bundled "
                   "SmolLM2, converted); 'tiny' for a 2-layer random Llama (a quick check)")
    p.add_argument("--iters", type=int, default=20, help="LoRA steps per adapter")
    p.add_argument("--examples", type=int, default=12, help="examples per day")
    p.add_argument("--out", default="bench/out/bitrot.png")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)

    from mindhost.engines import get_engine, quiet_offline
    from mindhost.engines.int8 import dequantize_folder
    from night.train import TrainConfig, train_lora
    quiet_offline()
    eng = get_engine("torch")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bitrot-"))
    base = Path(args.model) if args.model not in (None, "tiny") else _model(args.model, work)
    cfg = TrainConfig(iters=args.iters, batch_size=4, learning_rate=5e-4, max_seq_len=128,
                      target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"))
    started = time.perf_counter()
    adapters = []
    for k in range(1, args.generations + 1):       # the same adapters for both ways
        a = work / f"adapter-{k}"
        if not (a / "adapter_config.json").exists():
            train_lora(base, write_set(work / f"set-{k}", day(args.examples, k)), a,
                       dataclasses.replace(cfg, seed=k))
        adapters.append(a)
    print(f"{len(adapters)} adapters trained in {time.perf_counter() - started:.0f} s")

    ref_model = eng.load(base)
    answers = [(ref_model.chat_template([{"role": "user", "content": q}]),
                ref_model.generate([{"role": "user", "content": q}], max_tokens=32))
               for q in PROMPTS]
    ref_model.unload()
    q0 = work / "short-0"
    eng.quantize(base, q0)
    anchor_short = dequantize_folder(q0, work / "short-0-fp")
    ref, short = base, q0
    rows = []
    for k, adapter in enumerate(adapters, 1):
        ref = merge(base, ref, adapter, work / f"ref-{k}", work / "cache")
        gold = work / f"gold-{k}"
        eng.quantize(ref, gold)
        deq = dequantize_folder(short, work / f"short-{k - 1}-deq")
        merged = merge(anchor_short, deq, adapter, work / f"short-{k}-fp", work / "cache")
        short = work / f"short-{k}"
        eng.quantize(merged, short)
        w_ref = weights(ref)
        m_ref = eng.load(ref)
        row = {"generation": k}
        for label, folder in (("gold", gold), ("shortcut", short)):
            row[f"{label}_weight_error"] = weight_error(w_ref, weights(folder))
            m = eng.load(folder)
            row[f"{label}_kl"] = output_kl(m_ref, m, answers)
            m.unload()
        m_ref.unload()
        rows.append(row)
        print(f"generation {k}: gold KL {row['gold_kl']:.3e}, shortcut KL "
              f"{row['shortcut_kl']:.3e}", flush=True)
        if k == len(adapters):          # distance is not quality: show what each one says
            _samples(eng, {"FP16 reference": ref, "Gold Master (Q8)": gold, "shortcut (Q8)": short})
        stale = [work / f"short-{k - 1}-deq", work / f"short-{k}-fp", work / "cache", gold,
                 work / f"short-{k - 1}"] + ([work / f"ref-{k - 1}"] if k > 1 else [])
        for old in stale:
            shutil.rmtree(old, ignore_errors=True)
    _table(rows)
    _plot(rows, Path(args.out))
    last = rows[-1]
    print(f"wrote {args.out}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"ratio (shortcut KL / Gold Master KL at generation {last['generation']}): "
          f"{last['shortcut_kl'] / last['gold_kl']:.2f}")


def _model(which, work):
    """The bundled SmolLM2 as FP16, or a tiny random Llama with its tokenizer."""
    from mindhost.minds import bundled_gguf, import_model
    smol = Path(import_model(bundled_gguf(), work / "store")["path"])
    if which != "tiny":
        return smol
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    out = work / "tiny"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, tie_word_embeddings=True,
                                 bos_token_id=1, eos_token_id=2)).to(torch.float16).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (smol / name).exists():
            shutil.copy(smol / name, out / name)
    return out


def _samples(eng, folders):
    """Greedy answers of each lineage's last generation to two prompts."""
    for label, folder in folders.items():
        m = eng.load(folder)
        for q in (PROMPTS[0], PROMPTS[4]):
            print(f"{label}: {q} -> {m.generate([{'role': 'user', 'content': q}], max_tokens=24)!r}")
        m.unload()


def _table(rows):
    from rich.console import Console
    from rich.table import Table
    t = Table("gen", "weight error gold", "weight error shortcut", "KL gold", "KL shortcut",
              "KL ratio", title="drift from the FP16 reference lineage")
    for r in rows:
        t.add_row(str(r["generation"]), f"{r['gold_weight_error']:.2e}",
                  f"{r['shortcut_weight_error']:.2e}", f"{r['gold_kl']:.3e}",
                  f"{r['shortcut_kl']:.3e}", f"{r['shortcut_kl'] / r['gold_kl']:.2f}")
    Console(width=120).print(t)


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    gens = [r["generation"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "weight_error", "relative weight error vs FP16 lineage"),
                           (axes[1], "kl", "KL(FP16 lineage || served), nats/token")):
        ax.plot(gens, [r[f"gold_{key}"] for r in rows], "o-", label="Gold Master (FP16 merge)")
        ax.plot(gens, [r[f"shortcut_{key}"] for r in rows], "x-",
                label="shortcut (merge into dequantized Q8)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generation")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
