"""``batos memory ...`` and the console's ``:memory ...``: ingest, search, mount, stats, drop.

Each verb is ``do_VERB(img, args, out)``: the CLI opens the image and calls
it, the console calls it on its own image. Output is a table or text, or JSON
with ``--json``.
"""
import argparse
import datetime
import json
import sys

from . import ui

DEFAULT_MIND = "hermes"      # the owner talks to Hermes by default


def add_arguments(sub, verb):
    """Add the memory verbs to ``sub``; ``verb`` makes one (the CLI's, or the console's)."""
    p = verb("ingest", do_ingest, "add files and folders (.md .txt .rst .py .json .html) to a "
             "corpus; unchanged files are skipped, changed ones replaced", sub, json=True)
    p.add_argument("corpus", help="corpus name (created on first ingest)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", help="sentence-transformers folder for a new corpus "
                                   "(default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--mind", help="record the chunks as this mind's (default: shared)")
    p.add_argument("--budget", type=int, help="tokens per chunk for a new corpus (default 64)")
    p.add_argument("--max-bytes", type=int, default=None, help="skip larger files (default 5 MB)")
    p.add_argument("--prune", action="store_true",
                   help="also remove the chunks of the corpus's files that no longer exist on disk")

    p = verb("search", do_search, "search a mounted corpus (text, vector or hybrid)", sub, json=True)
    p.add_argument("corpus", help="corpus name, or 'mounted' for all the mind's mounts")
    p.add_argument("query", nargs="?", help="the query (or --queries FILE)")
    p.add_argument("--mode", choices=("text", "vector", "hybrid"), default="hybrid")
    p.add_argument("--k", type=int, default=10, help="results (default 10)")
    p.add_argument("--mind", default=DEFAULT_MIND, help=f"whose mounts (default {DEFAULT_MIND})")
    p.add_argument("--queries", metavar="FILE", help="one query per line; prints one JSON line "
                                                     "per query ('-' reads standard input)")
    p.add_argument("--from-mind", help="only chunks this mind ingested ('' for shared ones)")
    p.add_argument("--source-prefix", help="only chunks whose source path starts with this")
    p.add_argument("--since", type=_when, help="only chunks ingested at or after (ISO date or epoch)")
    p.add_argument("--until", type=_when, help="only chunks ingested before (ISO date or epoch)")
    p.add_argument("--min-resonance", type=float, help="only chunks with at least this resonance")

    for name, func, text in (("mount", do_mount, "mount a corpus for a mind (loads its vectors)"),
                             ("unmount", do_unmount, "unmount a corpus (frees its vectors)")):
        p = verb(name, func, text, sub, json=True)
        p.add_argument("corpus")
        p.add_argument("--mind", default=DEFAULT_MIND, help=f"default {DEFAULT_MIND}")
    p = verb("stats", do_stats, "counts, model and mounts of a corpus (or of all)", sub, json=True)
    p.add_argument("corpus", nargs="?")
    p = verb("drop", do_drop, "delete a corpus and its mounts", sub, json=True)
    p.add_argument("corpus")


def _when(text):
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use 2026-11-21 or epoch seconds)")


def cli(func):
    """Wrap ``do_VERB`` for the command line: open the image, then call it."""
    def run(args):
        from image import open_image, resolve
        from kernel.schema import bootstrap
        with open_image(resolve(args.image), create=True) as img:
            bootstrap(img)
            return func(img, args, ui.out)
    run.__name__ = func.__name__
    return run


def console_parser():
    """The memory verbs for the console's ``:memory`` (no --image: the console's own)."""
    parser = argparse.ArgumentParser(prog=":memory", add_help=True,
                                     description="The bifocal memory (same verbs as `batos memory`).")
    sub = parser.add_subparsers(dest="memory_command", metavar="VERB", required=True)

    def verb(name, func, help, parent, json=False):
        p = parent.add_parser(name, help=help, description=help)
        if json:
            p.add_argument("--json", action="store_true", help="print data as JSON")
        p.set_defaults(func=func)
        return p
    add_arguments(sub, verb)
    return parser


# -- behaviour ----------------------------------------------------------------
def do_ingest(img, args, out):
    from memory.ingest import MAX_BYTES, ingest
    show = not args.json and ui.err.is_terminal
    with _char_progress(f"ingest {args.corpus}", show) as progress:
        summary = ingest(img, args.corpus, args.paths, model=args.model, mind=args.mind,
                         budget=args.budget, max_bytes=args.max_bytes or MAX_BYTES,
                         progress=progress, prune=getattr(args, "prune", False))
    if args.json:
        ui.print_json(summary)
        return 0
    out.print(f"{ui.escape(summary['corpus'])}: {summary['added']} added, {summary['replaced']} "
              f"replaced, {summary['unchanged']} unchanged, {len(summary['skipped'])} skipped; "
              f"{summary['chunks_added']} chunks in, {summary['chunks_removed']} out"
              + (f", {summary['pruned']} missing file(s) pruned ({summary['chunks_pruned']} chunks)"
                 if summary["pruned"] else "") + f" ({summary['seconds']:.1f} s)")
    for s in summary["skipped"]:
        out.print(f"  skipped {ui.escape(s['path'])}: {ui.escape(s['reason'])}")
    return 0


