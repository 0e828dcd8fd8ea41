"""A mind's recall of its own past, on real multi-session dialogue, against naive baselines.

1. Quality. MemoryBank's English evaluation data (Zhong et al., 2023; MIT
   licence; github.com/zhongwanjun/MemoryBank-SiliconFriend, eval_data/en):
   15 users, each with about ten dated daily conversations with an AI
   companion, and 100 probing questions about them. The data has no answer
   labels: bench/data/memorybank_labels.jsonl holds ours (how they were made:
   docs/memory.md), an exact span of each turn that answers a question.
   Per user, the dialogue is imported into Hermes's ledger with its dates
   (``batos ledger import``'s path, timestamps on the messages), and each
   question is asked through ``batos context``'s path (kernel.context.show)
   the day after the last conversation. Score: the share of evidence spans
   that appear in the context. Baselines get, per question, the same
   number of characters our recalled block used, filled with whole turns in
   their own order: the most recent turns, BM25 over turns, dense MiniLM over
   turns, and RRF of the two. Per question kind and overall.
2. ``--answers``: the bundled model answers each question from the assembled
   context; an answer counts when it holds half of the label's content words.
3. ``--scale N``: N synthetic exchanges (default 100000: a year of daily use)
   recorded into one ledger and indexed; recall latency p50/p95 (the whole
   ``recall_search.find``, query embedding included, and without it); the cost of
   recording one exchange (embed + insert + commit, on FileStorage) against
   today's record (the same without the recall mark); the arrays' memory.

Run: ``python bench/recall.py --data PATH/eval_data/en`` (quality, about 3
minutes), ``--scale 100000`` adds the scale part (about 10 minutes). The last
line gives our recall and its ratio to the best baseline at each budget.
"""
import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

LABELS = Path(__file__).resolve().parent / "data" / "memorybank_labels.jsonl"
KINDS = ("user_fact", "ai_said", "dated", "aggregate")


def load_data(folder, labels=LABELS):
    folder = Path(folder)
    bank = json.loads((folder / "memory_bank_en.json").read_text(encoding="utf-8"))
    labels = [json.loads(ln) for ln in Path(labels).read_text(encoding="utf-8").splitlines()
              if ln.strip()]
    return bank, labels


def turns_of(user):
    """``[(date, index, query, response, epoch)]`` of a user's history, in order."""
    out = []
    for date, day in user["history"].items():
        base = datetime.strptime(date, "%Y-%m-%d").replace(hour=12).timestamp()
        for i, t in enumerate(day):
            out.append((date, i, t["query"], t["response"], base + 60 * i))
    return out


def transcript(turns, path):
    """One JSONL line per day, a timestamp on each user turn (what `batos ledger import` reads)."""
    days = defaultdict(list)
    for date, i, q, r, when in turns:
        days[date] += [{"role": "user", "content": q,
                        "timestamp": datetime.fromtimestamp(when).isoformat()},
                       {"role": "assistant", "content": r}]
    path.write_text("\n".join(json.dumps({"messages": m}) for m in days.values()) + "\n")
    return path


# -- naive baselines -------------------------------------------------------------------------
WORD = re.compile(r"\w+")


def bm25_order(query, docs, k1=1.5, b=0.75):
    toks = [WORD.findall(d.lower()) for d in docs]
    avg = np.mean([len(t) for t in toks]) or 1.0
    df = Counter(w for t in toks for w in set(t))
    n = len(docs)
    scores = []
    for t in toks:
        tf = Counter(t)
        s = 0.0
        for w in set(WORD.findall(query.lower())):
            if w in tf:
                idf = np.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                s += idf * tf[w] * (k1 + 1) / (tf[w] + k1 * (1 - b + b * len(t) / avg))
        scores.append(s)
    return list(np.argsort(-np.array(scores), kind="stable"))


def rrf(*orders, k=60):
    score = defaultdict(float)
    for order in orders:
        for rank, i in enumerate(order):
            score[i] += 1 / (k + rank + 1)
    return sorted(score, key=lambda i: -score[i])


def fill(order, rendered, chars):
    """Whole turns in ``order`` while they fit in ``chars`` (a turn too long is skipped)."""
    used, out = 0, []
    for i in order:
        size = len(rendered[i]) + 1
        if used + size <= chars:
            out.append(rendered[i])
            used += size
    return "\n".join(out)


# -- the run ----------------------------------------------------------------------------------
def make_image(tmp):
    from image import open_image
    from kernel.schema import bootstrap
    from mindhost import minds
    img = open_image(str(tmp / "image"), create=True)
    bootstrap(img)
    minds.install(img, "hermes")
    return img


def reset(img, recall_tokens):
    from BTrees.OOBTree import OOBTree

    from memory.recall import RecallIndex

    def clear(root):
        root["hermes"].set_slot("ledger", OOBTree())
        root["memory"].recall["hermes"] = RecallIndex("hermes")
        root["hermes"].set_slot("recall", {"recall_tokens": recall_tokens, "recall_share": 1.0})
    img.run(clear, note="bench: a new user")


