"""Run-time limits for methods run in process: a wall-clock budget, an allocation/output ceiling.

RestrictedPython sets no CPU, memory or time limits. An untrusted method runs
in an isolated worker, where the operating system holds them
(``guardians.workers``); ``check`` validates the settings for both paths. A
method the owner wrote runs in process: every call into it made from outside
method code (``BoundMethod.__call__``) runs under a ``Budget``, and calls made
from inside share that budget. It is enforced in the interpreter, in layers:

- **ticks**: the sandbox's rewrite puts ``limit_tick()`` at the top of every
  function and loop body; comprehensions and the builtins that consume
  iterables go through ``metered_iter``, which ticks per item. Ticks read
  the clock, and less often how far the process's resident memory has grown
  since the call began (tracemalloc would be exact but made allocating loops
  14x slower, measured);
- **amplifiers** (``*``, ``**``, ``<<`` and ``%`` on sequences and ints,
  padding methods, ``bytes(n)``, format widths, ``math.factorial``)
  check the size of their result before computing it, so a single huge
  operation is refused instead of run;
- **output**: a result bigger than the ceiling is refused.

Exceeding a limit raises ``LimitExceeded`` (an ``Exception``) and keeps
raising at every later tick of that call, so method code that catches it
cannot keep running. Left out, said plainly: a single C-level call that is
slow without allocating (a sort of a list within the ceiling, say) runs to
its end; resident memory is the process's, so another thread loading a model
during a call counts against it. Mark such a method untrusted (``:untrust``)
to run it in a worker.
"""
import builtins
import math
import operator
import os
import sys
import threading
import time
import types


DEFAULTS = {"seconds": 2.0, "memory_mb": 64.0, "output_kb": 1024.0}
# Multiplying two ints of 2M bits takes ~50 ms; 8x that, ~1.5 s (Karatsuba).
INT_BITS = 1 << 21
_TICK_EVERY = 32          # the clock is read on one tick in this many
_RSS_EVERY = 256          # resident memory on one in this many (a read of /proc)
_SMALL = 1 << 16          # results smaller than this are not sized against memory


class _Local(threading.local):
    budget = None       # a class default: ``_local.budget`` is one attribute read, no getattr()


_local = _Local()


class LimitExceeded(RuntimeError):
    """A method call ran past its time budget or its allocation/output ceiling."""

    def __init__(self, kind, message):
        self.kind = kind
        super().__init__(message)


