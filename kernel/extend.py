"""Self-extension: a message nobody understands becomes a method a mind writes.

``extend(message, ask)``: build the prompt from the image's ``extension``
prototype (the receiver's slots and methods, the guardians' rules, examples),
ask the mind (Hermes by default), pull the method out of its answer, vet it
with both guardians, and on rejection send the reasons back for a bounded
number of rewrites. The accepted method is installed as a slot of the
receiver, with its provenance, and the original message is re-sent.

The install and the re-sent call are one unit inside the caller's
transaction (the console's input, a mission's cycle): they commit together,
and if the re-sent call fails both are rolled back. A rejected or failing
method leaves the image as it was and the caller gets ``ExtensionFailed``
with the last reasons.

Two hosts: ``Extender`` asks a model here (the standalone console, tests,
the kernel's own code); ``MissionExtender`` queues an ``extend`` mission
for the kernel and waits for it (a console attached over ZEO), and
``submit``/``wait`` do the same for any other caller.
"""
import ast
import dataclasses
import logging
import re
import textwrap
import time

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from zope.interface import implementer

from mindhost.minds import MINDS
from prototypes import ExtensionFailed, Method, UvmObject
from prototypes import settings as st
from prototypes.display import short_repr
from prototypes.extension import DEFAULTS, EXAMPLES, PROMPT, RETRY, RULES
from prototypes.interfaces import IExtender
from prototypes.method import BoundMethod, install, savepoint_of, undo_to
from prototypes.persist import plain

log = logging.getLogger("batos.extend")


# -- settings ------------------------------------------------------------------
def _prototype(receiver):
    """``root['extension']`` of ``receiver``'s image (None outside one)."""
    jar = receiver._p_jar
    proto = jar.root().get("extension") if jar is not None else None
    return proto if isinstance(proto, UvmObject) else None


@dataclasses.dataclass(frozen=True)
class ExtensionSettings:
    """The ``extension`` prototype's slots: who writes a missing method, and what it is told."""
    enabled: bool = DEFAULTS["enabled"]           # off: every miss is a plain DoesNotUnderstand
    mind: str = st.choice(DEFAULTS["mind"], MINDS)
    retries: int = st.number(DEFAULTS["retries"], min=0)   # rewrites after a rejection
    max_tokens: int = st.number(DEFAULTS["max_tokens"], min=1)
    prompt: str = PROMPT
    retry: str = RETRY
    rules: str = RULES
    examples: tuple[str, ...] = st.listing(EXAMPLES)


def settings_of(receiver) -> dict:
    """The ``extension`` prototype's settings for ``receiver``'s image (defaults outside one)."""
    proto = _prototype(receiver)
    data = {}
    if proto is not None:
        for f in dataclasses.fields(ExtensionSettings):
            value = proto.lookup(f.name, None)
            if value is not None:
                data[f.name] = list(value) if f.name == "examples" else value
    return check_settings(data)


def check_settings(data) -> dict:
    """Refuse settings a person mistyped in the image, saying which and what is expected."""
    return st.plain(st.check(ExtensionSettings, data, where="root['extension']"))


def accepts(receiver, selector) -> bool:
    """Self-extension is on for this message: in the image, for the object, and not from method code."""
    from guardians import limits
    if limits.current() is not None:        # method code runs on a budget a mind would blow
        return False
    if not receiver.lookup("extensible", True):
        return False
    proto = _prototype(receiver)     # asked on every miss: read only the switch
    return bool(proto.lookup("enabled", True) if proto is not None else DEFAULTS["enabled"])


# -- the prompt and the answer -------------------------------------------------
def _short(value, width=80):
    text = short_repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def call_text(message) -> str:
    parts = [repr(a) for a in message.args] + [f"{k}={v!r}" for k, v in message.kwargs.items()]
    return f"{message.receiver.short_name()}.{message.selector}({', '.join(parts)})"


def signature(message) -> str:
    names = ["self"] + [f"arg{i + 1}" for i in range(len(message.args))] + list(message.kwargs)
    return ", ".join(names)


