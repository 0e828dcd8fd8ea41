"""The image console: a REPL bound to the live image.

Each input runs in its own transaction: committed when it succeeds, aborted
(leaving the image as it was) when it raises. ``:commands`` do what plain
Python would make tedious; ``:help`` lists them.
"""
import codeop
import os
import re
import traceback
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from kernel.schema import well_known
from prototypes import Method, UvmObject, extension
from prototypes.display import short_repr

from . import ui

HELP = """\
Python runs against the live image; `root` and the well-known prototypes
(traits, mind, orai, hermes, state, states, memory, lineage) are bound.
Every input is one transaction: committed on success, aborted on error.
A message no object understands (`calc.double(21)`) asks Hermes to write the
method; the guardians vet it, it is installed and the call is re-sent
(off: `extension.enabled = False`, or `OBJ.extensible = False`).

  :inspect OBJ          slots (own and inherited) and parents of OBJ
  :define OBJ NAME      type a method (a whole `def`, or just its body), end
                        with an empty line; it is vetted by the guardians
  :snapshot NAME        take a named snapshot of the image
  :memory VERB ...      the memory verbs of `batos memory`: ingest, search,
                        mount, unmount, stats, drop (`:memory --help`)
  :ask MIND TEXT        send TEXT straight to orai's or hermes's model (no mission)
  :notebook MIND [+ LINE | = TEXT]  read MIND's notebook, add a line, or replace it
                        (the owner's edit wins; over its token cap it is refused)
  :context MIND TEXT    what a chat mission for TEXT would send to MIND's model
  :send MIND TEXT       a mission for hermes (the majordomo, may hand it to orai)
                        or orai; runs through the PSM, streams, lands in the ledger
  :missions [N]         the last N missions and their states
  :methods OBJ [NAME]   OBJ's methods with who wrote them; with NAME, every
                        version's source, prompt answers and guardian verdicts
  :revert OBJ NAME      restore the previous version of OBJ's method NAME
  :grant OBJ NAME KIND  let OBJ's untrusted method NAME also write KIND: parents,
                        methods, limits, others or well-known (-KIND takes it back)
  :untrust OBJ NAME [off]  run OBJ's method NAME isolated, as if a mind wrote it
  :rate N GOOD|BAD [note]  the owner's verdict on exchange N (numbered by :send)
  :help                 this text
  :quit                 leave (also Ctrl-D)
"""
COMMANDS = (":inspect", ":define", ":snapshot", ":memory", ":ask", ":notebook", ":context",
            ":send", ":missions",
            ":rate", ":methods", ":revert", ":grant", ":untrust", ":help", ":quit")


def history_path():
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(os.environ.get("BATOS_HISTORY") or Path(base) / "batos" / "console_history")


