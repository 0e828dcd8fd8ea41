"""The console's self-extension: the extender, ``:methods``, ``:revert``, ``:grant``, ``:untrust``.

Standalone, a message no object understands is answered here: the mind's
deployed runtime writes the method while a spinner says so. Attached to a
kernel, it becomes an ``extend`` mission; the console says its id and waits.
"""
import datetime
import linecache

from rich.markup import escape
from rich.table import Table

from kernel import extend
from prototypes import Method, UvmObject, capabilities
from prototypes.method import revert


class ConsoleExtension:
    def __init__(self, console):
        self.c = console

    @property
    def out(self):
        return self.c.out

    def extender(self):
        """What misses go to while an input runs (None: read-only, plain errors)."""
        if self.c.read_only:
            return None
        from kernel.runners import served
        if served(self.c.img):
            return extend.MissionExtender(self.c.img, on_submitted=self._submitted,
                                          on_state=self._state)
        return extend.Extender(self._ask, progress=self._progress)

    def remember_input(self, text):
        """So that a call site in this input shows its source line."""
        linecache.cache["<console>"] = (len(text), None, text.splitlines(True), "<console>")

    def _ask(self, root, mind, prompt, history, max_tokens):
        ask = extend.pool_asker(self.c.missions.local_pool())
        with self.out.status(f"{mind} is writing the method…"):
            return ask(root, mind, prompt, history, max_tokens)

    def _progress(self, event, **data):
        if event == "asking":
            self.out.print(f"[dim]{data['call']} is not understood: asking {data['mind']} for "
                           f"the method (answer {data['attempt']} of {data['of']})[/]")
        elif event == "rejected":
            self.out.print("[yellow]the guardians rejected it:[/] "
                           + escape("; ".join(data["reasons"])))
        elif event == "failed":
            self.out.print("[yellow]it failed on the re-sent call (undone; asking again):[/] "
                           + escape("; ".join(data["reasons"])))
        elif event == "installed":
            self.out.print(f"[green]installed[/] {escape(data['call'].split('(')[0])}; "
                           "re-sending the message")

    def _submitted(self, mid, message):
        self.out.print(f"[dim]{escape(extend.call_text(message))} is not understood: mission "
                       f"{mid} asks the kernel to write it; waiting (Ctrl-C stops waiting, "
                       "not the mission)[/]")

    def _state(self, state):
        self.out.print(f"[dim]  mission {escape(state)}[/]")

    # -- :methods and :revert ----------------------------------------------------
    def methods(self, rest):
        obj_expr, _, name = rest.strip().partition(" ")
        self.c.tm.begin()
        try:
            obj = self._object(obj_expr)
            if name.strip():
                self.versions(obj, name.strip())
            else:
                self.out.print(methods_table(obj))
        except Exception as e:
            self.c._error(e)
        finally:
            self.c.tm.abort()

    def versions(self, obj, name):
        method = obj.lookup(name, None)
        if not isinstance(method, Method):
            raise ValueError(f"{obj.short_name()} has no method {name!r}")
        for i, m in enumerate(method.versions()):
            p = m.provenance
            title = "current" if i == 0 else f"earlier version {i}"
            self.out.print(f"[bold]{escape(name)}[/] — {title}: {escape(describe(p))}; "
                           f"{escape(trust(m))}")
            for n, a in enumerate(p.get("attempts") or [], 1):
                verdict = "accepted" if a["accepted"] else "rejected: " + "; ".join(a["reasons"])
                if a.get("failure"):
                    verdict += ", then failed on the call: " + "; ".join(a["failure"])
                self.out.print(f"  answer {n}: {escape(verdict)}")
            if p.get("call"):
                self.out.print(f"  written for {escape(p['call'])}"
                               + (f" at {escape(p['site'])}" if p.get("site") else ""))
            self.out.print(escape(m.source.rstrip()), markup=False, highlight=False)

    def revert(self, rest):
        obj_expr, _, name = rest.strip().partition(" ")
        if not obj_expr or not name.strip():
            self.out.print("usage: :revert OBJ NAME")
            return False
        if self.c.read_only:
            self.out.print("[yellow]read-only console:[/] nothing can be reverted")
            return False
        self.c.tm.begin()
        try:
            restored = revert(self._object(obj_expr), name.strip())
            self.c.tm.commit()
        except Exception as e:
            self.c.tm.abort()
            self.c._error(e)
            return False
        if restored is None:
            self.out.print(f"removed {escape(obj_expr)}.{escape(name)}: it had no earlier version")
        else:
            self.out.print(f"[green]reverted[/] {escape(obj_expr)}.{escape(name)} to the version "
                           f"{escape(describe(restored.provenance))}")
        return True

    def grant(self, rest):
        """``:grant OBJ NAME KIND`` (``-KIND`` takes it back): recorded on the method's version."""
        parts = rest.split()
        if len(parts) != 3:
            self.out.print(f"usage: :grant OBJ NAME KIND (or -KIND to revoke); KIND is one of "
                           f"{', '.join(capabilities.KINDS)}")
            return False
        obj_expr, name, kind = parts
        return self._change(obj_expr, name, lambda obj: (
            capabilities.revoke(obj, name, kind[1:]) if kind.startswith("-")
            else capabilities.grant(obj, name, kind, by="owner (console)")),
            f"{'revoked' if kind.startswith('-') else 'granted'} {kind.lstrip('-')} to")

    def untrust(self, rest):
        """``:untrust OBJ NAME`` (``:untrust OBJ NAME off`` undoes it): run it isolated."""
        parts = rest.split()
        if len(parts) not in (2, 3):
            self.out.print("usage: :untrust OBJ NAME [off]")
            return False
        obj_expr, name, *off = parts

        def mark(obj):
            m = obj._slots.data.get(name)
            if not isinstance(m, Method):
                raise ValueError(f"{obj.short_name()} has no own method {name!r}")
            m.untrusted = not off
        return self._change(obj_expr, name, mark,
                            "trusted again:" if off else "marked untrusted (runs isolated):")

    def _change(self, obj_expr, name, change, verb):
        if self.c.read_only:
            self.out.print("[yellow]read-only console:[/] nothing can be changed")
            return False
        self.c.tm.begin()
        try:
            change(self._object(obj_expr))
            self.c.tm.commit()
        except Exception as e:
            self.c.tm.abort()
            self.c._error(e)
            return False
        self.out.print(f"[green]{escape(verb)}[/] {escape(obj_expr)}.{escape(name)}")
        return True

    def _object(self, expr):
        obj = self.c._eval(expr)
        if not isinstance(obj, UvmObject):
            raise TypeError(f"{expr} is a {type(obj).__name__}, not a prototype")
        return obj