def build_prompt(message, settings) -> str:
    obj = message.receiver
    slots, methods = [], []
    for name in obj.all_slot_names():
        if name.endswith("*"):
            continue
        value = obj.lookup(name)
        if isinstance(value, Method):
            methods.append(textwrap.indent(value.source.strip(), "    "))
        else:
            slots.append(f"- {name} = {_short(value)}")
    parents = ", ".join(p.short_name() for p in obj.lookup_chain()[1:]) or "nothing"
    try:
        return _fill(settings["prompt"], message, slots, methods, parents, settings)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"root['extension'].prompt cannot be filled in ({type(e).__name__}: "
                         f"{e}); its fields are {{receiver}}, {{selector}}, {{call}}, "
                         "{signature}, {slots}, {methods}, {parents}, {site}, {rules}, "
                         "{examples}; write other braces doubled") from None


def _fill(template, message, slots, methods, parents, settings):
    obj = message.receiver
    return template.format(
        receiver=obj.short_name(), selector=message.selector, call=call_text(message),
        signature=signature(message), slots="\n".join(slots) or "(none)",
        methods="\n\n".join(methods) or "(none)", parents=parents,
        site=f"Called from: {message.site}\n" if message.site else "",
        rules=settings["rules"].replace("SELECTOR", message.selector),
        examples="\n".join(f"```python\n{e.strip()}\n```" for e in settings["examples"]))