class Budget:
    __slots__ = ("base", "deadline", "memory", "output", "seconds", "ticks", "tripped")

    def __init__(self, limits):
        settings = check(limits)
        self.seconds = settings["seconds"]
        self.memory = int(settings["memory_mb"] * 2**20)
        self.output = int(settings["output_kb"] * 2**10)
        self.deadline = time.monotonic() + self.seconds
        self.base = rss()
        self.ticks = 0
        self.tripped = None

    def allocated(self):
        return rss() - self.base

    def check(self):
        if self.tripped is not None:
            raise LimitExceeded(*self.tripped)
        if time.monotonic() > self.deadline:
            self.trip("time", f"the call ran past its {self.seconds:g} s budget")
        if self.ticks % _RSS_EVERY == 0 and self.allocated() > self.memory:
            self.trip("memory", f"the call allocated more than its {_mb(self.memory)} ceiling")

    def reserve(self, nbytes, what):
        """Refuse an operation whose result would take ``nbytes``."""
        if nbytes < _SMALL:
            return
        used = max(self.allocated(), 0)
        if nbytes > self.memory - used:
            self.trip("memory", f"{what} would need {_mb(nbytes)}; the call has "
                                f"{_mb(max(self.memory - used, 0))} left of its "
                                f"{_mb(self.memory)} allocation ceiling")

    def int_bits(self, bits, what):
        """Refuse an integer result so big that arithmetic on it takes seconds."""
        if bits > INT_BITS:
            self.trip("size", f"{what} would be an integer of about {bits:,} bits "
                              f"(at most {INT_BITS:,} in a method)")
        self.reserve(bits // 8, what)

    def trip(self, kind, message):
        self.tripped = (kind, message)
        raise LimitExceeded(kind, message)



_statm = (None, None)       # (pid, fd): a forked child must not read its parent's file


def rss():
    """Resident bytes of this process (Linux /proc; elsewhere the peak from getrusage)."""
    global _statm
    try:
        pid, fd = _statm
        if pid != os.getpid():
            fd = os.open("/proc/self/statm", os.O_RDONLY)
            _statm = (os.getpid(), fd)
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _mb(n):
    return f"{n / 2**20:.1f} MB"


def check(limits) -> dict:
    """Validated limits: DEFAULTS updated by ``limits`` (unknown keys refused)."""
    settings = dict(DEFAULTS)
    problems = []
    for key, value in dict(limits or {}).items():
        if key not in DEFAULTS:
            problems.append(f"unknown setting {key!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{key} must be a positive number, not {value!r}")
        else:
            settings[key] = float(value)
    if problems:      # the same error, worded the same way, as every other settings slot
        from image.errors import SettingsError      # here: a worker never loads the image package
        raise SettingsError("method_limits has bad settings: " + "; ".join(problems)
                            + f". The settings are: {', '.join(DEFAULTS)}")
    return settings


def current():
    return _local.budget


def call(fn, args, kw, limits=None, *, what="method"):
    """Run ``fn(*args, **kw)`` under a budget (the caller's, when one is running).

    ``SystemExit``, ``KeyboardInterrupt`` and ``GeneratorExit`` raised inside
    become ``LimitExceeded``: method code never stops its host.
    """
    if current() is not None:
        return fn(*args, **kw)
    budget = _local.budget = Budget(limits)
    try:
        try:
            result = fn(*args, **kw)
        except (SystemExit, KeyboardInterrupt, GeneratorExit) as e:
            raise LimitExceeded("interrupt", f"{what} raised {type(e).__name__}; "
                                             "method code cannot stop its host") from None
        if budget.tripped is not None:       # tripped, caught inside, and returned anyway
            raise LimitExceeded(*budget.tripped)
        size = measure(result, budget.output)
        if size > budget.output:
            raise LimitExceeded("output", f"{what} returned more than its "
                                          f"{budget.output // 1024} KB output ceiling")
        return result
    finally:
        _local.budget = None


def measure(value, ceiling):
    """Roughly the bytes ``value`` holds (containers followed), stopping past ``ceiling``."""
    total, todo, seen = 0, [value], set()
    while todo and total <= ceiling:
        v = todo.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        total += sys.getsizeof(v, 64)
        if isinstance(v, dict):
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            todo.extend(v)
    return total


# -- what the rewritten code calls ---------------------------------------------
def limit_tick():
    b = _local.budget
    if b is not None:
        n = b.ticks = b.ticks + 1
        if not n & (_TICK_EVERY - 1) or b.tripped is not None:
            b.check()


class Counted:
    """A ``for`` loop's iterable: its body ticks, so its items need no metering."""
    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj


def metered_iter(obj):
    t = type(obj)
    if t is Counted:
        return iter(obj.obj)
    if t is _GENERATOR and obj.gi_code.co_filename.startswith("<method"):
        return obj          # a method's own generator: its loops already tick
    it = iter(obj)
    if _local.budget is None:
        return it
    return _metered(it)


_GENERATOR = type(x for x in ())


def _metered(it):
    local = _local
    for item in it:
        b = local.budget        # limit_tick, inlined: this runs once per item
        if b is not None:
            n = b.ticks = b.ticks + 1
            if not n & (_TICK_EVERY - 1) or b.tripped is not None:
                b.check()
        yield item


def _seq_bytes(seq, times):
    if isinstance(seq, str):
        unit = 4 if any(ord(c) > 0xFFFF for c in seq[:64]) else (2 if not seq.isascii() else 1)
        return len(seq) * unit * times
    if isinstance(seq, (bytes, bytearray)):
        return len(seq) * times
    return len(seq) * 8 * times


_SMALL_INT = 1 << 62      # ints this small multiply without sizing


def limit_op(op, a, b):
    """``a <op> b`` for the operators that can amplify, sized first (and a tick)."""
    ta = type(a)
    if (ta is float or (ta is int and -_SMALL_INT < a < _SMALL_INT)) and op in _CHEAP:
        tb = type(b)
        if tb is float or (tb is int and -_SMALL_INT < b < _SMALL_INT):
            return _CHEAP[op](a, b)     # small numbers: nothing to size, the loop ticks
    budget = _local.budget
    if budget is not None:
        limit_tick()
        _size_op(budget, op, a, b)
    return _OPS[op](a, b)


def size_op(op, a, b):
    """Size ``a <op> b`` against the call's budget (and tick), without computing it."""
    budget = _local.budget
    if budget is not None:
        limit_tick()
        _size_op(budget, op, a, b)


def _size_op(budget, op, a, b):
    seq = (str, bytes, bytearray, list, tuple)
    if op == "*":
        if isinstance(a, seq) and isinstance(b, int):
            budget.reserve(_seq_bytes(a, b), "repeating a sequence")
        elif isinstance(b, seq) and isinstance(a, int):
            budget.reserve(_seq_bytes(b, a), "repeating a sequence")
        elif isinstance(a, int) and isinstance(b, int):
            budget.int_bits(abs(a).bit_length() + abs(b).bit_length(), "this product")
    elif op == "**" and isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        budget.int_bits(abs(a).bit_length() * b, "this power")
    elif op == "<<" and isinstance(a, int) and isinstance(b, int) and a:
        budget.int_bits(abs(a).bit_length() + b, "this shift")
    elif op == "%" and isinstance(a, (str, bytes)):
        values = b if isinstance(b, tuple) else (b,)
        budget.reserve(_width_bytes(a, values), "this %-format")


_OPS = {"*": operator.mul, "**": operator.pow, "<<": operator.lshift, "%": operator.mod}
_CHEAP = {"*": operator.mul, "%": operator.mod}


def _width_bytes(template, values):
    """The widest width or precision a %-format asks for (``*`` takes it from the values)."""
    import re
    widths = [int(w) for w in re.findall(r"%[-#0 +]*(\d+)", str(template))]
    widths += [int(w) for w in re.findall(r"\.(\d+)", str(template))]
    if "*" in str(template):
        widths += [v for v in values if isinstance(v, int)]
    return max(widths, default=0) * 4


def limit_fmt(value, conversion, spec):
    """An f-string field with a format spec: the width is sized first."""
    if conversion == 114:
        value = repr(value)
    elif conversion == 115:
        value = str(value)
    elif conversion == 97:
        value = ascii(value)
    size_spec(spec)
    return format(value, spec)


def size_spec(spec):
    budget = current()
    if budget is not None and isinstance(spec, str):
        import re
        nums = [int(n) for n in re.findall(r"\d+", spec)]
        if nums:
            budget.reserve(max(nums) * 4, "this format width")


PADDING = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


def padding_method(text, name):
    """``text.ljust`` and friends, sized first (called by the sandbox's getattr)."""
    def pad(width, *rest):
        budget = current()
        if budget is not None and isinstance(width, int):
            budget.reserve(_seq_bytes(text[:1] or " ", width) + len(text), f"str.{name}")
        return getattr(text, name)(width, *rest)
    return pad


# -- builtins that consume or create iterables ---------------------------------
def _consuming(fn):
    """``fn`` with its iterable argument metered (min/max of several values are left as they are)."""
    def wrapper(*args, **kw):
        if len(args) == 1 or (args and fn not in (builtins.min, builtins.max)):
            args = (metered_iter(args[0]),) + args[1:]
        return fn(*args, **kw)
    wrapper.__name__ = fn.__name__
    return wrapper


def _sized_bytes(kind):
    def make(*args, **kw):
        budget = current()
        if budget is not None and args:
            if isinstance(args[0], int):
                budget.reserve(args[0], f"{kind.__name__}({args[0]})")
            elif not isinstance(args[0], (str, bytes, bytearray)):
                args = (metered_iter(args[0]),) + args[1:]
        return kind(*args, **kw)
    make.__name__ = kind.__name__
    return make


def _limited_iter(*args):
    if len(args) > 1:       # iter(callable, sentinel): endless until the sentinel
        return metered_iter(iter(*args))
    return metered_iter(args[0])


def _limited_format(value, spec=""):
    size_spec(spec)
    return format(value, spec)


def _limited_pow(base, exp, mod=None):
    if mod is None:
        return limit_op("**", base, exp)
    return pow(base, exp, mod)


class MeteredType:
    """A builtin type as method code sees it: its calls may meter, and it still acts as the type.

    ``isinstance(x, list)``, ``type(x) == list``, ``list.append`` and
    ``dict.fromkeys`` keep working; ``list(it)`` meters ``it`` in metered code.
    ``list.append(x, 1)`` calls ``x.append(1)`` when ``x`` is not exactly a
    list (a tracked container, or an isolated method's stand-in for one), so
    the container's own method records the change.
    """
    __slots__ = ("kind", "make")

    def __init__(self, kind, make):
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "make", make)

    def __call__(self, *args, **kw):
        return self.make(*args, **kw)

    def __instancecheck__(self, obj):
        return isinstance(obj, self.kind)

    def __subclasscheck__(self, cls):
        return issubclass(cls.kind if isinstance(cls, MeteredType) else cls, self.kind)

    def __getattr__(self, name):
        attr = getattr(self.kind, name)
        if isinstance(attr, (types.MethodDescriptorType, types.WrapperDescriptorType)):
            return _unbound(self.kind, name, attr)
        return attr

    def __setattr__(self, name, value):
        raise AttributeError(f"{self.kind.__name__} cannot be changed")

    def __eq__(self, other):
        return other is self.kind or (isinstance(other, MeteredType) and other.kind is self.kind)

    def __hash__(self):
        return hash(self.kind)

    def __repr__(self):
        return repr(self.kind)


