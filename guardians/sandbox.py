"""Compile vetted method source with RestrictedPython and run it with guards.

Layering (RestrictedPython says of itself that it is not a sandbox): the
static checks in ``security``/``covenant`` run first; then RestrictedPython's
compiler, which routes every attribute read, item read, write and iteration
through the guard functions below; then these guards, which refuse private
and interpreter-internal names at run time too (names computed at run time
never reached the static checks). Installing a method runs none of its code
(defaults must be literals; annotations are dropped).

Run-time limits (``guardians.limits``): the rewrite below puts a tick at the
top of every function and loop body and routes the amplifying operators and
f-string widths through sized versions; iteration and the builtins that
consume iterables are metered. What is still not contained: nesting a value
deeply enough to overflow CPython's C stack inside hash()/len(), and a
single slow C call that allocates nothing (see ``limits``).
"""
import ast
import builtins as _builtins
import copy
import operator
import string
import types

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from RestrictedPython import compile_restricted
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
)
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import RestrictingNodeTransformer

from . import limits, modules, security
from .rewrite import IN_PLACE


class SandboxError(Exception):
    """Code was refused at compile or run time by the sandbox."""


def _refuse_name(name):
    if not isinstance(name, str):
        raise SandboxError(f"attribute names are strings, not {type(name).__name__}")
    if name.startswith("_") or name in security.FRAME_ATTRIBUTES:
        raise SandboxError(f"access to attribute {name!r} is not allowed")


class _SafeFormatter(string.Formatter):
    """str.format whose field paths go through the same guards as code, widths sized first."""

    def get_field(self, field_name, args, kwargs):
        import _string
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = guarded_getattr(obj, key) if is_attr else guarded_getitem(obj, key)
        return obj, first

    def format_field(self, value, format_spec):
        limits.size_spec(format_spec)
        return format(value, format_spec)


def _safe_format(text):
    def format(*args, **kw):
        return _SafeFormatter().vformat(text, args, kw)
    return format


def _safe_format_map(text):
    def format_map(mapping):
        return _SafeFormatter().vformat(text, (), mapping)
    return format_map


def _str_format(template, *args, **kw):
    """``str.format(template, ...)``, the unbound spelling."""
    if not isinstance(template, str):
        raise SandboxError(f"str.format needs a str, not {type(template).__name__}")
    return _safe_format(template)(*args, **kw)


# Attributes refused on a kind of object whatever the name looks like:
# AttributeError.obj hands back the object a failed lookup stopped on.
_REFUSED_ON = ((BaseException, frozenset({"obj"})),)


def guarded_getattr(obj, name, *default):
    _refuse_name(name)
    if name in limits.PADDING and isinstance(obj, (str, bytes, bytearray)):
        return limits.padding_method(obj, name)
    if name in ("format", "format_map"):
        if isinstance(obj, str):
            return _safe_format(obj) if name == "format" else _safe_format_map(obj)
        if obj is str and name == "format":
            return _str_format
        if isinstance(obj, type) and issubclass(obj, str):
            raise SandboxError(f"str.{name} is reached through a string: 'text'.{name}(...)")
    if name == "define" and hasattr(type(obj), "holder_of"):
        raise SandboxError("methods cannot install methods (define is for the console and "
                           "the system)")
    for kind, names in _REFUSED_ON:
        if name in names and isinstance(obj, kind):
            raise SandboxError(f"access to {type(obj).__name__}.{name} is not allowed")
    plain = ALIASES.get(type(obj))
    if plain is not None and not hasattr(plain, name):
        # a tracked container is its plain type to a method: its raw ``.data`` (whose
        # in-place changes ZODB would never see) is not there, as on a plain list
        if default:
            return default[0]
        raise AttributeError(f"'{plain.__name__}' object has no attribute '{name}'")
    return getattr(obj, name, *default)


def guarded_hasattr(obj, name):
    _refuse_name(name)
    plain = ALIASES.get(type(obj))
    return hasattr(plain if plain is not None else obj, name)


