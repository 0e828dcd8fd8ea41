"""``batos report quant|context MIND``: what Q8 weights and a quantized KV cache cost."""
import contextlib
import shutil
import tempfile
from pathlib import Path

from image import open_image, resolve
from image.location import local_dir
from mindhost import minds, store

from . import ui


def add_arguments(p):
    p.add_argument("mind", choices=minds.MINDS)
    p.add_argument("--prompts", metavar="FILE", help="one prompt per line (default: the mind's "
                   "ledger when it has requests, else a bundled set of 12)")
    p.add_argument("--max-tokens", type=int, default=48, help="answer tokens scored per prompt")
    p.add_argument("--png", metavar="PATH", help="where to write the plot "
                   "(default: IMAGE/reports/quant-MIND.png, or ./quant-MIND.png)")


def cmd_quant(args):
    from mindhost import quant_report  # numpy and friends: only when a report is asked for
    loc = resolve(args.image)
    with open_image(loc, read_only=True) as img, img.view() as root:
        master = minds.plan(root, args.mind, "master")
        runtime = minds.plan(root, args.mind, "runtime")
        prompts = (Path(args.prompts).read_text().splitlines() if args.prompts
                   else quant_report.ledger_prompts(root, args.mind))
        source = "file" if args.prompts else "ledger"
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        prompts, source = list(quant_report.PROMPTS), "bundled"
    if len(prompts) > 64:
        prompts = prompts[-64:]
    from mindhost.engines import get_engine
    engine = get_engine(runtime["engine"])
    with _runtime_folder(engine, args.mind, master, runtime, not args.json) as (
            master_dir, runtime_dir, runtime_name):
        with ui.status(f"measuring {len(prompts)} prompts on both models", not args.json):
            report = quant_report.measure(engine, master_dir, runtime_dir, master["identity"],
                                          prompts, max_tokens=args.max_tokens)
    report |= {"mind": args.mind, "master": master["record"]["name"], "runtime": runtime_name,
               "prompt_source": source}
    report["png"] = str(quant_report.plot(report, _png(args, loc, "quant")))
    if args.json:
        ui.print_json({k: v for k, v in report.items() if k != "kl_per_token"})
        return 0
    _table(report)
    return 0


@contextlib.contextmanager
def _runtime_folder(engine, mind, master, runtime, show):
    """(master folder, runtime folder, runtime name); Orai runs FP16, so its Q8 is a scratch
    copy made here and never deployed."""
    master_dir = store.open_checked(master["record"])
    if runtime["record"]["id"] != master["record"]["id"]:
        yield master_dir, store.open_checked(runtime["record"]), runtime["record"]["name"]
        return
    scratch = Path(tempfile.mkdtemp(prefix="batos-q8-"))
    try:
        with ui.status(f"quantizing a scratch Q8 copy of {mind}'s master", show):
            engine.quantize(master_dir, scratch / "q8")
        yield master_dir, scratch / "q8", f"scratch Q8 ({engine.name}, not deployed)"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _png(args, loc, what):
    png = Path(args.png) if args.png else (
        local_dir(loc) / "reports" / f"{what}-{args.mind}.png" if loc.persistent
        else Path(f"{what}-{args.mind}.png"))
    png.parent.mkdir(parents=True, exist_ok=True)
    return png


def _table(r):
    from rich.table import Table
    mem, spd = r["memory_bytes"], r["tokens_per_s"]
    t = Table(title=f"{r['mind']}: {ui.escape(r['runtime'])} vs FP16 master "
                    f"{ui.escape(r['master'])} ({r['engine']} engine)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for label, value in (
            ("prompts / scored tokens", f"{r['prompts']} ({r['prompt_source']}) / {r['tokens']}"),
            ("KL(FP16 || Q8) mean, nats", f"{r['kl_mean']:.5f}"),
            ("KL median / p95 / max", f"{r['kl_median']:.5f} / {r['kl_p95']:.5f} / {r['kl_max']:.4f}"),
            ("top-1 agreement", f"{r['top1_agreement']:.1%}"),
            (f"weights in memory: master (as {r['compute_dtype']['fp16']}) -> Q8",
             f"{mem['fp16'] / 1e6:.1f} MB -> {mem['q8'] / 1e6:.1f} MB"),
            ("memory saved", f"{mem['saved'] / 1e6:.1f} MB ({1 - mem['ratio']:.0%})"),
            ("tokens/s FP16 -> Q8", f"{spd['fp16']:.1f} -> {spd['q8']:.1f}"),
            ("speed ratio Q8 / FP16", f"{spd['ratio']:.2f}x")):
        t.add_row(label, value)
    ui.out.print(t)
    ui.out.print(f"plot: {ui.escape(r['png'])}")


