"""``batos curate`` and ``batos ledger import|show``: the night's inputs, by hand."""
from pathlib import Path

from image import open_image, resolve
from image.location import local_dir
from mindhost import minds

from . import ui


def add_arguments(sub, verb, ledger_sub):
    p = verb("curate", cmd_curate, "score a mind's exchanges since its last curation and "
             "write its training set (chat JSONL + dataset card); --dry-run shows what "
             "would go in and why", sub, json=True)
    p.add_argument("mind", choices=minds.MINDS)
    p.add_argument("--dry-run", action="store_true", help="show the decisions; write nothing")
    p.add_argument("--since", metavar="KEY", help="ledger key to start after (default: the "
                   "mind's last curation; '' for the whole ledger)")
    p.add_argument("--out", metavar="DIR", help="where the set goes (default "
                   "IMAGE/dream/MIND/gen-N)")
    p = verb("dream", cmd_dream, "the night cycle: curate -> train -> merge -> requantize "
             "-> gate -> deploy, per mind (Orai first, then Hermes). Each step is recorded "
             "in the image: after a crash, run it again and it finishes the night", sub,
             json=True)
    p.add_argument("--mind", choices=("both", *minds.MINDS), default="both",
                   help="whose night (default both)")
    p.add_argument("--dry-run", action="store_true", help="show what each mind would learn "
                   "from and which steps would run; change nothing")
    p = verb("lineage", cmd_lineage, "a mind's generations (parent, master, runtime, "
             "adapter, gate, timings, what serves); `batos lineage rollback MIND` serves the "
             "previous generation again; `batos lineage plot MIND` writes a PNG of gate "
             "scores and KL across generations", sub, json=True)
    p.add_argument("words", nargs="+", metavar="ARG",
                   help="MIND, or: rollback MIND, or: plot MIND")
    p.add_argument("--out", metavar="PNG", help="for plot: where (default "
                   "IMAGE/reports/lineage-MIND.png)")
    p = verb("import", cmd_import, "bring past conversations into a mind's ledger: JSONL of "
             'OpenAI {"messages": [...]} or ShareGPT {"conversations": [...]}, with an '
             'optional "rating" (good/bad) per line or per assistant turn', ledger_sub, json=True)
    p.add_argument("mind", choices=minds.MINDS)
    p.add_argument("file", type=Path)
    p = verb("show", cmd_show, "a mind's last exchanges with their signals", ledger_sub,
             json=True)
    p.add_argument("mind", choices=minds.MINDS)
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")


def cmd_curate(args):
    from night.curate import curate, write_dataset
    loc = resolve(args.image)
    with open_image(loc, read_only=True) as img, img.view() as root:
        cur = curate(root, args.mind, since=args.since)
    out = None
    if not args.dry_run:
        if not cur.examples:
            raise ValueError(f"nothing in {args.mind}'s ledger resonated since the last "
                             "curation (see `batos curate --dry-run`); no set was written")
        if args.out is None and not loc.persistent:
            raise ValueError("give --out DIR: a memory: image has no folder to hold the set")
        folder = Path(args.out) if args.out else (
            local_dir(loc) / "dream" / args.mind / f"gen-{cur.generation}")
        out = write_dataset(cur, folder)
    if args.json:
        ui.print_json({"card": cur.card(), "out": str(out) if out else None,
                       "rows": [{"key": r.key, "score": r.score, "reasons": r.reasons,
                                 "decision": r.decision} for r in cur.rows]})
        return 0
    from rich.table import Table
    t = Table("exchange", "score", "decision", "why", "prompt", title=f"{args.mind}: curation "
              f"for generation {cur.generation}", title_justify="left")
    for r in cur.rows:
        style = "green" if r.decision in ("kept", "replay") else "dim"
        t.add_row(r.key[-6:], f"{r.score:+.1f}", f"[{style}]{ui.escape(r.decision)}[/]",
                  ui.escape("; ".join(r.reasons)), ui.escape(r.prompt[:50]))
    ui.out.print(t)
    card = cur.card()
    ui.out.print(f"{card['examples']} examples ({card['valid']} for validation); redactions: "
                 f"{card['redactions'] or 'none'}"
                 + (f"; written to {ui.escape(str(out))}" if out else " (dry run: nothing written)"))
    return 0


