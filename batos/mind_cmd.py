"""``batos mind show|set`` and ``batos ask``: the minds' models, and one prompt to one mind."""
import sys

from image import open_image, resolve
from mindhost import minds, store
from mindhost.engines.kv import KV_CHOICES
from mindhost.settings import EngineSettings, engine_of
from prototypes import settings as st

from . import ui


def add_mind_arguments(sub, verb):
    p = verb("show", cmd_show, "each mind's generation, master, runtime and engine", sub, json=True)
    p.add_argument("mind", nargs="?", choices=minds.MINDS, help="one mind (default: both)")
    p = verb("set", cmd_set, "point a mind at real weights (a model folder or a .gguf), "
             "or change its engine or precision (becomes its generation 0), or its KV cache",
             sub, json=True)
    p.add_argument("mind", choices=minds.MINDS)
    p.add_argument("--model", metavar="PATH",
                   help="Hugging Face folder (config.json + *.safetensors) or GGUF file "
                        "(dequantized to FP16); default: its current master, else the bundled SmolLM2")
    p.add_argument("--engine", metavar="NAME", help="torch, mlx or auto (auto: mlx with Metal, else torch)")
    p.add_argument("--precision", choices=minds.PRECISIONS,
                   help="what it runs by day: fp16 (its master) or q8 (an 8-bit copy made by "
                        "the engine); default: Orai fp16, Hermes q8")
    p.add_argument("--kv", choices=KV_CHOICES,
                   help="its KV cache: fp16 (unquantized), q8 or q4 (about 1/2 and 1/4 of the "
                        "bytes; `batos report context MIND` measures what each costs). Alone, "
                        "it changes only this setting")
    p.add_argument("--recall-tokens", type=int, metavar="N", help="tokens of past exchanges "
                   "recalled into each request's context (default 2000; 0: none). These three "
                   "recall flags change only the setting, and go in a command of their own")
    p.add_argument("--notebook-tokens", type=int, metavar="N",
                   help="the cap of the mind's notebook, in its own tokens (default 256)")
    p.add_argument("--notebook", choices=("cues", "off"), help="cues: the mind adds what the "
                   "owner asks it to remember; off: only the owner writes it")


def add_ask_arguments(p):
    p.add_argument("mind", choices=minds.MINDS)
    p.add_argument("prompt", nargs="+", help="the question (words are joined with spaces)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="default: the mind's engine setting max_tokens "
                        f"({EngineSettings.max_tokens} unless changed)")
    p.add_argument("--temperature", type=float, default=None,
                   help="0 is greedy and repeatable (default: the mind's setting, 0)")
    p.add_argument("--master", action="store_true",
                   help="ask the mind's FP16 master instead of its deployed runtime")
    p.add_argument("--json", action="store_true", help="print the answer and stats as JSON")


def _rows(root, names):
    rows = []
    for name in names:
        m = root[name]
        row = {"mind": name, "role": m.role, "generation": m.generation,
               "precision": m.lookup("precision", None), "engine": st.plain(engine_of(m)),
               "master": None, "runtime": None}
        for slot, key in (("model", "master"), ("runtime", "runtime")):
            rid = m.lookup(slot, None)
            if rid is not None:
                r = store.find(root, rid)
                row[key] = {"id": rid, "name": r["name"], "size": r["size"],
                            "quantization": r.get("quantization"), "engine": r.get("engine"),
                            "stats": r.get("stats")}
        rows.append(row)
    return rows


def cmd_show(args):
    with open_image(resolve(args.image), read_only=True) as img, img.view() as root:
        rows = _rows(root, [args.mind] if args.mind else minds.MINDS)
    if args.json:
        ui.print_json(rows)
        return 0
    from rich.table import Table
    t = Table("mind", "gen", "runs", "KV", "engine", "master (FP16)", "runtime", "size",
              "tok/s")
    for r in rows:
        rt, ma = r["runtime"] or {}, r["master"] or {}
        stats = rt.get("stats") or {}
        t.add_row(r["mind"], str(r["generation"]), r["precision"] or "-", r["engine"]["kv"],
                  rt.get("engine") or r["engine"].get("name", "auto"),
                  ma.get("name", "[dim]none: batos init[/]"), rt.get("name", "-"),
                  f"{rt['size'] / 1e6:.0f} MB" if rt else "-",
                  f"{stats['tokens_per_s']:.1f}" if stats else "-")
    ui.out.print(t)
    return 0


def set_kv(img, mind, kv) -> dict:
    """Change a mind's KV cache setting alone (no new generation); the kernel's next
    generation uses it."""
    def write(root):
        m = root[minds.check_mind(mind)]
        m.engine["kv"] = st.check(EngineSettings, dict(m.engine), where=f"{mind}.engine",
                                  kv=kv).kv
    img.run(write, note=f"{mind}: KV cache {kv}")
    return {"mind": mind, "kv": kv}