def _unbound(kind, name, descriptor):
    def call(obj, *args, **kw):
        if type(obj) is not kind and hasattr(obj, name):
            return getattr(obj, name)(*args, **kw)
        return descriptor(obj, *args, **kw)
    call.__name__ = name
    return call


def _metered_type(kind):
    if kind is dict:
        def make(*args, **kw):
            if args and not hasattr(args[0], "keys"):
                args = (metered_iter(args[0]),) + args[1:]
            return dict(*args, **kw)
    elif kind in (builtins.map, builtins.filter, builtins.zip):
        return MeteredType(kind, _each_metered(kind))
    else:
        make = _consuming(kind)
    return MeteredType(kind, make)


def _each_metered(fn):
    """``map``/``filter``/``zip``: every iterable argument metered."""
    def wrapper(*args, **kw):
        if fn is builtins.zip:
            return fn(*map(metered_iter, args), **kw)
        return fn(args[0], *map(metered_iter, args[1:]), **kw) if args else fn(**kw)
    wrapper.__name__ = fn.__name__
    return wrapper


# the same names unmetered, for an isolated worker (its OS limits meter it)
LEAN_TYPES = {t: MeteredType(t, t) for t in (
    builtins.list, builtins.tuple, builtins.set, builtins.frozenset, builtins.dict)}

