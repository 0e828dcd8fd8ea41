"""``batos plan``: print the memory budget for both minds."""
from rich import box
from rich.table import Table

from mindhost.budget import (
    GB,
    PRESETS,
    PlanError,
    machine_ram,
    night_plan,
    parse_size,
    plan,
    what_q8_buys,
)

from . import ui


def add_arguments(p):
    presets = ", ".join(PRESETS)
    p.add_argument("--orai", default="mistral-large-2:fp16", metavar="MODEL[:PREC]",
                   help=f"Orai's model: a preset ({presets}) or a model folder/config.json, "
                        "with :fp16, :bf16, :q8 or :q4 (default mistral-large-2:fp16)")
    p.add_argument("--hermes", default="hermes-4-70b:q8", metavar="MODEL[:PREC]",
                   help="Hermes's model, as --orai (default hermes-4-70b:q8)")
    p.add_argument("--context", type=int, default=131072, help="tokens of context per mind (default 131072)")
    p.add_argument("--kv", default=None, metavar="KV",
                   help="KV cache precision: fp16, q8 or q4 for both minds, or per mind like "
                        "hermes=q8 (the other stays fp16); the bytes per token are the engines' "
                        "own format: 8.5 and 4.5 bits per element with float16 compute "
                        "(default: each mind's kv setting in the image, else fp16)")
    p.add_argument("--ram", help="machine memory, e.g. 512G (binary) or 500GB (default: this machine)")
    p.add_argument("--reserve", help="memory kept for the OS and everything else "
                                     "(default: 10%% of RAM, at least 8GB)")
    p.add_argument("--engine", choices=("mlx", "torch"), default=None,
                   help="the night's engine (default: mlx on Apple Silicon, else torch); on a "
                        "CPU the torch engine computes an FP16 model in float32")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 4)")
    p.add_argument("--seq", type=int, default=None, help="training max_seq_len (default 512)")
    p.add_argument("--qlora", action="store_true", help="plan training on a 4-bit base (mlx)")
    p.add_argument("--json", action="store_true", help="print the budget as JSON")


def cmd_plan(args):
    ram = parse_size(args.ram) if args.ram else machine_ram()
    reserve = parse_size(args.reserve) if args.reserve else None
    kv = parse_kv(args.kv) if args.kv else image_kv(getattr(args, "image", None))
    budget = plan(args.orai, args.hermes, context=args.context, kv=kv, ram=ram, reserve=reserve)
    extra = what_q8_buys(args.hermes, args.context)
    night = _night(args, ram, reserve)
    ok = budget["fits"] and night["fits"]
    if args.json:
        ui.print_json(budget | {"hermes_q8": extra, "night": night})
        return 0 if ok else 1
    t = Table(title=f"memory budget at {args.context:,} tokens of context, KV cache "
                    + ", ".join(f"{k} {v}" for k, v in kv.items()),
              title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for col in ("", "model", "prec", "params", "weights", "KV", "KV/token", "KV@ctx", "total"):
        t.add_column(col, justify="left" if col in ("", "model", "prec") else "right", no_wrap=True)
    for name, m in budget["minds"].items():
        t.add_row(name, m["model"], m["precision"], f"{m['params'] / 1e9:.1f}B",
                  _gb(m["weights_bytes"]), m["kv"], f"{m['kv_bytes_per_token'] / 1024:.0f}KiB",
                  _gb(m["kv_bytes"]), _gb(m["total_bytes"]))
    t.add_row("embedder", "MiniLM-L6-v2", "fp32", "0.02B", "", "", "", "",
              _gb(budget["embedder_bytes"]))
    t.add_row("reserve", "OS and the rest", "", "", "", "", "", "", _gb(budget["reserve_bytes"]))
    t.add_row("total", "", "", "", "", "", "", "", _gb(budget["total_bytes"]), style="bold")
    ui.out.print(t)
    verdict = "[green]fits[/]" if budget["fits"] else "[red]does not fit[/]"
    ui.out.print(f"RAM {_gb(budget['ram_bytes'])}: {verdict}, headroom {_gb(budget['headroom_bytes'])}")
    ui.out.print(f"Hermes in q8 instead of fp16 saves {_gb(extra['weights_saved_bytes'])} of weights; "
                 f"a q8 KV cache saves {_gb(extra['kv_saved_bytes'])} more at this context, q4 "
                 f"{_gb(extra['kv_q4_saved_bytes'])} (what each costs in quality: `batos report "
                 "context hermes`).")
    _print_night(night)
    return 0 if ok else 1


def parse_kv(text) -> dict:
    """``q8`` (both minds) or ``hermes=q8[,orai=fp16]`` -> {"orai": kv, "hermes": kv}."""
    if "=" not in text:
        return {"orai": text, "hermes": text}
    out = {"orai": "fp16", "hermes": "fp16"}
    for item in text.split(","):
        mind, _, kv = item.partition("=")
        if mind.strip() not in out:
            raise PlanError(f"--kv {text!r}: {mind.strip()!r} is not a mind (orai, hermes)")
        out[mind.strip()] = kv.strip()
    return out


def image_kv(image) -> dict:
    """Each mind's ``engine.kv`` setting in the image, or fp16 where there is none to read."""
    from image import ImageError, open_image, resolve
    from mindhost.settings import engine_of
    kv = {"orai": "fp16", "hermes": "fp16"}
    try:
        loc = resolve(image)
        if not loc.persistent:
            return kv
        with open_image(loc, read_only=True) as img, img.view() as root:
            for m in [m for m in kv if m in root]:
                try:
                    kv[m] = engine_of(root[m]).kv
                except ImageError:      # its settings are bad: `batos mind show` says so
                    pass
    except (ImageError, OSError):
        pass            # no image yet (or a locked one): plan at fp16, as without one
    return kv


def _night(args, ram, reserve):
    from mindhost.engines import has_metal
    engine = args.engine or ("mlx" if has_metal() else "torch")
    training = {k: v for k, v in (("batch_size", args.batch), ("max_seq_len", args.seq),
                                  ("qlora", args.qlora or None)) if v is not None}
    return night_plan(args.orai, args.hermes, ram=ram, reserve=reserve, engine=engine,
                      training={"orai": training, "hermes": training})


def _print_night(night):
    t = Table(title=f"the night, one step at a time ({night['engine']} engine; the day's "
                    "runtimes unloaded)", title_justify="left", box=box.SIMPLE_HEAD,
              padding=(0, 1), pad_edge=False)
    for col in ("", "model", "train", "merge/fuse", "requantize", "gate"):
        t.add_column(col, justify="left" if col in ("", "model") else "right", no_wrap=True)
    for name, m in night["minds"].items():
        s = m["steps"]
        t.add_row(name, m["model"], _gb(s["train"]), _gb(s.get("merge", s.get("fuse"))),
                  _gb(s["requantize"]) if "requantize" in s else "-", _gb(s["gate"]))
    ui.out.print(t)
    if night["fits"]:
        ui.out.print(f"every night step fits in {_gb(night['room_bytes'])} (RAM less the "
                     "reserve and the embedder)")
    for r in night["refused"]:
        ui.out.print(f"[red]{r['mind']}'s {r['step']} does not fit[/]: it needs "
                     f"{_gb(r['needs_bytes'])}, {_gb(r['short_bytes'])} more than the "
                     f"{_gb(night['room_bytes'])} free; lower training --batch/--seq, use "
                     "--qlora (mlx), or a smaller model")


def _gb(n):
    return f"{n / GB:,.1f}GB"
