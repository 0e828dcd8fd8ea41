"""What long context costs a mind: weights (FP16 master, Q8 runtime) x KV cache (fp16, q8, q4).

At each context length, on real text: the KL divergence KL(P_ref || P) per
token of the text's continuation, against the FP16 master with an fp16 cache
(teacher forcing: both score the same tokens), and top-1 agreement; needle
recall over depths (a seeded code hidden in the text, asked for after it);
decoding tokens/s at that length; and the KV bytes the cache really holds
against the planner's figure for the same format. One model is loaded at a
time, and one cache (on torch, a quantized one beside the fp16 one that
its prefill shares), so a 70B mind needs the memory of one model, not two.
"""
import logging
import random
import time

import numpy as np

from .budget import shape_from_config
from .engines.kv import KV_CHOICES, bits_per_element, group_size
from .needle import make_needle, needle_prompt
from .quant_report import kl_and_agreement, log_softmax

WEIGHTS = ("master", "runtime")
LABELS = {"master": "FP16 master", "runtime": "Q8 runtime"}
ANSWER_TOKENS = 12
log = logging.getLogger(__name__)


def default_lengths(limit, continuation):
    """512, 1024, ... and last the model's limit less the continuation and the answer (a
    power of two within a quarter of that is left out: it would measure the same)."""
    top = limit - continuation - ANSWER_TOKENS
    out, n = [], 512
    while n * 1.25 < top:
        out.append(n)
        n *= 2
    return out + [top]