# -- batos report context ---------------------------------------------------------------
def add_context_arguments(p):
    p.add_argument("mind", choices=minds.MINDS)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", metavar="FILE", help="a long document to read (default: "
                     "Python's Language Reference, which ships with CPython)")
    src.add_argument("--corpus", metavar="NAME", help="the longest document of a memory corpus")
    p.add_argument("--lengths", metavar="N,N,...", help="context lengths in tokens (default: "
                   "512, 1024, ... up to the model's limit; 8k for the bundled model)")
    p.add_argument("--depths", metavar="D,D,...", default="0.1,0.5,0.9",
                   help="where the needle sits, 0 (start) to 1 (end) (default 0.1,0.5,0.9)")
    p.add_argument("--continuation", type=int, default=128, metavar="N",
                   help="tokens of the text after each context that KL is scored on "
                        "(default 128)")
    p.add_argument("--kv", metavar="KV,KV", default="fp16,q8,q4",
                   help="KV cache precisions (default fp16,q8,q4; fp16 is the reference)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the needles (default: a new one per run, printed; give it to "
                        "repeat a run)")
    p.add_argument("--png", metavar="PATH", help="where to write the plot "
                   "(default: IMAGE/reports/context-MIND.png, or ./context-MIND.png)")


def cmd_context(args):
    import random

    from mindhost import context_report, needle
    from mindhost.engines import get_engine
    from mindhost.engines.kv import check_kv
    kvs = list(dict.fromkeys(["fp16"] + [check_kv(k) for k in _items(args.kv, str)]))
    depths = _items(args.depths, float)
    if not depths or any(not 0 <= d <= 1 for d in depths):
        raise ValueError(f"--depths {args.depths!r}: give numbers from 0 to 1, like 0.1,0.5,0.9")
    if args.continuation < 2:
        raise ValueError("--continuation must be at least 2 tokens")
    seed = random.randrange(10**6) if args.seed is None else args.seed
    loc = resolve(args.image)
    with open_image(loc, read_only=True) as img, img.view() as root:
        master = minds.plan(root, args.mind, "master")
        runtime = minds.plan(root, args.mind, "runtime")
        text, source = (needle.file_text(args.text) if args.text
                        else needle.corpus_text(root, args.corpus) if args.corpus
                        else needle.python_reference())
    engine = get_engine(runtime["engine"])
    with _runtime_folder(engine, args.mind, master, runtime, not args.json) as (
            master_dir, runtime_dir, runtime_name):
        limit = _context_limit(master_dir)
        top = limit - args.continuation - context_report.ANSWER_TOKENS
        # tokenized before any model loads: a text too short fails in seconds, not after a load
        doc_ids = context_report.tokenize(master_dir, text)
        room = len(doc_ids) - args.continuation
        if room < 64:
            raise needle.TextError(f"the text has {len(doc_ids)} tokens; it needs at least "
                                   f"{64 + args.continuation}: give a longer --text")
        lengths = (_items(args.lengths, int) if args.lengths else
                   [n for n in context_report.default_lengths(limit, args.continuation)
                    if n <= room] or [min(top, room)])
        bad = [n for n in lengths if not 64 <= n <= top]
        if not lengths or bad:
            raise ValueError(f"--lengths: {', '.join(map(str, bad)) or 'none given'}; each must "
                             f"be from 64 to {top} ({master['record']['name']} takes {limit} "
                             f"tokens, less the {args.continuation}-token continuation and "
                             "the answer)")
        context_report.check_room(doc_ids, lengths, args.continuation)
        with ui.step_progress(f"{args.mind}: long context, {len(lengths)} lengths x 2 models",
                    2 * len(lengths), not args.json) as advance:
            report = context_report.measure(
                engine, {"master": master_dir, "runtime": runtime_dir}, doc_ids=doc_ids,
                lengths=sorted(lengths), depths=depths, continuation=args.continuation,
                seed=seed, kvs=kvs, progress=advance)
    report |= {"mind": args.mind, "master": master["record"]["name"], "runtime": runtime_name,
               "text_source": source, "model_limit": limit}
    report["png"] = str(context_report.plot(report, _png(args, loc, "context")))
    if args.json:
        ui.print_json(report)
        return 0
    _context_table(report)
    return 0


def _items(text, kind):
    try:
        return [kind(x.strip()) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"cannot read {text!r}: give a comma-separated list") from None


def _context_limit(folder):
    import json
    cfg = json.loads((Path(folder) / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    return int(cfg.get("max_position_embeddings") or 2048)


def _context_table(r):
    from rich.table import Table
    t = Table(title=f"{r['mind']}: long context on {ui.escape(r['text_source'])} "
                    f"({r['engine']} engine; needles seeded {r['seed']})")
    for col in ("weights", "KV", "context", "KL mean", "KL p95", "top-1", "needles",
                "tok/s", "KV held", "planned"):
        t.add_column(col, justify="left" if col in ("weights", "KV") else "right")
    for c in r["combos"]:
        for row in c["by_length"]:
            t.add_row(c["weights"], c["kv"], f"{row['length']:,}",
                      "ref" if c["reference"] else f"{row['kl_mean']:.5f}",
                      "" if c["reference"] else f"{row['kl_p95']:.5f}",
                      f"{row['top1_agreement']:.1%}", f"{row['needle_recall']:.0%}",
                      f"{row['tokens_per_s']:.1f}", f"{row['kv_bytes'] / 2**20:.1f} MiB",
                      f"{row['kv_ratio']:.3f}x")
        t.add_section()
    ui.out.print(t)
    f = r["kv_format"]
    ui.out.print(f"KV format: groups of {f['group_size']}, scales in {f['compute_bits']}-bit "
                 f"(the compute dtype here); bits per element " + ", ".join(
                     f"{k} {v:.2f}" for k, v in f["bits_per_element"].items()))
    ui.out.print(f"plot: {ui.escape(r['png'])}")