def guarded_getitem(obj, key):
    if isinstance(key, str) and key.startswith("_") and not isinstance(obj, (dict, PersistentMapping)):
        raise SandboxError(f"access to item {key!r} is not allowed")
    return obj[key]


_CONTAINERS = (dict, list, bytearray, PersistentMapping, PersistentList)


class _ItemWriter:
    """What ``_write_`` gives for a container: item writes only, no attributes."""
    __slots__ = ("_obj",)

    def __init__(self, obj):
        object.__setattr__(self, "_obj", obj)

    def __setitem__(self, key, value):
        self._obj[key] = value

    def __delitem__(self, key):
        del self._obj[key]

    def __setattr__(self, name, value):
        raise SandboxError(f"cannot set attribute {name!r} on a {type(self._obj).__name__}")

    __delattr__ = __setattr__


def _is_prototype(obj):
    return hasattr(type(obj), "__guarded_setattr__")


_DIRECT = frozenset({dict, list, bytearray})     # no attribute can be set on these


def guarded_write(obj):
    """Prototypes take slot writes; containers take item writes; nothing else."""
    t = type(obj)
    if t in _DIRECT:
        return obj
    if _is_prototype(obj):
        return obj
    if isinstance(obj, _CONTAINERS) or type(obj).__module__.startswith("BTrees."):
        return _ItemWriter(obj)
    raise SandboxError(f"cannot assign into a {type(obj).__name__}")


def guarded_setattr(obj, name, value):
    _refuse_name(name)
    if not _is_prototype(obj):
        raise SandboxError(f"cannot set attributes on a {type(obj).__name__}")
    setattr(obj, name, value)


def guarded_delattr(obj, name):
    _refuse_name(name)
    if not _is_prototype(obj):
        raise SandboxError(f"cannot delete attributes of a {type(obj).__name__}")
    delattr(obj, name)


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "^=": operator.ixor, "|=": operator.ior, "@=": operator.imatmul,
}


def inplace_var(op, x, y):
    """``x op= y``: sized first where it can amplify, then Python's in-place operator, so a
    list (or a tracked one) changes in place and every alias of it sees the change."""
    if op in ("*=", "**=", "<<=", "%="):
        limits.size_op(op[:-1], x, y)
    return _INPLACE[op](x, y)


def note_changed(obj, *slots):
    """What ``self._p_changed = True`` becomes: mark the slot mappings holding ``slots``.

    Only the rewrite calls it (source naming it is refused statically), and
    only for prototypes.
    """
    if not _is_prototype(obj):
        raise SandboxError(f"cannot mark a {type(obj).__name__} changed")
    if getattr(type(obj), "_remote", False):
        return          # an isolated stand-in: the host tracks its slots already
    holders = [obj.holder_of(s) for s in slots] if slots else [obj]
    for holder in {id(h): h for h in holders if h is not None}.values():
        holder.__dict__["_slots"]._p_changed = True


# Types a method sees as the plain type it stands for (type(), isinstance()).
ALIASES = {}


def register_alias(plain, kind):
    """``kind`` (a tracked or proxy container) stands for ``plain`` (list, dict, set)."""
    ALIASES[kind] = plain


class TypeView:
    """What ``type(x)`` gives for an object that is not plain data: its name only."""
    __slots__ = ("name",)

    def __init__(self, name):
        object.__setattr__(self, "name", name)

    def __setattr__(self, name, value):
        raise SandboxError("a type cannot be changed in a method")

    def __eq__(self, other):
        return isinstance(other, TypeView) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"<class {self.name!r}>"


_PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bytearray, bool, list, tuple, dict,
                          set, frozenset, type(None), range, slice})


def safe_type(*args):
    """``type(x)``: plain types as themselves, anything else as a TypeView."""
    if len(args) != 1:
        raise SandboxError("type() takes exactly one argument in a method (no class creation)")
    t = type(args[0])
    if t in _PLAIN_TYPES:
        return t
    plain = ALIASES.get(t)
    if plain is not None:
        return plain
    return _type_view(args[0], t)


