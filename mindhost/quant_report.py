"""What Q8 costs and buys: a mind's 8-bit runtime measured against its FP16 master.

For each prompt the master writes a greedy answer; both models then score
that same answer token by token (teacher forcing), which gives the per-token
KL divergence KL(P_fp16 || P_q8) in nats and whether their top-1 tokens
agree. Both run on the runtime's engine, so the difference is quantization
alone. Speed is tokens/s generating the same number of tokens; memory is what
the loaded weights take.
"""
import time

import numpy as np

# Used when the mind's ledger is empty: short, varied, checkable requests.
PROMPTS = (
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn leaves.",
    "List three prime numbers greater than 10.",
    "Translate 'good morning' into Spanish.",
    "What does a router do in a computer network?",
    "Give one tip for writing clear emails.",
    "Summarise the plot of Romeo and Juliet in one sentence.",
    "Write a Python function that returns the square of a number.",
    "What is 12 times 7?",
    "Why do we need sleep?",
    "Name the largest planet in the solar system.",
)


def ledger_prompts(root, mind, limit=32) -> list:
    """The requests in a mind's ledger (entries with a ``prompt`` field), newest last."""
    out = []
    for entry in root[mind].ledger.values():
        prompt = entry.get("prompt") if hasattr(entry, "get") else getattr(entry, "prompt", None)
        if isinstance(prompt, str) and prompt.strip():
            out.append(prompt)
    return out[-limit:]


def log_softmax(logits):
    """Rows of float32 logits as log-probabilities."""
    x = logits.astype(np.float32)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def kl_and_agreement(d_ref, d_test):
    """Per-token KL(ref || test) in nats and top-1 agreement, from log-softmax rows."""
    kl = (np.exp(d_ref) * (d_ref - d_test)).sum(axis=1)
    agree = d_ref.argmax(axis=1) == d_test.argmax(axis=1)
    return np.maximum(kl, 0.0), agree


def measure(engine, master_folder, runtime_folder, identity, prompts, *, max_tokens=48,
            speed_tokens=32, progress=None) -> dict:
    from .minds import messages
    fp = engine.load(master_folder)
    q8 = engine.load(runtime_folder)
    try:
        per_prompt, kls, agrees = [], [], []
        for prompt in prompts:
            text = fp.chat_template(messages(identity, prompt))
            answer = fp.generate(text, max_tokens=max_tokens)
            if not answer:              # ends its turn at once: score what it would say next
                answer = fp.generate(text, max_tokens=max_tokens, ignore_eos=True)
            if not fp.count_tokens(answer):
                continue
            _, _, d_fp = fp.logprobs(text, answer, full=True)
            _, _, d_q8 = q8.logprobs(text, answer, full=True)
            kl, agree = kl_and_agreement(d_fp, d_q8)
            kls.append(kl)
            agrees.append(agree)
            per_prompt.append({"prompt": prompt, "tokens": len(kl), "kl_mean": float(kl.mean()),
                               "kl_max": float(kl.max()), "top1_agreement": float(agree.mean())})
            if progress:
                progress(1)
        if not kls:
            raise ValueError("the master gave no answer to any prompt; nothing to compare")
        speed = {}
        for label, model in (("fp16", fp), ("q8", q8)):
            rates = []
            for prompt in prompts[:3]:
                model.generate(messages(identity, prompt), max_tokens=speed_tokens, ignore_eos=True)
                rates.append(model.last_stats["tokens_per_s"])
            speed[label] = float(np.median(rates))
        all_kl, all_agree = np.concatenate(kls), np.concatenate(agrees)
        mem = {"fp16": fp.memory_bytes(), "q8": q8.memory_bytes()}
        return {
            "engine": engine.name, "prompts": len(per_prompt), "tokens": len(all_kl),
            "kl_mean": float(all_kl.mean()), "kl_median": float(np.median(all_kl)),
            "kl_p95": float(np.percentile(all_kl, 95)), "kl_max": float(all_kl.max()),
            "top1_agreement": float(all_agree.mean()),
            "memory_bytes": mem | {"saved": mem["fp16"] - mem["q8"], "ratio": mem["q8"] / mem["fp16"]},
            "tokens_per_s": speed | {"ratio": speed["q8"] / speed["fp16"]},
            "load_seconds": {"fp16": fp.load_seconds, "q8": q8.load_seconds},
            "compute_dtype": {"fp16": fp.compute_dtype, "q8": q8.compute_dtype},
            "per_prompt": per_prompt, "kl_per_token": [float(x) for x in all_kl],
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    finally:
        fp.unload()
        q8.unload()


def plot(report, path):
    """A PNG: KL per token (histogram), agreement per prompt, and memory/speed side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    kl = np.asarray(report["kl_per_token"])
    axes[0].hist(np.log10(np.maximum(kl, 1e-7)), bins=40, color="#4c72b0")
    axes[0].axvline(np.log10(max(report["kl_mean"], 1e-7)), color="#c44e52", ls="--",
                    label=f"mean {report['kl_mean']:.4f} nats")
    axes[0].set(title="per-token KL(FP16 || Q8)", xlabel="log10 KL (nats)", ylabel="tokens")
    axes[0].legend()
    pp = report["per_prompt"]
    axes[1].barh(range(len(pp)), [p["top1_agreement"] for p in pp], color="#55a868")
    axes[1].set_yticks(range(len(pp)), [p["prompt"][:28] for p in pp], fontsize=7)
    axes[1].set(title=f"top-1 agreement (all: {report['top1_agreement']:.1%})", xlim=(0, 1))
    axes[1].invert_yaxis()
    mem, spd = report["memory_bytes"], report["tokens_per_s"]
    x = np.arange(2)
    axes[2].bar(x - 0.2, [mem["fp16"] / 1e6, mem["q8"] / 1e6], 0.4, label="weights (MB)",
                color="#8172b2")
    ax2 = axes[2].twinx()
    ax2.bar(x + 0.2, [spd["fp16"], spd["q8"]], 0.4, label="tokens/s", color="#ccb974")
    axes[2].set_xticks(x, [f"FP16 master\n(runs in {report['compute_dtype']['fp16']})",
                           "Q8 runtime"])
    axes[2].set(title=f"memory x{mem['ratio']:.2f}, speed x{spd['ratio']:.2f}", ylabel="MB")
    ax2.set_ylabel("tokens/s")
    handles = axes[2].get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    axes[2].legend(handles=handles, loc="upper center", fontsize=8)
    fig.suptitle(f"{report['mind']}: {report['runtime']} vs {report['master']} "
                 f"({report['engine']} engine, {report['tokens']} tokens)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