_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract(answer, selector):
    """``(source, None)``: the code in the answer that defines ``selector``; ``(None, why)`` if none.

    Nothing is cut out of the code itself (a decorator, a second function or
    module code stays, for the guardians to refuse): a fenced block is taken
    whole; unfenced, from the ``def`` (and any decorator above it) to the end,
    less trailing prose that is not Python.
    """
    text = answer or ""
    start = re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(selector)}[ \t]*\(", re.MULTILINE)
    for block in _FENCE.findall(text):
        if start.search(block):
            return textwrap.dedent(block).strip("\n") + "\n", None
    m = start.search(text)
    if m is None:
        return None, f"the answer has no `def {selector}(self, ...)`"
    lines = text[:m.start()].splitlines()
    above = 0
    while above < len(lines) and lines[len(lines) - 1 - above].lstrip().startswith("@"):
        above += 1
    code = (lines[len(lines) - above:] if above else []) + text[m.start():].splitlines()
    for end in range(len(code), max(len(code) - 40, 1) - 1, -1):
        candidate = textwrap.dedent("\n".join(code[:end])).rstrip() + "\n"
        try:
            ast.parse(candidate)
            return candidate, None
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return textwrap.dedent("\n".join(code)).rstrip() + "\n", None    # the guardians say why


# -- the work ------------------------------------------------------------------
class Writer:
    """The conversation with the mind about one message: each answer, its verdict, the retries.

    ``next_method()`` asks until the guardians accept an answer; ``failed(why)``
    tells the mind its accepted method failed on the re-sent call, so the
    next answer can fix it. Both kinds of failure share the same bounded
    number of answers (``retries`` + 1).
    """

    def __init__(self, message, ask, settings, progress=None):
        self.message, self.ask, self.settings = message, ask, settings
        self.progress = progress or _quiet
        self.mind = settings["mind"]
        self.tries = int(settings["retries"]) + 1
        self.prompt = self.request = build_prompt(message, settings)
        self.history, self.attempts = [], []
        self.started = time.perf_counter()

    def _retry(self, reasons):
        m = self.message
        self.history += [{"role": "user", "content": self.request},
                         {"role": "assistant", "content": self.attempts[-1]["answer"]}]
        self.request = self.settings["retry"].format(
            reasons="\n".join(f"- {r}" for r in reasons), selector=m.selector,
            signature=signature(m))

    def next_method(self):
        """``(source, provenance)`` of the next accepted answer, or ExtensionFailed."""
        from guardians import Reason, vet
        obj, selector = self.message.receiver, self.message.selector
        root = obj._p_jar.root() if obj._p_jar is not None else None
        while len(self.attempts) < self.tries:
            n = len(self.attempts) + 1
            self.progress("asking", mind=self.mind, call=call_text(self.message), attempt=n,
                          of=self.tries)
            answer, info = self.ask(root, self.mind, self.request, list(self.history),
                                    int(self.settings["max_tokens"]))
            source, why = extract(answer, selector)
            reasons = ([Reason("no-method", None, why)] if source is None
                       else vet(source, receiver=obj, name=selector).reasons)
            reasons = [str(r) for r in reasons]
            self.attempts.append({"answer": answer, "source": source, "accepted": not reasons,
                                  "reasons": reasons})
            if not reasons:
                self.progress("accepted", attempt=n, source=source)
                return source, {
                    "author": "mind", "mind": self.mind, "generation": info.get("generation"),
                    "model": info.get("model"), "prompt": self.prompt, "answer": answer,
                    "attempts": [dict(a) for a in self.attempts],
                    "call": call_text(self.message),
                    "site": self.message.site,
                    "seconds": round(time.perf_counter() - self.started, 2)}
            self.progress("rejected", attempt=n, reasons=reasons)
            log.warning("extension: %s's answer %d for %s rejected", self.mind, n, selector,
                        extra={"event": "extension_rejected", "selector": selector,
                               "attempt": n, "reasons": reasons})
            self._retry(reasons)
        last = self.attempts[-1]
        what = ("the guardians rejected all" if not last["accepted"]
                else "the last accepted method failed on the re-sent call; all")
        raise ExtensionFailed(
            f"{self.mind} could not write {call_text(self.message)}: {what} {self.tries} answers "
            "were used; the image is unchanged. The last reasons:",
            selector=selector, reasons=last["reasons"] or last.get("failure", []),
            attempts=self.attempts)

    def failed(self, why):
        """The accepted method failed when the message was re-sent with its arguments."""
        self.attempts[-1]["failure"] = [why]
        self.progress("failed", attempt=len(self.attempts), reasons=[why])
        self._retry([f"it was accepted, but {call_text(self.message)} raised {why}"])


def extend(message, ask, *, progress=None, mission=None):
    """Write, vet, install and re-send ``message``; return the re-sent call's result."""
    obj, selector = message.receiver, message.selector
    writer = Writer(message, ask, settings_of(obj), progress)
    while True:
        source, provenance = writer.next_method()
        provenance["mission"] = mission
        savepoint = savepoint_of(obj)
        old = obj._slots.data.get(selector)
        try:
            method = install(obj, selector, source, provenance)
            log.info("extension: installed %s.%s", obj.short_name(), selector,
                     extra={"event": "extension_installed", "selector": selector,
                            "mind": provenance["mind"], "generation": provenance["generation"]})
            writer.progress("installed", call=call_text(message))
            return BoundMethod(obj, method)(*message.args, **message.kwargs)
        except Exception as e:
            undo_to(savepoint, obj)
            if obj._p_jar is None:       # not in an image: no savepoint undid the install
                _restore(obj, selector, old)
            why = f"{type(e).__name__}: {e}"
            log.warning("extension: %s.%s failed on the re-sent call: %s", obj.short_name(),
                        selector, why, extra={"event": "extension_failed_call",
                                              "selector": selector, "reason": why})
            if len(writer.attempts) >= writer.tries:
                raise ExtensionFailed(
                    f"{provenance['mind']} wrote {selector}, the guardians accepted it, but the "
                    f"re-sent call {call_text(message)} failed, and no answers are left; "
                    "nothing was kept:", selector=selector, reasons=[why],
                    attempts=writer.attempts) from e
            writer.failed(why)


def _restore(obj, selector, old):
    if old is not None:
        obj.set_slot(selector, old)
    elif selector in obj._slots.data:
        obj.remove_slot(selector)


def _quiet(event, **data):
    pass


@implementer(IExtender)
class Extender:
    """Asks a mind here, with ``ask(root, mind, prompt, history, max_tokens) -> (text, info)``."""

    def __init__(self, ask, *, progress=None):
        self.ask, self.progress = ask, progress

    def accepts(self, receiver, selector):
        return accepts(receiver, selector)

    def handle(self, message):
        return extend(message, self.ask, progress=self.progress)


def pool_asker(pool):
    """An ``ask`` on a ModelPool's runtimes (the deployed generation of each mind)."""
    def ask(root, mind, prompt, history, max_tokens):
        info = pool.describe(root, mind)
        messages = [{"role": "system", "content": info["identity"]}, *history,
                    {"role": "user", "content": prompt}]
        with pool.lease(info) as model:
            text = "".join(model.stream(messages, max_tokens=max_tokens, temperature=0.0,
                                        kv=info["settings"]["kv"]))
        return text, {"generation": info["generation"], "model": info.get("model")}
    return ask


# -- as a kernel mission ---------------------------------------------------------
def _plain(value, depth=0):
    if depth > 20:
        return False
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return True
    if isinstance(value, (list, tuple, PersistentList)):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, (dict, PersistentMapping)):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def submit(img, receiver, selector, args=(), kwargs=None, *, site=None, source="console") -> str:
    """Queue an ``extend`` mission for ``receiver.selector(*args, **kwargs)``; return its id."""
    from .missions import new_mission
    kwargs = dict(kwargs or {})
    oid = receiver._p_oid
    if oid is None:
        raise ExtensionFailed(f"{receiver.short_name()} is not in the image yet, so the kernel "
                              "cannot reach it: commit it first, then send the message again",
                              selector=selector)
    if not _plain(list(args)) or not _plain(kwargs):
        raise ExtensionFailed("a kernel mission takes plain-data arguments (numbers, text, "
                              "lists, dicts); pass the others through slots",
                              selector=selector)
    with img.transaction(note=f"extend mission: {selector}") as conn:
        root = conn.root()
        mind = settings_of(conn.get(oid))["mind"]
        m = new_mission(root, mind, f"write {receiver.short_name()}.{selector}", kind="extend",
                        source=source, plan=[{"do": "tool", "tool": "extend", "input": selector,
                                              "mind": mind}],
                        options={"extend": {"oid": oid, "selector": selector, "args": list(args),
                                            "kwargs": kwargs, "site": site}})
        return m.id