def do_search(img, args, out):
    from memory.search import Filters, search
    if bool(args.query) == bool(args.queries):
        raise ValueError("give a QUERY or --queries FILE (one of them)")
    filters = Filters(mind=args.from_mind, source_prefix=args.source_prefix, since=args.since,
                      until=args.until, min_resonance=args.min_resonance)
    names = None if args.corpus == "mounted" else [args.corpus]

    def run(query):
        with img.view() as root:
            return [h.row() for h in search(img, root, query, corpora=names, mind=args.mind,
                                            mode=args.mode, k=args.k, filters=filters)]
    if args.queries:
        stream = sys.stdin if args.queries == "-" else open(args.queries, encoding="utf-8")
        with stream:
            for line in stream:
                query = line.strip()
                if query:
                    sys.stdout.write(json.dumps({"query": query, "results": run(query)}) + "\n")
                    sys.stdout.flush()
        return 0
    rows = run(args.query)
    if args.json:
        ui.print_json(rows)
        return 0
    if not rows:
        out.print("no results")
    for i, r in enumerate(rows, 1):
        where = f"{r['source']}[{r['start']}:{r['end']}]"
        per = " ".join(f"{m} {v:.3f}" for m, v in r["scores"].items())
        out.print(f"[bold]{i}.[/] {r['score']:.4f}  [cyan]{ui.escape(where)}[/]  [dim]{per}[/]")
        text = " ".join(r["text"].split())
        out.print(f"   {ui.escape(text[:300])}{'…' if len(text) > 300 else ''}")
    return 0


def do_mount(img, args, out):
    import time

    from memory.mount import mount
    t0 = time.perf_counter()
    loaded = mount(img, args.corpus, args.mind)
    seconds = time.perf_counter() - t0
    data = {"corpus": args.corpus, "mind": args.mind, "chunks": len(loaded),
            "bytes": loaded.nbytes, "seconds": round(seconds, 4)}
    if args.json:
        ui.print_json(data)
    else:
        out.print(f"{args.mind} mounted {ui.escape(args.corpus)}: {len(loaded):,} chunks, "
                  f"{loaded.nbytes / 1e6:.1f} MB in {seconds * 1000:.0f} ms")
    return 0


def do_unmount(img, args, out):
    from memory.mount import unmount
    removed = unmount(img, args.corpus, args.mind)
    if args.json:
        ui.print_json({"corpus": args.corpus, "mind": args.mind, "unmounted": removed})
    else:
        out.print(f"{args.mind} unmounted {ui.escape(args.corpus)}" if removed else
                  f"{ui.escape(args.corpus)} was not mounted for {args.mind}")
    return 0


def do_stats(img, args, out):
    from memory.corpus import corpora, get_corpus
    with img.view() as root:
        names = [args.corpus] if args.corpus else list(corpora(root).keys())
        rows = []
        for name in names:
            s = get_corpus(root, name).stats()
            s["mounted_by"] = sorted(m for m, held in root["memory"].mounts.items() if name in held)
            rows.append(s)
    if args.json:
        ui.print_json(rows[0] if args.corpus else rows)
        return 0
    if not rows:
        out.print("no corpora yet; create one with `batos memory ingest NAME PATH...`")
        return 0
    from rich.table import Table
    t = Table("corpus", "chunks", "sources", "words", "model", "dim", "mounted by")
    for s in rows:
        t.add_row(s["name"], f"{s['chunks']:,}", f"{s['sources']:,}", f"{s['words']:,}",
                  str(s["model"]), str(s["dim"]), ", ".join(s["mounted_by"]) or "-")
    out.print(t)
    return 0


def do_drop(img, args, out):
    from memory.ingest import drop
    drop(img, args.corpus)
    if args.json:
        ui.print_json({"corpus": args.corpus, "dropped": True})
    else:
        out.print(f"dropped {ui.escape(args.corpus)}")
    return 0


def _char_progress(description, enabled):
    import contextlib

    @contextlib.contextmanager
    def bar():
        if not enabled:
            yield None
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,.0f}/{task.total:,.0f} chars"),
                      TimeRemainingColumn(), console=ui.err, transient=True) as p:
            task = p.add_task(description, total=None)

            def advance(n, total):
                p.update(task, total=total)
                p.advance(task, n)
            yield advance
    return bar()