def describe(p) -> str:
    when = datetime.datetime.fromtimestamp(p.get("installed", 0)).strftime("%Y-%m-%d %H:%M")
    who = p.get("author", "?")
    if who == "mind":
        who = f"{p.get('mind')} (generation {p.get('generation')})"
        if p.get("mission"):
            who += f", mission {p['mission']}"
    return f"by {who}, {when}"


def trust(m) -> str:
    """How a method runs, and what it was granted."""
    how = "isolated" if m.isolated else "in process"
    grants = capabilities.grants(m)
    if not grants:
        return how + (", no grants" if m.isolated else "")
    return how + ", grants: " + ", ".join(f"{k} (by {g['by']})" for k, g in grants.items())


def methods_table(obj) -> Table:
    t = Table(title=f"methods of {obj.short_name()}", title_justify="left")
    for col in ("method", "from", "versions", "written", "runs", "answers", "first line"):
        t.add_column(col, overflow="fold")
    for name in obj.all_slot_names():
        m = obj.lookup(name)
        if not isinstance(m, Method):
            continue
        holder = obj.holder_of(name)
        attempts = m.provenance.get("attempts") or []
        t.add_row(escape(name), "own" if holder is obj else escape(holder.short_name()),
                  str(len(m.versions())), escape(describe(m.provenance)), escape(trust(m)),
                  str(len(attempts)) if attempts else "-",
                  escape(m.source.strip().splitlines()[0][:60]))
    return t