def wait(img, mid, *, timeout=600, poll=0.2, on_state=None):
    """The value of a finished ``extend`` mission (ExtensionFailed if it failed)."""
    from .missions import TERMINAL
    deadline = time.monotonic() + timeout
    last = None
    while True:
        with img.view() as root:
            m = root["missions"][mid]
            state, error = m.state, m.error
            value = m.lookup("value", None)
            shown = m.lookup("value_repr", None)
        if state != last and on_state is not None:
            on_state(state)
        last = state
        if state in TERMINAL:
            if state == "FAILED":
                raise ExtensionFailed(f"mission {mid} failed: {error}", selector=mid)
            return value if value is not None or shown in (None, "None") else shown
        if time.monotonic() > deadline:
            raise TimeoutError(f"mission {mid} is still running after {timeout:g} s; "
                               "see `batos missions`")
        time.sleep(poll)


@implementer(IExtender)
class MissionExtender:
    """Hands each message to the kernel as an ``extend`` mission and waits for its value."""

    def __init__(self, img, *, on_submitted=None, on_state=None):
        self.img, self.on_submitted, self.on_state = img, on_submitted, on_state

    def accepts(self, receiver, selector):
        return accepts(receiver, selector)

    def handle(self, message):
        mid = submit(self.img, message.receiver, message.selector, message.args, message.kwargs,
                     site=message.site)
        if self.on_submitted is not None:
            self.on_submitted(mid, message)
        return wait(self.img, mid, on_state=self.on_state)


def run_step(ctx, text):
    """The step of an ``extend`` mission: write, install and re-send, in the cycle's transaction."""
    from image.errors import ImageError
    from prototypes.object import Message
    m = ctx.mission
    spec = m.options.get("extend") if m.kind == "extend" else None
    if not spec:
        raise ImageError("the extend tool runs only in an extend mission")
    obj = m._p_jar.get(spec["oid"])
    # the call's arguments as plain data again: the mission's record is not theirs to change
    selector, args, kwargs = spec["selector"], tuple(plain(spec["args"])), plain(spec["kwargs"])
    message = Message(obj, selector, obj.lookup_chain(), args, kwargs, site=spec.get("site"))
    if obj.lookup(selector, None) is not None:     # understood meanwhile: just send it
        result = getattr(obj, selector)(*args, **kwargs)
    else:
        def ask(root, mind, prompt, history, max_tokens):
            text, _ = ctx.generate(mind, prompt, history=history, memories=False,
                                   ledger_prompt=False, max_tokens=max_tokens)
            return text, {"generation": root[mind].generation, "model": None}
        result = extend(message, ask, mission=m.id)
    m.value = result if _plain(result) else None
    m.value_repr = repr(result)[:2000]
    return m.value_repr