def cmd_import(args):
    from memory.embed import get_embedder
    from night.transcripts import import_transcripts
    with open_image(resolve(args.image)) as img, ui.status(
            f"{args.mind}: embedding and recording {args.file.name}", not args.json):
        n = import_transcripts(img, args.mind, args.file, get_embedder())
    if args.json:
        ui.print_json({"mind": args.mind, "imported": n, "file": str(args.file)})
    else:
        ui.out.print(f"{args.mind}: {n} exchanges imported from {ui.escape(str(args.file))}")
    return 0


def cmd_show(args):
    from memory.ledger import recent
    with open_image(resolve(args.image), read_only=True) as img, img.view() as root:
        rows = [{"key": k, "prompt": ex.prompt, "answer": ex.answer, "time": ex.time,
                 "mission": ex.mission, "signals": dict(ex.signals)}
                for k, ex in recent(root, args.mind, args.n)]
    if args.json:
        ui.print_json(rows)
        return 0
    from rich.table import Table
    t = Table("exchange", "prompt", "answer", "signals")
    for r in rows:
        sig = {k: v for k, v in r["signals"].items() if k not in ("memory",)}
        t.add_row(r["key"][-6:], ui.escape(r["prompt"][:40]), ui.escape(r["answer"][:50]),
                  ui.escape(", ".join(f"{k}={v}" for k, v in sig.items())))
    ui.out.print(t)
    return 0




def cmd_lineage(args):
    from night import lineage
    action, mind = (args.words[0], args.words[1]) if args.words[0] in (
        "rollback", "plot") and len(args.words) == 2 else ("show", args.words[0])
    if len(args.words) > (1 if action == "show" else 2):
        raise ValueError("usage: batos lineage MIND | batos lineage rollback MIND | "
                         "batos lineage plot MIND")
    minds.check_mind(mind)
    if action == "plot":
        return _plot(args, mind)
    if action == "rollback":
        with open_image(resolve(args.image)) as img:
            out = lineage.rollback(img, mind)
        if args.json:
            ui.print_json(out)
        else:
            ui.out.print(f"{mind}: generation {out['from']} rolled back; generation "
                         f"{out['to']} serves again")
        return 0
    with open_image(resolve(args.image), read_only=True) as img, img.view() as root:
        rows = lineage.rows(root, mind)
    if args.json:
        ui.print_json(rows)
        return 0
    from rich.table import Table
    t = Table("gen", "parent", "serving", "engine", "precision", "examples", "adapter",
              "gate", "KL", "night", "when")
    for r in rows:
        gate = {c["name"]: c for c in r.get("gate") or []}
        timings = r.get("timings") or {}
        t.add_row(str(r["generation"]), str(r.get("parent", "-")),
                  "[green]yes[/]" if r["serving"] else "", r.get("engine", "-"),
                  r.get("precision", "-"), str((r.get("dataset") or {}).get("examples", "-")),
                  f"{r['adapter_bytes'] / 1e6:.1f} MB" if r.get("adapter_bytes") else "-",
                  f"{sum(c['passed'] for c in gate.values())}/{len(gate)}" if gate else "-",
                  f"{gate['heldout_kl']['value']:.4f}" if "heldout_kl" in gate else "-",
                  f"{sum(v or 0 for v in timings.values()):.0f} s" if timings else "-",
                  r.get("promoted") or r.get("created", ""))
    ui.out.print(t)
    return 0


