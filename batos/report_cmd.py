"""``batos report quant MIND``: Q8 against FP16, as a table, JSON and a PNG."""
import shutil
import tempfile
from pathlib import Path

from image import open_image, resolve
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
    scratch = None
    try:
        master_dir = store.open_checked(master["record"])
        if runtime["record"]["id"] == master["record"]["id"]:
            # Orai runs FP16: measure a scratch Q8 copy that is never deployed.
            scratch = Path(tempfile.mkdtemp(prefix="batos-q8-"))
            runtime_dir = scratch / "q8"
            with ui.status(f"quantizing a scratch Q8 copy of {args.mind}'s master", not args.json):
                engine.quantize(master_dir, runtime_dir)
            runtime_name = f"scratch Q8 ({engine.name}, not deployed)"
        else:
            runtime_dir = store.open_checked(runtime["record"])
            runtime_name = runtime["record"]["name"]
        with ui.status(f"measuring {len(prompts)} prompts on both models", not args.json):
            report = quant_report.measure(engine, master_dir, runtime_dir, master["identity"],
                                          prompts, max_tokens=args.max_tokens)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    report |= {"mind": args.mind, "master": master["record"]["name"], "runtime": runtime_name,
               "prompt_source": source}
    png = Path(args.png) if args.png else (
        loc.path / "reports" / f"quant-{args.mind}.png" if loc.kind == "folder"
        else Path(f"quant-{args.mind}.png"))
    png.parent.mkdir(parents=True, exist_ok=True)
    report["png"] = str(quant_report.plot(report, png))
    if args.json:
        ui.print_json({k: v for k, v in report.items() if k != "kl_per_token"})
        return 0
    _table(report)
    return 0


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