def measure(engine, folders, *, doc_ids=None, text=None, lengths, depths, continuation=128,
            seed=0, kvs=KV_CHOICES, progress=None) -> dict:
    """``folders``: {"master": path, "runtime": path}; the text as ``doc_ids`` (see
    ``tokenize``) or ``text``. Returns the report as plain data."""
    kvs = list(dict.fromkeys(kvs))
    if doc_ids is not None:
        check_room(doc_ids, lengths, continuation)
    shape = shape_from_config(folders["master"])
    results, reference = [], {}
    for weights in WEIGHTS:
        model = engine.load(folders[weights])
        try:
            if doc_ids is None:
                doc_ids = model.prompt_ids(text)
                check_room(doc_ids, lengths, continuation)
            fp_bits = None
            rows = {kv: [] for kv in kvs}
            for length in lengths:
                ctx = doc_ids[:length]
                cont = doc_ids[length:length + continuation]
                scored = _score(model, ctx, cont, kvs)
                if weights == "master":
                    reference[length] = scored["fp16"]["dist"]
                needles = _needles(model, doc_ids, length, depths, seed, kvs)
                for kv in kvs:
                    s, n = scored[kv], needles[kv]
                    fp_bits = s["fp_bits"]
                    kl, agree = kl_and_agreement(reference[length], s["dist"])
                    planned = shape.kv_bytes_per_token(kv, fp_bits) * length
                    rows[kv].append({
                        "length": length, "kl_mean": float(kl.mean()),
                        "kl_p95": float(np.percentile(kl, 95)), "kl_max": float(kl.max()),
                        "top1_agreement": float(agree.mean()),
                        "needle_recall": float(np.mean([x["found"] for x in n["needles"]])),
                        "needles": n["needles"], "tokens_per_s": n["tokens_per_s"],
                        "kv_bytes": s["kv_bytes"], "planned_kv_bytes": planned,
                        "kv_ratio": s["kv_bytes"] / planned})
                log.info("%s at %d tokens measured", weights, length,
                         extra={"event": "context_length", "weights": weights, "length": length})
                if progress:
                    progress(1)
            for kv in kvs:
                results.append({"weights": weights, "kv": kv,
                                "label": f"{LABELS[weights]}, {kv} KV",
                                "reference": weights == "master" and kv == "fp16",
                                "compute_dtype": model.compute_dtype,
                                "weights_bytes": model.memory_bytes(), "by_length": rows[kv]})
        finally:
            model.unload()
    group = group_size(shape.head_dim)
    return {"engine": engine.name, "lengths": list(lengths), "depths": list(depths),
            "continuation": continuation, "seed": seed, "combos": results,
            "kv_format": {"group_size": group, "compute_bits": fp_bits,
                          "bits_per_element": {kv: bits_per_element(kv, fp_bits, group)
                                               for kv in kvs},
                          "bytes_per_token": {kv: shape.kv_bytes_per_token(kv, fp_bits)
                                              for kv in kvs}},
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def tokenize(folder, text) -> list:
    """The text's token ids by the model's own tokenizer, with no weights loaded (the ids
    the engines' ``prompt_ids`` give)."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)(text, add_special_tokens=False)["input_ids"]


def check_room(doc_ids, lengths, continuation):
    need = max(lengths) + continuation
    if len(doc_ids) < need:
        from .needle import TextError
        raise TextError(f"the text has {len(doc_ids):,} tokens; the longest length asked for "
                        f"needs {need:,} (with the {continuation}-token continuation): give a "
                        "longer --text or shorter --lengths")


def _score(model, ctx, cont, kvs):
    """Each cache's log-softmax rows over the continuation, and the bytes it holds."""
    out = {}
    for kv, run in model.prefill(ctx, kvs):       # one cache at a time (torch: beside fp16)
        held = run.kv_bytes()
        logits = np.vstack([run.next_logits[None], run.feed(cont[:-1])]) if len(cont) > 1 \
            else run.next_logits[None]
        out[kv] = {"dist": log_softmax(logits), "kv_bytes": held, "fp_bits": run.fp_bits}
        run.close()
    return out


def _needles(model, doc_ids, length, depths, seed, kvs):
    found = {kv: [] for kv in kvs}
    speed = {kv: [] for kv in kvs}
    for depth in depths:
        needle = make_needle(seed, length, depth)
        # a different stretch of the text per depth, so the haystacks are not one text
        start = random.Random(f"{seed}:{length}:{depth}").randrange(max(len(doc_ids) - length, 1))
        ids = needle_prompt(model, doc_ids, length, needle, start=start)
        for kv, run in model.prefill(ids, kvs):
            answer = model.decode(run.greedy(ANSWER_TOKENS, stop=model.eos))
            n = run.tokens - len(ids)
            if n and run.decode_seconds:        # an answer that ends at once times nothing
                speed[kv].append(n / run.decode_seconds)
            found[kv].append({"depth": depth, "code": needle.code, "answer": answer.strip(),
                              "prompt_tokens": len(ids), "found": needle.code in answer})
            run.close()
    return {kv: {"needles": found[kv],
                 "tokens_per_s": float(np.median(speed[kv])) if speed[kv] else 0.0}
            for kv in kvs}


def plot(report, path):
    """A PNG: KL against context length, needle recall, and KV bytes held vs planned."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    styles = {"fp16": "-", "q8": "--", "q4": ":"}
    colors = {"master": "#4c72b0", "runtime": "#c44e52"}
    for c in report["combos"]:
        x = [r["length"] for r in c["by_length"]]
        style = dict(ls=styles.get(c["kv"], "-"), color=colors[c["weights"]], marker="o", ms=4,
                     label=c["label"])
        if not c["reference"]:
            axes[0].plot(x, [max(r["kl_mean"], 1e-7) for r in c["by_length"]], **style)
        axes[1].plot(x, [r["needle_recall"] for r in c["by_length"]], **style)
        if c["weights"] == "master":
            axes[2].plot(x, [r["kv_bytes"] / 2**20 for r in c["by_length"]], **style)
            axes[2].plot(x, [r["planned_kv_bytes"] / 2**20 for r in c["by_length"]], ls="none",
                         marker="x", color="black")
    axes[0].set(title="mean KL vs FP16 master + fp16 KV (nats/token)", yscale="log",
                xlabel="context tokens")
    axes[1].set(title=f"needle recall ({len(report['depths'])} depths per length)",
                ylim=(-0.05, 1.05), xlabel="context tokens")
    axes[2].set(title="KV cache held (lines) and planned (x), MiB", yscale="log",
                xlabel="context tokens")
    ticks = report["lengths"]
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{n / 1024:.1f}k".replace(".0k", "k") if n >= 1024 else str(n)
                              for n in ticks])
        ax.minorticks_off()
    axes[0].legend(fontsize=7, handlelength=3.5)
    axes[1].legend(fontsize=7, handlelength=3.5)
    fig.suptitle(f"{report.get('mind', '')}: long context on {report.get('text_source', '')} "
                 f"({report['engine']} engine; needles seeded {report['seed']}; equal curves "
                 "overlap)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
