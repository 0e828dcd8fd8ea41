"""``batos curate`` and ``batos ledger import|show``: the night's inputs, by hand."""
from pathlib import Path

from image import open_image, resolve

from . import minds, ui


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
    p = verb("lineage", cmd_lineage, "a mind's generations (parent, master, runtime, "
             "adapter, gate, what serves); `batos lineage rollback MIND` serves the previous "
             "generation again", sub, json=True)
    p.add_argument("words", nargs="+", metavar="ARG", help="MIND, or: rollback MIND")
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
    from .night.curate import curate, write_dataset
    loc = resolve(args.image)
    with open_image(loc, read_only=True) as img, img.view() as root:
        cur = curate(root, args.mind, since=args.since)
    out = None
    if not args.dry_run:
        if not cur.examples:
            raise ValueError(f"nothing in {args.mind}'s ledger resonated since the last "
                             "curation (see `batos curate --dry-run`); no set was written")
        if args.out is None and loc.kind != "folder":
            raise ValueError("give --out DIR: this image has no folder to hold the set")
        folder = Path(args.out) if args.out else (
            loc.path / "dream" / args.mind / f"gen-{cur.generation}")
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

    from .night.transcripts import import_transcripts
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
    from .night import lineage
    action, mind = ("rollback", args.words[1]) if args.words[0] == "rollback" and len(
        args.words) == 2 else ("show", args.words[0])
    if len(args.words) > (2 if action == "rollback" else 1):
        raise ValueError("usage: batos lineage MIND | batos lineage rollback MIND")
    minds.check_mind(mind)
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
    t = Table("gen", "parent", "serving", "engine", "precision", "adapter", "gate", "when")
    for r in rows:
        gate = r.get("gate") or []
        t.add_row(str(r["generation"]), str(r.get("parent", "-")),
                  "[green]yes[/]" if r["serving"] else "", r.get("engine", "-"),
                  r.get("precision", "-"),
                  f"{r['adapter_bytes'] / 1e6:.1f} MB" if r.get("adapter_bytes") else "-",
                  f"{sum(c['passed'] for c in gate)}/{len(gate)}" if gate else "-",
                  r.get("promoted") or r.get("created", ""))
    ui.out.print(t)
    return 0