def quality(img, bank, labels, budgets, answers=False):
    from kernel.context import show
    from memory.embed import get_embedder
    from mindhost.pool import ModelPool
    from night.transcripts import import_transcripts
    emb = get_embedder()
    pool = ModelPool()
    by_user = defaultdict(list)
    for lab in labels:
        by_user[lab["user"]].append(lab)
    results = []        # one dict per (budget, question)
    tmp = Path(tempfile.mkdtemp(prefix="recall-bench-"))
    for user, labs in by_user.items():
        turns = turns_of(bank[user])
        docs = [f"{q}\n{r}" for _, _, q, r, _ in turns]
        rendered = [f"[{d}] user: {q}\nassistant: {r}" for d, _, q, r, _ in turns]
        vecs = emb.encode(docs)
        now = max(t[4] for t in turns) + 86400
        for budget in budgets:
            reset(img, budget)
            import_transcripts(img, "hermes", transcript(turns, tmp / "t.jsonl"), emb)
            with img.view() as root:
                for lab in labs:
                    q = lab["question"]
                    asm, g = show(img, root, "hermes", q, pool=pool, now=now)
                    system = asm.messages[0]["content"]
                    block = system.split("From earlier conversations:\n", 1)[1] \
                        if "From earlier conversations:\n" in system else ""
                    block = block.split("\n\nRelevant memory:", 1)[0]
                    chars = len(block)
                    qv = emb.encode([q])[0]
                    dense = list(np.argsort(-(vecs @ qv), kind="stable"))
                    bm = bm25_order(q, docs)
                    ctx = {"ours": block,
                           "recent": fill(list(range(len(turns) - 1, -1, -1)), rendered, chars),
                           "bm25": fill(bm, rendered, chars),
                           "dense": fill(dense, rendered, chars),
                           "rrf": fill(rrf(bm, dense), rendered, chars)}
                    ev = lab["evidence"]
                    row = {"budget": budget, "user": user, "q": lab["q"], "kind": lab["kind"],
                           "chars": chars, "n": len(ev), "question": q}
                    for name, text in ctx.items():
                        row[name] = sum(e["span"] in text for e in ev)
                    if answers and budget == budgets[-1]:
                        row["answer"] = _answer(pool, root, asm.messages, lab["answer"])
                    results.append(row)
    return results


STOP = set("the a an of to and or in on at for with my your you i me is was were did do what "
           "which who it that this be are have has had about".split())


def _answer(pool, root, messages, gold):
    info = pool.describe(root, "hermes")
    with pool.lease(info) as model:
        text = model.generate(messages, max_tokens=48, temperature=0.0)
    words = [w for w in WORD.findall(gold.lower()) if w not in STOP]
    got = set(WORD.findall(text.lower()))
    return int(bool(words) and sum(w in got for w in words) >= len(words) / 2)


def report(results, budgets):
    names = ("ours", "recent", "bm25", "dense", "rrf")
    summary = []
    for budget in budgets:
        rows = [r for r in results if r["budget"] == budget and r["n"]]
        chars = np.mean([r["chars"] for r in rows])
        print(f"\nrecall_tokens {budget} (our recalled block: mean {chars:.0f} characters; "
              "each baseline gets the same characters per question)")
        print(f"{'kind':<11} {'questions':>9} {'spans':>6} " + " ".join(f"{n:>7}" for n in names)
              + "   ours/best")
        for kind in KINDS + ("all",):
            sel = [r for r in rows if kind == "all" or r["kind"] == kind]
            if not sel:
                continue
            spans = sum(r["n"] for r in sel)
            score = {n: sum(r[n] for r in sel) / spans for n in names}
            best = max(score[n] for n in names[1:])
            print(f"{kind:<11} {len(sel):>9} {spans:>6} " + " ".join(f"{score[n]:>7.3f}"
                                                                    for n in names)
                  + f"   {score['ours'] / best if best else float('inf'):.2f}")
        if any("answer" in r for r in rows):
            acc = np.mean([r["answer"] for r in rows if "answer" in r])
            print(f"answers by the bundled model from our context: {acc:.2f} hold half the "
                  "label's content words")
        allspans = sum(r["n"] for r in rows)
        ours = sum(r["ours"] for r in rows) / allspans
        best = max(sum(r[n] for r in rows) / allspans for n in names[1:])
        summary.append(f"{budget} tokens: {ours:.3f} ({ours / best:.2f}x best naive)")
    return summary