class Console:
    def __init__(self, img, *, at=None, out=None):
        self.img = img
        self.read_only = img.read_only or at is not None
        self.conn = img.open(at=at)
        self.tm = self.conn.transaction_manager
        self.out = out or ui.out
        self.tm.begin()
        root = self.conn.root()
        self.namespace = {"root": root, "img": img, "UvmObject": UvmObject, "Method": Method,
                          **well_known(root)}
        self.tm.abort()
        from .console_methods import ConsoleExtension
        from .console_missions import Missions
        self.missions = Missions(self)
        self.extension = ConsoleExtension(self)

    # -- behaviour (testable without a terminal) ------------------------------
    def execute(self, text):
        """Run one input (Python or a :command) in its own transaction."""
        text = text.rstrip()
        if not text.strip():
            return None
        if text.lstrip().startswith(":"):
            return self._command(text.strip())
        self.tm.begin()
        try:
            result = self._run_python(text)
            if self.read_only:
                self.tm.abort()
            else:
                self.tm.commit()
        except BaseException as e:   # SystemExit/KeyboardInterrupt in user code too
            self.tm.abort()
            self._error(e)
            return None
        if result is not None:
            self.namespace["_"] = result
            self.out.print(result if isinstance(result, str) else repr(result), markup=False,
                           highlight=False)
        return result

    def _run_python(self, text):
        self.extension.remember_input(text)
        with extension.using(self.extension.extender()):
            try:
                code = compile(text, "<console>", "eval")
            except SyntaxError:
                exec(compile(text, "<console>", "exec"), self.namespace)
                return None
            return eval(code, self.namespace)

    def _error(self, e):
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"line {f.lineno}: " for f in reversed(tb) if f.filename == "<console>"), "")
        self.out.print(f"[red]{type(e).__name__}:[/] {escape(where + str(e))}  "
                       "[dim](transaction aborted; nothing was written)[/]")

    def _command(self, text):
        cmd, _, rest = text.partition(" ")
        rest = rest.strip()
        if cmd in (":quit", ":q", ":exit"):
            raise EOFError
        if cmd == ":help":
            self.out.print(HELP, markup=False)
        elif cmd == ":inspect":
            self.tm.begin()
            try:
                self.inspect(self._eval(rest))
            except Exception as e:
                self._error(e)
            finally:
                self.tm.abort()
        elif cmd == ":define":
            obj_expr, _, name = rest.rpartition(" ")
            if not obj_expr or not name:
                self.out.print("usage: :define OBJ NAME, then the method, then an empty line")
                return None
            return ("define", obj_expr, name)
        elif cmd == ":snapshot":
            self.snapshot(rest)
        elif cmd == ":memory":
            self.memory(rest)
        elif cmd == ":ask":
            self.ask(rest)
        elif cmd in (":notebook", ":context"):
            try:
                getattr(self, cmd[1:])(rest)
            except Exception as e:
                self._error(e)
        elif cmd == ":methods":
            self.extension.methods(rest)
        elif cmd == ":revert":
            self.extension.revert(rest)
        elif cmd == ":grant":
            self.extension.grant(rest)
        elif cmd == ":untrust":
            self.extension.untrust(rest)
        elif cmd in (":send", ":missions", ":rate"):
            try:
                return getattr(self.missions, cmd[1:])(rest)
            except Exception as e:
                self._error(e)
        else:
            self.out.print(f"unknown command {escape(cmd)}; try :help")
        return None

    def _eval(self, expr):
        if not expr:
            raise ValueError("name an object, e.g. :inspect orai")
        return eval(compile(expr, "<console>", "eval"), self.namespace)

    def inspect(self, obj):
        if not isinstance(obj, UvmObject):
            self.out.print(f"{escape(repr(obj))} is a {type(obj).__name__}, not a prototype")
            return
        t = Table(title=f"{obj.short_name()}", title_justify="left")
        t.add_column("slot")
        t.add_column("value", overflow="fold", max_width=70)
        t.add_column("from")
        for name in obj.all_slot_names():
            holder = obj.holder_of(name)
            value = obj.lookup(name)
            shown = short_repr(value)
            t.add_row(escape(name), escape(shown[:300]),
                      "own" if holder is obj else escape(holder.short_name()))
        self.out.print(t)
        chain = " -> ".join(o.short_name() for o in obj.lookup_chain())
        self.out.print(f"lookup chain: {escape(chain)}")

    def define(self, obj_expr, name, source):
        """Vet and install a method; one transaction."""
        if not source.lstrip().startswith("def "):
            body = "\n".join("    " + line for line in source.splitlines())
            source = f"def {name}(self):\n{body}\n"
        if self.read_only:
            self.out.print("[red]read-only image:[/] nothing can be defined")
            return False
        self.tm.begin()
        try:
            obj = self._eval(obj_expr)
            if not isinstance(obj, UvmObject):
                raise TypeError(f"{obj_expr} is a {type(obj).__name__}, not a prototype")
            obj.define(name, source, provenance={"author": "console"})
            self.tm.commit()
        except Exception as e:
            self.tm.abort()
            self._error(e)
            return False
        self.out.print(f"[green]installed[/] {escape(obj_expr)}.{escape(name)}")
        return True

    def snapshot(self, name):
        from image.snapshot import create_snapshot
        try:
            s = create_snapshot(self.img.location, name)
        except Exception as e:
            self._error(e)
            return
        m = s.manifest
        self.out.print(f"snapshot [bold]{escape(s.name)}[/] at tid {m['tid']}: "
                       f"{m['objects']} objects, {m['blobs']} blobs")

    def ask(self, rest):
        """``:ask MIND TEXT``: one prompt to a mind's deployed runtime, streamed."""
        from .mind_cmd import ask
        mind, _, prompt = rest.partition(" ")
        if not prompt.strip():
            self.out.print("usage: :ask orai|hermes TEXT")
            return
        gen = ask(self.img, mind, prompt.strip())
        try:
            while True:
                self.out.print(next(gen), end="", markup=False, highlight=False)
        except StopIteration as done:
            st = done.value
            self.out.print(f"\n[dim]{st['tokens']} tokens at {st['tokens_per_s']:.1f} tok/s[/]")
        except Exception as e:
            self._error(e)

    def notebook(self, rest):
        """``:notebook MIND [+ LINE | = TEXT]``: read, add to or replace a mind's notebook."""
        from memory import notebook

        from .context_cmd import count_tokens, edit_notebook
        mind, _, edit = rest.partition(" ")
        edit = edit.strip()
        if edit[:1] in ("+", "="):
            if self.read_only:
                self.out.print("[yellow]read-only console:[/] the notebook can only be read")
                return
            n = edit_notebook(self.img, mind, edit[1:].strip(), count_tokens(self.img, mind),
                              add=edit[0] == "+")
            self.out.print(f"{mind}'s notebook: version {n}")
            return
        with self.img.view() as root:
            text, version = notebook.text_of(root, mind)
        self.out.print(f"[dim]{escape(mind)}'s notebook, version {version}:[/]")
        self.out.print(escape(text) or "[dim](empty)[/]")

    def context(self, rest):
        """``:context MIND TEXT``: the messages a chat mission for TEXT would send."""
        from .context_cmd import context_rows
        mind, _, request = rest.partition(" ")
        if not request.strip():
            self.out.print("usage: :context orai|hermes TEXT")
            return
        row, = context_rows(self.img, mind, [request.strip()])
        for m in row["messages"]:
            self.out.print(f"[bold]{m['role']}[/]: {escape(m['content'])}")
        self.out.print(f"[dim]{row['tokens']} tokens; parts: "
                       + ", ".join(p["kind"] for p in row["parts"]) + "[/]")

    def memory(self, rest):
        """``:memory VERB ARGS``: the same verbs and options as ``batos memory``."""
        import shlex

        from .memory_cmd import console_parser
        parser = console_parser()
        try:
            args = parser.parse_args(shlex.split(rest) or ["--help"])
        except SystemExit:           # argparse printed help or a usage error
            return
        except ValueError as e:
            self._error(e)
            return
        if self.read_only and args.func.__name__ not in ("do_search", "do_stats"):
            self.out.print("[yellow]read-only console:[/] only search and stats")
            return
        try:
            args.func(self.img, args, self.out)
        except Exception as e:
            self._error(e)

    # -- protocol: the terminal loop ------------------------------------------
    def run(self):
        reader = _Reader(self)
        self.out.print(f"[bold]BAT OS[/] console on {escape(str(self.img.location))}"
                       + (" [yellow](read-only)[/]" if self.read_only else "")
                       + " — :help for commands, Ctrl-D to leave")
        try:
            while True:
                try:
                    text = reader.read("batos> ")
                except KeyboardInterrupt:
                    continue
                if text.strip().startswith(":"):
                    r = self.execute(text)
                    if isinstance(r, tuple) and r[0] == "define":
                        self.define(r[1], r[2], reader.read_block())
                    continue
                while _incomplete(text):
                    text += "\n" + reader.read("...    ")
                self.execute(text)
        except EOFError:
            self.out.print("bye")
        finally:
            self.close()
        return 0

    def close(self):
        from image.image import in_transaction
        if in_transaction(self.tm):
            self.tm.abort()
        self.conn.close()