def metered_type(*args):
    """``type(x)`` in metered code: the builtin types as the names the code sees."""
    t = safe_type(*args)
    return limits.METERED_TYPES.get(t, t)


def lean_type(*args):
    """``type(x)`` in an isolated worker: the builtin types as the names the code sees."""
    t = safe_type(*args)
    return limits.LEAN_TYPES.get(t, t)


def _type_view(obj, t):
    name = getattr(t, "_shown_as", None) or t.__name__
    return TypeView(name)


def safe_isinstance(obj, kinds):
    """``isinstance``, with tracked and proxy containers counting as list/dict/set."""
    if isinstance(kinds, limits.MeteredType):
        kinds = kinds.kind
    elif isinstance(kinds, tuple):
        kinds = tuple(k.kind if isinstance(k, limits.MeteredType) else k for k in kinds)
    if isinstance(kinds, TypeView):
        return safe_type(obj) == kinds
    if isinstance(kinds, tuple) and any(isinstance(k, TypeView) for k in kinds):
        return any(safe_isinstance(obj, k) for k in kinds)
    if isinstance(obj, kinds):
        return True
    plain = ALIASES.get(type(obj))
    return plain is not None and (plain is kinds or (isinstance(kinds, tuple) and plain in kinds))


def type_name(obj):
    """What ``x.__name__`` becomes: readable on types, functions and modules only."""
    if isinstance(obj, TypeView):
        return obj.name
    if isinstance(obj, limits.MeteredType):
        return obj.kind.__name__
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType,
                        types.MethodType)) or type(obj).__name__ == "Module":
        return obj.__name__
    raise SandboxError(f"__name__ is readable on types and functions, not a "
                       f"{type(obj).__name__}")


def aug_item(obj, key, op, value):
    """``obj[key] op= value``, each part evaluated once."""
    guarded_write(obj)[key] = inplace_var(op, guarded_getitem(obj, key), value)


def aug_attr(obj, name, op, value):
    """``obj.name op= value``."""
    guarded_setattr(obj, name, inplace_var(op, guarded_getattr(obj, name), value))


_EXTRA_BUILTINS = {
    name: getattr(_builtins, name)
    for name in ("min", "max", "sum", "enumerate", "list", "dict", "set", "frozenset", "any",
                 "all", "map", "filter", "reversed", "sorted", "zip", "tuple", "range", "iter",
                 "next", "format", "print")
}


def safe_globals(name="<method>", metered=True):
    """The globals a method runs with; ``metered=False`` for an isolated worker (no meters)."""
    # SystemExit, KeyboardInterrupt, GeneratorExit: a method must not stop its host.
    builtins = {k: v for k, v in safe_builtins.items()
                if not (isinstance(v, type) and issubclass(v, BaseException)
                        and not issubclass(v, Exception))}
    builtins.update(_EXTRA_BUILTINS)
    if metered:
        builtins.update(limits.LIMITED_BUILTINS)
    else:       # the same names, unmetered: the worker's OS limits bound them
        builtins.update({k: getattr(_builtins, k) for k in limits.LIMITED_BUILTINS})
        builtins.update({t.__name__: v for t, v in limits.LEAN_TYPES.items()})
    builtins.update(getattr=guarded_getattr, hasattr=guarded_hasattr, setattr=guarded_setattr,
                    delattr=guarded_delattr, type=metered_type if metered else lean_type,
                    isinstance=safe_isinstance,
                    slice=slice)
    return {
        "__builtins__": builtins, "__name__": f"batos.method.{name}", "__metaclass__": type,
        "_getattr_": guarded_getattr, "_getitem_": guarded_getitem, "_write_": guarded_write,
        "_getiter_": limits.metered_iter if metered else iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence, "_inplacevar_": inplace_var,
        "_print_": PrintCollector, "_apply_": lambda f, *a, **kw: f(*a, **kw),
        "math": limits.MATH, "note_changed": note_changed, "limit_tick": limits.limit_tick,
        "limit_op": limits.limit_op, "limit_fmt": limits.limit_fmt,
        "limit_counted": limits.Counted, "limit_import": modules.limit_import,
        "type_name": type_name, "aug_item": aug_item, "aug_attr": aug_attr,
        **{name: getattr(operator, "i" + name[4:]) for name in IN_PLACE.values()},
    }