# -- scale ------------------------------------------------------------------------------------
def scale(n, queries=200):
    import transaction  # noqa: F401

    from image import open_image
    from kernel.schema import bootstrap
    from memory import ledger, recall, recall_search
    from memory.embed import get_embedder
    from memory.ledger import Exchange
    rng = np.random.default_rng(7)
    emb = get_embedder()
    tmp = Path(tempfile.mkdtemp(prefix="recall-scale-"))
    img = open_image(str(tmp / "image"), create=True)
    bootstrap(img)
    vocab = [f"w{i}" for i in range(20000)] + ["python", "garden", "paris", "schema", "blue"]
    zipf = 1 / np.arange(1, len(vocab) + 1) ** 1.1
    zipf /= zipf.sum()
    start = time.time() - 365 * 86400
    t0 = time.perf_counter()
    batch = 5000
    for b0 in range(0, n, batch):
        k = min(batch, n - b0)
        vecs = rng.standard_normal((k, emb.dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        words = rng.choice(len(vocab), size=(k, 40), p=zipf)

        def write(root, vecs=vecs, words=words, b0=b0):
            for j in range(len(vecs)):
                text = " ".join(vocab[w] for w in words[j])
                ex = Exchange("hermes", text[:120], text[120:], vecs[j].tobytes(),
                              start + (b0 + j) * 365 * 86400 / n)
                ledger.record(root, ex, tick=j)
        img.run(write, note="bench: exchanges")
        recall.flush(img, "hermes", at_least=1)
    fill_s = time.perf_counter() - t0
    with img.view() as root:
        data = recall_search.view(img, root, "hermes")
        rows = len(data)
        nbytes = sum(s.vectors.numel() * 2 + s.rows.nbytes + s.tf.nbytes + s.keys.nbytes +
                     s.docids.nbytes * 3 for s in data.segs)
    qs = [" ".join(vocab[w] for w in rng.choice(len(vocab), size=6, p=zipf))
          for _ in range(queries)]
    full, bare = [], []
    with img.view() as root:
        recall_search.find(img, root, "hermes", qs[0], k=40)       # the view is built once per load
        for q in qs:
            t = time.perf_counter()
            recall_search.find(img, root, "hermes", q, k=40)
            full.append(time.perf_counter() - t)
            t = time.perf_counter()
            emb.encode([q])
            bare.append(full[-1] - (time.perf_counter() - t))
    # recording: embed + insert + commit, with the recall mark and without (today's)
    def today(root, ex):
        from image.keys import new_key
        root["hermes"].ledger[new_key(ex.time)] = ex
    cost = {"today": [], "recall": [], "today_commit": [], "recall_commit": []}
    for i in range(300):          # interleaved, so drift of the box hits both alike
        for name, fn in (("today", today), ("recall", ledger.record))[::1 if i % 2 else -1]:
            t = time.perf_counter()
            ex = ledger.packet(emb, "hermes", f"question {i} about the garden", f"answer {i}")
            t1 = time.perf_counter()
            img.run(fn, ex, note="bench: one exchange")
            t2 = time.perf_counter()
            cost[name].append(t2 - t)
            cost[name + "_commit"].append(t2 - t1)
    cost = {k: float(np.median(v)) for k, v in cost.items()}
    img.close()
    p = lambda xs, q: float(np.percentile(xs, q)) * 1e3  # noqa: E731
    print(f"\nscale: {rows} exchanges recorded and indexed in {fill_s:.0f} s; arrays "
          f"{nbytes / 2**20:.0f} MiB ({nbytes / rows:.0f} B an exchange)")
    print(f"recall.find p50 {p(full, 50):.1f} ms, p95 {p(full, 95):.1f} ms (query embedding "
          f"included); without it p50 {p(bare, 50):.1f} ms, p95 {p(bare, 95):.1f} ms")
    print(f"recording one exchange (embed, insert, commit; medians of 300, interleaved): today "
          f"{cost['today'] * 1e3:.2f} ms, with recall {cost['recall'] * 1e3:.2f} ms; the insert "
          f"and commit alone: {cost['today_commit'] * 1e3:.2f} ms and "
          f"{cost['recall_commit'] * 1e3:.2f} ms")
    return p(full, 95), cost["recall"] / cost["today"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="MemoryBank's eval_data/en folder")
    ap.add_argument("--budgets", default="150,300,600,2000",
                    help="recall_tokens settings to compare at (default 150,300,600,2000)")
    ap.add_argument("--labels", type=Path, default=LABELS, help="evidence labels (JSONL)")
    ap.add_argument("--answers", action="store_true", help="also answer with the bundled model")
    ap.add_argument("--dump", type=Path, help="write every question's row (JSONL) here")
    ap.add_argument("--scale", type=int, default=0, metavar="N", help="add the scale part")
    args = ap.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    summary = []
    if args.data:
        bank, labels = load_data(args.data, args.labels)
        with tempfile.TemporaryDirectory() as tmp:
            img = make_image(Path(tmp))
            try:
                results = quality(img, bank, labels, budgets, args.answers)
            finally:
                img.close()
        summary = report(results, budgets)
        if args.dump:
            args.dump.write_text("".join(json.dumps(r) + "\n" for r in results))
    if args.scale:
        p95, ratio = scale(args.scale)
        summary.append(f"{args.scale}-exchange p95 {p95:.1f} ms, record cost ratio {ratio:.3f}")
    if not summary:
        ap.error("give --data (MemoryBank's eval_data/en) and/or --scale N")
    print("recall: " + "; ".join(summary))


if __name__ == "__main__":
    main()