def _incomplete(text):
    """True while the input needs more lines (a block, an open bracket)."""
    try:
        return codeop.compile_command(text, "<console>", "exec") is None
    except (SyntaxError, ValueError, OverflowError):
        return False      # complete but wrong: execute() reports it


class _Reader:
    """prompt_toolkit on a terminal (history, completion); plain input() otherwise."""

    def __init__(self, console):
        import sys
        self.session = None
        if sys.stdin.isatty() and sys.stdout.isatty():
            from prompt_toolkit import PromptSession
            from prompt_toolkit.history import FileHistory
            path = history_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.session = PromptSession(history=FileHistory(str(path)),
                                         completer=SlotCompleter(console),
                                         complete_while_typing=False)

    def read(self, prompt):
        if self.session is not None:
            return self.session.prompt(prompt)
        return input(prompt)

    def read_block(self):
        lines = []
        while True:
            line = self.read("...    ")
            if not line.strip():
                return "\n".join(lines) + "\n"
            lines.append(line)


_DOTTED = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.(\w*)$")
_WORD = re.compile(r"(:?\w*)$")


class SlotCompleter:
    """Completes names, slot names after a dot, and :commands."""

    def __init__(self, console):
        self.console = console

    def get_completions(self, document, complete_event):
        from prompt_toolkit.completion import Completion
        for text, start in self.candidates(document.text_before_cursor):
            yield Completion(text, start_position=start)

    async def get_completions_async(self, document, complete_event):
        for c in self.get_completions(document, complete_event):
            yield c

    def candidates(self, before):
        m = _DOTTED.search(before)
        if m:
            base, part = m.groups()
            names = self._attributes(base)
            return [(n, -len(part)) for n in names if n.startswith(part)]
        m = _WORD.search(before)
        part = m.group(1) if m else ""
        pool = list(COMMANDS) if part.startswith(":") else list(self.console.namespace)
        return [(n, -len(part)) for n in sorted(pool) if n.startswith(part) and not n.startswith("_")]

    def _attributes(self, base):
        c = self.console
        c.tm.begin()
        try:
            obj = c.namespace.get(base.split(".")[0])
            for part in base.split(".")[1:]:
                obj = getattr(obj, part)
            if isinstance(obj, UvmObject):
                api = [n for n in dir(UvmObject) if not n.startswith("_")]
                return obj.all_slot_names() + api
            return [n for n in dir(obj) if not n.startswith("_")]
        except Exception:   # completion must never break the prompt
            return []
        finally:
            c.tm.abort()