RECALL_FLAGS = {"recall_tokens": "recall_tokens", "notebook_tokens": "notebook_tokens",
                "notebook": "notebook"}


def set_recall(img, mind, **values) -> dict:
    """Change a mind's recall settings (``mind.recall``) alone; checked, then stored."""
    from mindhost.settings import RecallSettings, recall_of
    values = {k: v for k, v in values.items() if v is not None}

    def write(root):
        m = root[minds.check_mind(mind)]
        current = st.plain(recall_of(m))
        checked = st.check(RecallSettings, current, where=f"{mind}.recall", **values)
        m.set_slot("recall", {k: v for k, v in st.plain(checked).items()
                              if k in values or k in (m.lookup("recall", None) or {})})
        return st.plain(checked)
    return {"mind": mind, "recall": img.run(write, note=f"{mind}: recall settings")}


def cmd_set(args):
    loc = resolve(args.image)
    recall = {k: getattr(args, a) for a, k in RECALL_FLAGS.items()
              if getattr(args, a) is not None}
    if recall and not (args.model or args.engine or args.precision or args.kv):
        with open_image(loc) as img:
            entry = set_recall(img, args.mind, **recall)
        if args.json:
            ui.print_json(entry)
        else:
            ui.out.print(f"{args.mind}: " + ", ".join(f"{k} {v}" for k, v in recall.items()))
        return 0
    if recall:
        raise ValueError("set recall settings (--recall-tokens, --notebook-tokens, --notebook) "
                         "in a command of their own")
    if args.kv and not (args.model or args.engine or args.precision):
        with open_image(loc) as img:
            entry = set_kv(img, args.mind, args.kv)
        if args.json:
            ui.print_json(entry)
        else:
            ui.out.print(f"{args.mind}: KV cache {args.kv}")
        return 0
    with open_image(loc) as img:
        path = args.model
        if path is None:
            with img.view() as root:
                mid = root[args.mind].lookup("model", None)
                path = store.find(root, mid)["path"] if mid else None
        with ui.status(f"{args.mind}: importing and preparing its model", not args.json):
            entry = minds.install(img, args.mind, path, engine=args.engine,
                                  precision=args.precision)
            if args.kv:
                entry |= set_kv(img, args.mind, args.kv)
    _report_install(entry, args.json)
    return 0


def _report_install(entry, as_json):
    if as_json:
        ui.print_json(entry)
    else:
        ui.out.print(f"{entry['mind']}: generation 0 runs [bold]{ui.escape(entry['runtime_name'])}[/] "
                     f"({entry['precision']}, {entry['engine']} engine; master "
                     f"{ui.escape(entry['master_name'])})")


def ask(img, mind, prompt, *, max_tokens=None, temperature=None, which="runtime"):
    """Stream a mind's answer to one prompt: yields text pieces; returns the stats dict."""
    with img.view() as root:
        p = minds.plan(root, mind, which)
    model = minds.load(p)
    settings = p["settings"]
    try:
        yield from model.stream(minds.messages(p["identity"], prompt),
                                max_tokens=max_tokens or settings["max_tokens"],
                                temperature=settings["temperature"]
                                if temperature is None else temperature)
        return {**model.last_stats, "mind": mind, "generation": p["generation"],
                "model": p["record"]["name"], "engine": model.engine.name,
                "load_seconds": model.load_seconds}
    finally:
        model.unload()


def cmd_ask(args):
    prompt = " ".join(args.prompt)
    with open_image(resolve(args.image), read_only=True) as img:
        gen = ask(img, args.mind, prompt, max_tokens=args.max_tokens,
                  temperature=args.temperature, which="master" if args.master else "runtime")
        pieces = []
        try:
            while True:
                piece = next(gen)
                pieces.append(piece)
                if not args.json:
                    sys.stdout.write(piece)
                    sys.stdout.flush()
        except StopIteration as done:
            stats = done.value
    if args.json:
        ui.print_json({"answer": "".join(pieces), **stats})
    else:
        sys.stdout.write("\n")
        ui.err.print(f"[dim]{args.mind} gen {stats['generation']} · {ui.escape(stats['model'])} · "
                     f"{stats['engine']} · {stats['tokens']} tokens at "
                     f"{stats['tokens_per_s']:.1f} tok/s (load {stats['load_seconds']:.1f} s)[/]")
    return 0


def cmd_engines(args):
    from mindhost.engines import engines_report
    rows = engines_report()
    if args.json:
        ui.print_json(rows)
        return 0
    from rich.table import Table
    t = Table("engine", "runs here", "default", "note")
    for r in rows:
        t.add_row(r["name"], "yes" if r["available"] else "no", "yes" if r["default"] else "",
                  ui.escape(r["why"] or ""))
    ui.out.print(t)
    return 0