def _plot(args, mind):
    from night import lineage
    from night.plot import lineage_points, plot_lineage
    loc = resolve(args.image)
    with open_image(loc, read_only=True) as img, img.view() as root:
        rows = lineage.rows(root, mind)
        nights = [dict(v) for v in (root[mind].lookup("nights", None) or {}).values()]
    points = lineage_points(rows, nights)
    if not points:
        raise ValueError(f"{mind} has no gated generation yet: run `batos dream` first")
    if args.out is None and not loc.persistent:
        raise ValueError("give --out PNG: a memory: image has no folder to hold the plot")
    out = plot_lineage(mind, points, args.out or local_dir(loc) / "reports" / f"lineage-{mind}.png")
    if args.json:
        ui.print_json({"mind": mind, "png": str(out), "generations": [p[0] for p in points]})
    else:
        ui.out.print(f"{mind}: {len(points)} gated generation(s) plotted to "
                     f"{ui.escape(str(out))}")
    return 0


class RichReporter:
    """The night on screen: one line per step, a bar for the long ones, timings."""

    def __init__(self, progress):
        self.progress, self.tasks = progress, {}

    def start(self, mind, step, total=None):
        self.tasks[(mind, step)] = self.progress.add_task(f"{mind}: {step}", total=total)

    def advance(self, mind, step, done, total=None):
        task = self.tasks.get((mind, step))
        if task is not None:
            self.progress.update(task, completed=done, total=total)

    def done(self, mind, step, seconds, summary=""):
        task = self.tasks.pop((mind, step), None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.console.print(f"  {mind:6} {step:10} {seconds:7.1f} s  "
                                    f"{ui.escape(summary)}")


def cmd_dream(args):
    from mindhost import store
    from night import dream
    wanted = minds.MINDS if args.mind == "both" else (args.mind,)
    loc = resolve(args.image)
    if args.dry_run:
        with open_image(loc, read_only=True) as img:
            plans = dream.dry_run(img, wanted)
        if args.json:
            ui.print_json(plans)
            return 0
        for p in plans:
            c = p["card"]
            ui.out.print(f"{p['mind']}: generation {p['generation']} would learn from "
                         f"{c['examples']} examples ({c['exchanges_seen']} exchanges seen; "
                         f"{c['counts']}); steps: {' -> '.join(p['steps'])}"
                         + (f"; resumes after {', '.join(p['done_before'])}"
                            if p["done_before"] else ""))
        ui.out.print("(dry run: nothing trained, nothing changed; `batos curate MIND "
                     "--dry-run` shows each exchange's score)")
        return 0
    if not loc.persistent:
        raise ValueError("`batos dream` needs an image that outlives it (a folder, or "
                         "postgresql://...): its night's record is kept there")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    with open_image(loc) as img:
        work = local_dir(loc) / "dream"      # this machine's scratch: sets, adapters
        models = store.default_store(loc)
        if args.json:
            results = dream.dream(img, wanted, store_dir=models, work_dir=work)
        else:
            with Progress(TextColumn("{task.description}"), BarColumn(),
                          TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                          console=ui.out, transient=True) as progress:
                results = dream.dream(img, wanted, store_dir=models, work_dir=work,
                                      reporter=RichReporter(progress))
    if args.json:
        ui.print_json(results)
        return 0
    for r in results:
        line = f"{r['mind']}: {r['outcome']}"
        if "generation" in r:
            line += f", generation {r['generation']}"
        failed = [c for c in r.get("gate") or [] if not c["passed"]]
        if failed:
            line += "; failed: " + "; ".join(
                f"{c['name']} {c['value']:.3g} (threshold {c['threshold']:.3g}, {c['detail']})"
                for c in failed)
        if r.get("reason"):
            line += f": {r['reason']}"
        ui.out.print(f"{ui.escape(line)} in {r['seconds']:.0f} s")
    stopped = [r for r in results if r["outcome"] in ("does not fit", "diverged", "refused")]
    return 1 if stopped else 0
