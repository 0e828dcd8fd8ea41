"""``batos context``, ``batos mind notebook`` and ``batos ledger prune``: what a mind sees
of its past, its notebook, and forgetting."""
import json
import sys
import time
from pathlib import Path

from image import open_image, resolve
from mindhost import minds

from . import ui


def add_context_arguments(p):
    p.add_argument("mind", choices=minds.MINDS)
    p.add_argument("request", nargs="*", help="the request (words joined with spaces)")
    p.add_argument("--queries", type=Path, metavar="FILE",
                   help="one request a line; with --json, one JSON object a line")
    p.add_argument("--now", metavar="TIME", help="the time the request is asked (ISO 8601 "
                   "or epoch seconds; default now): 'yesterday' and dates without a year "
                   "are read from it")


def context_rows(img, mind, requests, now=None):
    """One plain dict per request: the messages a chat mission would send, and their parts."""
    from kernel.context import show
    from mindhost.pool import ModelPool
    pool = ModelPool()
    out = []
    with img.view() as root:
        for request in requests:
            asm, g = show(img, root, mind, request, pool=pool, now=now)
            out.append({"mind": mind, "request": request, "messages": asm.messages,
                        "tokens": asm.tokens, "parts": _parts(asm, g),
                        "notebook_version": g.notebook_version})
    return out


def _parts(asm, g):
    """Each part of the context with its source and size in characters."""
    recalled = {p.key: p for p in g.recalled}
    rows = []
    for part in asm.parts:
        row = dict(part)
        if part["kind"] == "notebook":
            row.update(version=g.notebook_version, chars=len(g.notebook))
        elif part["kind"] == "recall":
            row["chars"] = len(recalled[part["key"]].line())
        rows.append(row)
    return rows


def cmd_context(args):
    from night.transcripts import _when
    if args.queries:
        requests = [ln.strip() for ln in args.queries.read_text(encoding="utf-8").splitlines()
                    if ln.strip()]
    else:
        requests = [" ".join(args.request)] if args.request else []
    if not requests:
        raise ValueError("give a request, or --queries FILE with one request a line")
    now = _when(args.now) if args.now else None
    with open_image(resolve(args.image), read_only=True) as img:
        rows = context_rows(img, args.mind, requests, now)
    for row in rows:
        if args.json:
            sys.stdout.write(json.dumps(row) + "\n")
            continue
        ui.out.rule(f"{args.mind}: {ui.escape(row['request'][:60])} ({row['tokens']} tokens)")
        for m in row["messages"]:
            ui.out.print(f"[bold]{m['role']}[/]: {ui.escape(m['content'])}")
        kinds = {}
        for p in row["parts"]:
            kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
        ui.out.print("[dim]parts: " + (", ".join(f"{k} {n}" for k, n in kinds.items()) or "none")
                     + "[/]")
    return 0


# -- the notebook ---------------------------------------------------------------------------
def add_notebook_arguments(p):
    p.add_argument("mind", choices=minds.MINDS)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--set", metavar="TEXT", help="replace the notebook with TEXT (the owner's "
                   "edit: it wins over what the mind wrote)")
    g.add_argument("--file", type=Path, help="replace the notebook with this file's text")
    g.add_argument("--add", metavar="LINE", help="add one line")
    g.add_argument("--history", action="store_true", help="every version, and the notes "
                   "refused for the cap")


def count_tokens(img, mind):
    """Tokens of a text in ``mind``'s own tokenizer (its runtime's)."""
    from mindhost.pool import ModelPool
    pool = ModelPool()
    with img.view() as root:
        info = pool.describe(root, mind)

    def count(text):
        with pool.lease(info) as model:
            return model.count_tokens(text)
    return count


def edit_notebook(img, mind, text, count, *, add=False) -> int:
    """The owner's edit: the new version's number. Over the cap raises NotebookFull."""
    from memory import notebook
    from mindhost.settings import recall_of
    with img.view() as root:
        current, _ = notebook.text_of(root, mind)
    new = notebook.with_note(current, text) if add else text
    tokens = count(new)

    def write(root):
        cap = recall_of(root[mind]).notebook_tokens
        return notebook.write(root, mind, new, by="owner", tokens=tokens, cap=cap,
                              why="edited by the owner")
    return img.run(write, note=f"{mind}: notebook edited by the owner")


def cmd_notebook(args):
    from memory import notebook
    minds.check_mind(args.mind)
    text = args.set if args.set is not None else (
        args.file.read_text(encoding="utf-8") if args.file else args.add)
    with open_image(resolve(args.image), read_only=text is None) as img:
        if text is not None:
            n = edit_notebook(img, args.mind, text, count_tokens(img, args.mind),
                              add=args.add is not None)
            ui.out.print(f"{args.mind}'s notebook: version {n}")
            return 0
        with img.view() as root:
            nb = notebook.get(root, args.mind)
            data = {"mind": args.mind, "text": nb.text if nb else "",
                    "version": nb.version if nb else 0,
                    "versions": nb.history() if nb else [],
                    "refused": [dict(r) for r in nb.refused] if nb else []}
    if args.json:
        ui.print_json(data)
    elif args.history:
        for v in data["versions"]:
            ui.out.rule(f"version {v['version']}: {v['by']}, {_ago(v['time'])}"
                        + (f", exchange {v['exchange']}" if v["exchange"] else ""))
            ui.out.print(ui.escape(v["text"]))
        for r in data["refused"]:
            ui.out.print(f"[yellow]refused[/]: {ui.escape(r['note'])} ({ui.escape(r['why'])})")
    else:
        ui.out.print(ui.escape(data["text"]) or f"[dim]{args.mind}'s notebook is empty; add a "
                     f"line with `batos mind notebook {args.mind} --add TEXT`[/]")
    return 0


def _ago(when):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(when))


# -- forgetting -------------------------------------------------------------------------------
def add_reindex_arguments(p):
    p.add_argument("mind", choices=minds.MINDS)


def cmd_reindex(args):
    from memory.recall import reindex
    with open_image(resolve(args.image)) as img, ui.status(
            f"{args.mind}: indexing its ledger for recall", not args.json):
        n = reindex(img, args.mind)
    if args.json:
        ui.print_json({"mind": args.mind, "indexed": n})
    else:
        ui.out.print(f"{args.mind}: {n} exchanges indexed for recall")
    return 0


def add_prune_arguments(p):
    p.add_argument("mind", choices=minds.MINDS)
    p.add_argument("--older-than", type=float, metavar="DAYS",
                   help="forget exchanges that happened more than DAYS days ago")
    p.add_argument("--rating", choices=("bad", "good"), help="forget exchanges rated so")
    p.add_argument("--forget-good", action="store_true", help="with --older-than, forget "
                   "old exchanges rated good too (kept by default)")
    p.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")


def cmd_prune(args):
    from memory.ledger import prune
    if args.older_than is None and args.rating is None:
        raise ValueError("say what to forget: --older-than DAYS, --rating bad, or both")
    before = time.time() - args.older_than * 86400 if args.older_than is not None else None

    def run(root):
        return len(prune(root, args.mind, before=before, rating=args.rating,
                         keep_rated=not args.forget_good))
    with open_image(resolve(args.image)) as img:
        if args.dry_run:
            with img.view() as root:          # a view is aborted at its end: nothing changes
                n = run(root)
        else:
            n = img.run(run, note=f"{args.mind}: ledger pruned")
    if args.json:
        ui.print_json({"mind": args.mind, "forgotten": n, "dry_run": args.dry_run})
    else:
        ui.out.print(f"{args.mind}: {n} exchanges {'would be ' if args.dry_run else ''}forgotten")
    return 0
