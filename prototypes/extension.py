"""The doesNotUnderstand hook: where a message nobody understands goes.

The object model knows nothing of minds. A host (the console, a kernel
mission, a test) installs an *extender* for the code it runs::

    with extension.using(extender):
        obj.greet("Bob")        # no 'greet' anywhere in obj's chain

On a miss, lookup asks the extender whether it takes the message
(``accepts(receiver, selector)``: self-extension on, in the image and for
that object). If it does, the read returns a ``Send``: calling it reifies
the whole message (receiver, selector, arguments, call site) and hands it to
``extender.handle(message)``, whose result is the call's result. If it does
not, or no extender is installed, the read raises ``DoesNotUnderstand``
as before, so ``hasattr`` stays false and system code never triggers
generation.

The default texts of the ``extension`` prototype (the prompt a mind gets,
the rules it is told, its examples) live here so that ``bootstrap`` can make
it; the live copies are slots of ``root['extension']``, read and changed at
run time.
"""
import contextlib
import contextvars
import linecache
import sys

_extender = contextvars.ContextVar("batos_extender", default=None)


def current():
    return _extender.get()


@contextlib.contextmanager
def using(extender):
    """Route misses to ``extender`` (None: plain DoesNotUnderstand) inside the block."""
    token = _extender.set(extender)
    try:
        yield extender
    finally:
        _extender.reset(token)


class Send:
    """A message not understood, waiting for its arguments."""
    __slots__ = ("chain", "extender", "receiver", "selector")

    def __init__(self, extender, receiver, selector, chain):
        self.extender, self.receiver, self.selector, self.chain = extender, receiver, selector, chain

    def __call__(self, *args, **kwargs):
        from .object import Message
        message = Message(self.receiver, self.selector, self.chain, args, kwargs,
                          site=call_site(sys._getframe(1)))
        return self.extender.handle(message)

    def __repr__(self):
        return (f"<message {self.selector!r} to {self.receiver.short_name()}, not understood: "
                "call it to have it written>")


def call_site(frame):
    """``file:line: source`` of the frame that sent the message (sandboxed code: its method)."""
    if frame is None:
        return None
    code = frame.f_code
    line = linecache.getline(code.co_filename, frame.f_lineno).strip()
    return f"{code.co_filename}:{frame.f_lineno}" + (f": {line}" if line else "")


DEFAULTS = {
    "enabled": True,      # off: every miss is a plain DoesNotUnderstand
    "mind": "hermes",     # who writes the method
    "retries": 2,         # rewrites after a rejection, with the guardians' reasons
    "max_tokens": 400,
}

RULES = """\
- Write exactly one function: `def SELECTOR(self, ...)`. `self` is the object.
- Read and write the object's slots as attributes: `self.count`, `self.count = 3`;
  lists and dicts in slots may be changed in place (`self.items.append(x)`).
- You may import math, re, json, datetime, itertools, functools, collections,
  statistics, string, textwrap, decimal, fractions and random; nothing else.
- No class, global, exec, eval, open, input, object or super.
- No attribute starting with `_` (except `type(x).__name__`).
- Default argument values must be plain literals.
- Write only to the object's own slots (other objects need the owner's grant).
- A call may run for at most a couple of seconds and allocate a few tens of MB."""

EXAMPLES = [
    '''def describe(self):
    """One line: the name and own slots of this object."""
    names = [n for n in self.slot_names() if not n.endswith("*")]
    return f"{self.short_name()}: " + ", ".join(names)
''',
    '''def add_item(self, item):
    """Remember item in the object's 'items' list and return how many there are."""
    items = list(self.lookup("items", []))
    items.append(item)
    self.items = items
    return len(items)
''',
]

PROMPT = """\
You write Python methods for BAT OS prototype objects. Reply with only the \
method, in one ```python block.

The object {receiver} was sent the message `{call}` and has no method `{selector}`.
Write `def {selector}({signature})` so that this call does what its name says.

The object's slots:
{slots}
Its methods:
{methods}
It delegates to: {parents}
{site}
Rules:
{rules}

Examples of good methods:
{examples}"""

RETRY = """\
The guardians rejected your method:
{reasons}

Write `def {selector}({signature})` again, keeping to the rules. Reply with only \
the method, in one ```python block."""
