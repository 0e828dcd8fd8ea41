"""``batos plan``: print the memory budget for both minds."""
from rich import box
from rich.table import Table

from mindhost.budget import GB, PRESETS, machine_ram, parse_size, plan, what_q8_buys

from . import ui


def add_arguments(p):
    presets = ", ".join(PRESETS)
    p.add_argument("--orai", default="mistral-large-2:fp16", metavar="MODEL[:PREC]",
                   help=f"Orai's model: a preset ({presets}) or a model folder/config.json, "
                        "with :fp16, :bf16, :q8 or :q4 (default mistral-large-2:fp16)")
    p.add_argument("--hermes", default="hermes-4-70b:q8", metavar="MODEL[:PREC]",
                   help="Hermes's model, as --orai (default hermes-4-70b:q8)")
    p.add_argument("--context", type=int, default=131072, help="tokens of context per mind (default 131072)")
    p.add_argument("--kv", choices=("fp16", "q8"), default="fp16", help="KV cache precision (default fp16)")
    p.add_argument("--ram", help="machine memory, e.g. 512G (binary) or 500GB (default: this machine)")
    p.add_argument("--reserve", help="memory kept for the OS and everything else "
                                     "(default: 10%% of RAM, at least 8GB)")
    p.add_argument("--json", action="store_true", help="print the budget as JSON")


def cmd_plan(args):
    ram = parse_size(args.ram) if args.ram else machine_ram()
    reserve = parse_size(args.reserve) if args.reserve else None
    budget = plan(args.orai, args.hermes, context=args.context, kv=args.kv, ram=ram, reserve=reserve)
    extra = what_q8_buys(args.hermes, args.context)
    if args.json:
        ui.print_json(budget | {"hermes_q8": extra})
        return 0 if budget["fits"] else 1
    t = Table(title=f"memory budget at {args.context:,} tokens of context, {args.kv} KV cache",
              title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for col in ("", "model", "prec", "params", "weights", "KV/token", "KV@ctx", "total"):
        t.add_column(col, justify="left" if col in ("", "model", "prec") else "right", no_wrap=True)
    for name, m in budget["minds"].items():
        t.add_row(name, m["model"], m["precision"], f"{m['params'] / 1e9:.1f}B", _gb(m["weights_bytes"]),
                  f"{m['kv_bytes_per_token'] / 1024:.0f}KiB", _gb(m["kv_bytes"]), _gb(m["total_bytes"]))
    t.add_row("embedder", "MiniLM-L6-v2", "fp32", "0.02B", "", "", "", _gb(budget["embedder_bytes"]))
    t.add_row("reserve", "OS and the rest", "", "", "", "", "", _gb(budget["reserve_bytes"]))
    t.add_row("total", "", "", "", "", "", "", _gb(budget["total_bytes"]), style="bold")
    ui.out.print(t)
    verdict = "[green]fits[/]" if budget["fits"] else "[red]does not fit[/]"
    ui.out.print(f"RAM {_gb(budget['ram_bytes'])}: {verdict}, headroom {_gb(budget['headroom_bytes'])}")
    ui.out.print(f"Hermes in q8 instead of fp16 saves {_gb(extra['weights_saved_bytes'])} of weights; "
                 f"an 8-bit KV cache saves {_gb(extra['kv_saved_bytes'])} more at this context.")
    return 0 if budget["fits"] else 1


def _gb(n):
    return f"{n / GB:,.1f}GB"
