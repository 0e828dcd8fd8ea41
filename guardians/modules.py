"""The standard modules a method may import, each as a curated namespace.

``import math`` in a method gives a ``Module`` holding only the names listed
here: pure functions, constants and data types. Nothing that reaches files,
processes, the interpreter or other modules (``random._os``, ``string.Formatter``
whose fields walk attributes unguarded, ``decimal.getcontext`` which changes
the whole process) is listed. Attribute reads on what these names return still
go through the sandbox's guards.
"""
import importlib

# module -> names a method may use (every one checked to exist at import time)
ALLOWED = {
    "math": None,   # guardians.limits.MATH: every public name, the costly ones bounded
    "re": ("compile", "match", "search", "fullmatch", "findall", "finditer", "sub", "subn",
           "split", "escape", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE",
           "X", "ASCII", "A", "error", "Pattern", "Match"),
    "json": ("loads", "dumps", "JSONDecodeError"),
    "datetime": ("date", "datetime", "time", "timedelta", "timezone", "MINYEAR", "MAXYEAR"),
    "itertools": ("accumulate", "chain", "combinations", "combinations_with_replacement",
                  "compress", "count", "cycle", "dropwhile", "filterfalse", "groupby",
                  "islice", "pairwise", "permutations", "product", "repeat", "starmap",
                  "takewhile", "tee", "zip_longest"),
    "functools": ("reduce", "partial", "cmp_to_key", "lru_cache", "cache"),
    "collections": ("Counter", "defaultdict", "deque", "OrderedDict", "namedtuple",
                    "ChainMap"),
    "statistics": ("mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low",
                   "median_high", "median_grouped", "mode", "multimode", "quantiles", "pstdev",
                   "pvariance", "stdev", "variance", "correlation", "covariance",
                   "linear_regression", "StatisticsError"),
    "string": ("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
               "octdigits", "punctuation", "printable", "whitespace", "capwords", "Template"),
    "textwrap": ("wrap", "fill", "dedent", "indent", "shorten"),
    "decimal": ("Decimal", "InvalidOperation", "DivisionByZero", "ROUND_HALF_UP",
                "ROUND_HALF_EVEN", "ROUND_HALF_DOWN", "ROUND_UP", "ROUND_DOWN", "ROUND_CEILING",
                "ROUND_FLOOR"),
    "fractions": ("Fraction",),
    "random": ("random", "randint", "randrange", "choice", "choices", "shuffle", "sample",
               "uniform", "gauss", "normalvariate", "seed", "triangular", "betavariate",
               "expovariate"),
}


class Module:
    """A read-only namespace standing in for an allowed module."""

    def __init__(self, name, names):
        object.__setattr__(self, "__name__", name)
        for key, value in names.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"module {self.__name__} is read-only in a method")

    __delattr__ = __setattr__

    def __repr__(self):
        return f"<module {self.__name__} (for methods)>"


_cache = {}


def module(name) -> Module:
    """The namespace for ``import name`` (an allowed module, already checked statically)."""
    found = _cache.get(name)
    if found is None:
        if name not in ALLOWED:
            raise ImportError(f"a method may import only {', '.join(sorted(ALLOWED))}, "
                              f"not {name!r}")
        if name == "math":
            from .limits import MATH
            found = MATH
        else:
            real = importlib.import_module(name)
            found = Module(name, {n: getattr(real, n) for n in ALLOWED[name]})
        _cache[name] = found
    return found


def limit_import(name, attr=None):
    """What the rewrite makes of ``import name`` and ``from name import attr``."""
    mod = module(name)
    if attr is None:
        return mod
    if attr.startswith("_") or (name != "math" and attr not in ALLOWED[name]):
        raise ImportError(f"cannot import {attr!r} from {name} in a method"
                          + ("" if name == "math" else f"; it offers {', '.join(ALLOWED[name])}"))
    return getattr(mod, attr)


# what the allowed modules import only when first used (Counter.most_common needs heapq,
# datetime.strptime _strptime): a call's process cannot open a file to import them later
LAZY = ("heapq", "bisect", "copy", "keyword", "operator", "reprlib", "numbers", "weakref",
        "_strptime", "calendar", "locale", "unicodedata", "encodings.idna", "encodings.latin_1",
        "encodings.ascii", "encodings.utf_16", "encodings.utf_32", "encodings.cp1252",
        "encodings.unicode_escape", "encodings.raw_unicode_escape", "stringprep",
        "traceback", "linecache", "tokenize", "difflib", "hashlib", "base64", "struct", "zlib",
        "fractions", "string")


def preload():
    """Import every allowed module, and what they import lazily (no file opens later)."""
    for name in ALLOWED:
        module(name)
    for name in LAZY:
        try:
            importlib.import_module(name)
        except ImportError:     # not in this build of Python: nothing to load
            pass