# Attribute names whose read the guard does more than allow (everything else public it
# just allows, so reading it needs no guard call).
GUARDED_NAMES = frozenset({"format", "format_map", "define", "data"} | limits.PADDING
                          | {n for _, names in _REFUSED_ON for n in names}
                          | security.FRAME_ATTRIBUTES)


class Policy(RestrictingNodeTransformer):
    """RestrictedPython's checks, with two changes.

    ``nonlocal`` is allowed (it only names enclosing locals). Reading an
    attribute by a public constant name the guard would only allow (not in
    GUARDED_NAMES) and an item by a constant key that is not a private name
    are compiled as plain reads: the guard call would change nothing, and
    costs a Python call on every loop iteration.
    """

    def visit_Nonlocal(self, node):
        return self.node_contents_visit(node)

    def visit_Attribute(self, node):
        if (isinstance(node.ctx, ast.Load) and node.attr[:1] != "_"
                and node.attr not in GUARDED_NAMES and not node.attr.endswith("__roles__")):
            from RestrictedPython.transformer import INSPECT_ATTRIBUTES
            if node.attr not in INSPECT_ATTRIBUTES:
                return self.node_contents_visit(node)
        return super().visit_Attribute(node)

    def visit_Subscript(self, node):
        key = node.slice
        if (isinstance(node.ctx, ast.Load) and isinstance(key, ast.Constant)
                and not (isinstance(key.value, str) and key.value.startswith("_"))):
            return self.node_contents_visit(node)
        return super().visit_Subscript(node)


def restricted_errors(tree):
    """RestrictedPython's own complaints about a rewritten tree (a second opinion)."""
    from RestrictedPython.compile import compile_restricted_exec
    return list(compile_restricted_exec(copy.deepcopy(tree), policy=Policy).errors)


def compile_rewritten(tree, fn_name, name, metered=True, renamed=None):
    """RestrictedPython-compile a vetted, rewritten tree; return the function."""
    return define(*restricted_code(tree, fn_name, name, metered, renamed))


def restricted_code(tree, fn_name, name, metered=True, renamed=None):
    """The code that defines the method, compiled and not run: ``define`` runs it. (An
    isolated worker compiles once, outside the wall, and defines in each call's process,
    behind it: defining evaluates default values, and that is method code.)"""
    code = compile_restricted(tree, filename=f"<method {name}>", mode="exec", policy=Policy)
    return code, fn_name, name, metered, renamed


def define(code, fn_name, name, metered=True, renamed=None):
    glb = safe_globals(name, metered)
    exec(code, glb)      # defines the function only; its body runs under the guards
    fn = glb[(renamed or {}).get(fn_name, fn_name)]
    fn.renamed = {new: old for old, new in (renamed or {}).items()}
    return fn


def unrename(text, fn):
    """An error message about ``fn`` with the names the rewrite gave back as written."""
    for new, old in getattr(fn, "renamed", {}).items():
        if new in text:
            import re
            text = re.sub(rf"\b{re.escape(new)}\b", old, text)
    return text


def compile_method(source, name="<method>", metered=True):
    """Vet and compile method source; raises GuardianRejection if refused."""
    return define(*compile_code(source, name, metered))


def compile_code(source, name="<method>", metered=True):
    """Vet and compile method source to ``define``'s arguments, running none of it."""
    from . import vet
    from .rewrite import renames
    verdict = vet(source, name=name, covenant_check=False, metered=metered)
    verdict.raise_if_rejected()
    return restricted_code(verdict.tree, verdict.function, name, metered,
                           renames(ast.parse(source)))