METERED_TYPES = {t: _metered_type(t) for t in (
    builtins.list, builtins.tuple, builtins.set, builtins.frozenset, builtins.dict,
    builtins.enumerate, builtins.map, builtins.filter, builtins.zip)}

LIMITED_BUILTINS = {
    **{f.__name__: _consuming(f) for f in (
        builtins.sum, builtins.min, builtins.max, builtins.sorted, builtins.any, builtins.all)},
    **{t.__name__: m for t, m in METERED_TYPES.items()},
    "iter": _limited_iter, "bytes": _sized_bytes(bytes),
    "bytearray": _sized_bytes(bytearray), "format": _limited_format, "pow": _limited_pow,
}


class _Math:
    """The math module, with the functions whose cost grows with their argument bounded."""

    def __init__(self):
        for name in dir(math):
            if not name.startswith("_"):
                setattr(self, name, getattr(math, name))
        self.factorial = self._bounded(math.factorial, "factorial")
        self.comb = self._bounded(math.comb, "comb")
        self.perm = self._bounded(math.perm, "perm")
        self.prod = lambda it, **kw: math.prod(metered_iter(it), **kw)

    @staticmethod
    def _bounded(fn, name, most=20_000):
        def bounded(n, *rest):
            if isinstance(n, int) and n > most and current() is not None:
                current().trip("time", f"math.{name}({n}) is too costly for a method "
                                       f"(at most {most})")
            return fn(n, *rest)
        return bounded


MATH = _Math()
