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
import builtins
import copy
import operator
import string

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from RestrictedPython import compile_restricted
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
)
from RestrictedPython.PrintCollector import PrintCollector

from . import covenant, limits, security


class SandboxError(Exception):
    """Code was refused at compile or run time by the sandbox."""


def _refuse_name(name):
    if not isinstance(name, str):
        raise SandboxError(f"attribute names are strings, not {type(name).__name__}")
    if name.startswith("_") or name in security.FRAME_ATTRIBUTES:
        raise SandboxError(f"access to attribute {name!r} is not allowed")


class _SafeFormatter(string.Formatter):
    """str.format whose field paths go through the same guards as code."""

    def get_field(self, field_name, args, kwargs):
        import _string
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = guarded_getattr(obj, key) if is_attr else guarded_getitem(obj, key)
        return obj, first


def _safe_format(text):
    def format(*args, **kw):
        return _SafeFormatter().vformat(text, args, kw)
    return format


# Attributes refused on a kind of object whatever the name looks like:
# AttributeError.obj hands back the object a failed lookup stopped on.
_REFUSED_ON = ((BaseException, frozenset({"obj"})),)


def guarded_getattr(obj, name, *default):
    _refuse_name(name)
    if name in limits.PADDING and isinstance(obj, (str, bytes, bytearray)):
        return limits.padding_method(obj, name)
    if name in ("format", "format_map"):
        if isinstance(obj, str) and name == "format":
            return _safe_format(obj)
        if isinstance(obj, (str, bytes)) or (isinstance(obj, type) and issubclass(obj, (str, bytes))):
            raise SandboxError(f"{name} is only allowed as 'literal'.format(...); use an f-string")
    if name == "define" and hasattr(type(obj), "holder_of"):
        raise SandboxError("methods cannot install methods (define is for the console and "
                           "the system)")
    for kind, names in _REFUSED_ON:
        if name in names and isinstance(obj, kind):
            raise SandboxError(f"access to {type(obj).__name__}.{name} is not allowed")
    return getattr(obj, name, *default)


def guarded_hasattr(obj, name):
    _refuse_name(name)
    return hasattr(obj, name)


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


def guarded_write(obj):
    """Prototypes take slot writes; containers take item writes; nothing else."""
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
    if op in ("*=", "**=", "<<=", "%="):
        return limits.limit_op(op[:-1], x, y)
    return _INPLACE[op](x, y)


def note_changed(obj, *slots):
    """What ``self._p_changed = True`` becomes: mark the slot mappings holding ``slots``.

    Only the rewrite calls it (source naming it is refused statically), and
    only for prototypes.
    """
    if not _is_prototype(obj):
        raise SandboxError(f"cannot mark a {type(obj).__name__} changed")
    holders = [obj.holder_of(s) for s in slots] if slots else [obj]
    for holder in {id(h): h for h in holders if h is not None}.values():
        holder.__dict__["_slots"]._p_changed = True


_EXTRA_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("min", "max", "sum", "enumerate", "list", "dict", "set", "frozenset", "any",
                 "all", "map", "filter", "reversed", "sorted", "zip", "tuple", "range", "iter",
                 "next", "format", "print")
}


def safe_globals(name="<method>"):
    # SystemExit, KeyboardInterrupt, GeneratorExit: a method must not stop its host.
    builtins = {k: v for k, v in safe_builtins.items()
                if not (isinstance(v, type) and issubclass(v, BaseException)
                        and not issubclass(v, Exception))}
    builtins.update(_EXTRA_BUILTINS)
    builtins.update(limits.LIMITED_BUILTINS)
    builtins.update(getattr=guarded_getattr, hasattr=guarded_hasattr,
                    setattr=guarded_setattr, delattr=guarded_delattr)
    return {
        "__builtins__": builtins, "__name__": f"batos.method.{name}", "__metaclass__": type,
        "_getattr_": guarded_getattr, "_getitem_": guarded_getitem, "_write_": guarded_write,
        "_getiter_": limits.metered_iter, "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence, "_inplacevar_": inplace_var,
        "_print_": PrintCollector, "_apply_": lambda f, *a, **kw: f(*a, **kw),
        "math": limits.MATH, "note_changed": note_changed, "limit_tick": limits.limit_tick,
        "limit_op": limits.limit_op, "limit_fmt": limits.limit_fmt,
        "limit_counted": limits.Counted,
    }


class _Rewrite(ast.NodeTransformer):
    """Make vetted source compile under RestrictedPython.

    ``self._p_changed = True`` becomes ``note_changed(self, 'slot', ...)`` and
    ``a.b op= v`` / ``a[k] op= v`` (refused by RestrictedPython) become
    ``a.b = a.b op v`` when the target has no side effects. Every function and
    loop body starts with ``limit_tick()`` (a ``for`` iterable is wrapped in
    ``limit_counted`` so that it is not metered twice); ``*``, ``**``, ``<<``, ``%`` become
    ``limit_op(...)`` and f-string fields with a format spec ``limit_fmt(...)``.
    """

    def __init__(self, receiver, slots):
        self.receiver, self.slots = receiver, slots

    def visit_Assign(self, node):
        if security.is_changed_marker(node, self.receiver):
            call = ast.Call(ast.Name("note_changed", ast.Load()),
                            [ast.Name(self.receiver, ast.Load())]
                            + [ast.Constant(s) for s in self.slots], [])
            return ast.copy_location(ast.Expr(call), node)
        return self.generic_visit(node)

    def visit_arg(self, node):
        node.annotation = None          # annotations would run at definition time
        return node

    def visit_FunctionDef(self, node):
        node.returns = None
        node = self.generic_visit(node)
        doc = node.body[:1] if (isinstance(node.body[0], ast.Expr) and isinstance(
            node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)) else []
        node.body = doc + [_tick(node)] + node.body[len(doc):]
        return node

    def visit_While(self, node):
        node = self.generic_visit(node)
        node.body = [_tick(node)] + node.body
        return node

    def visit_For(self, node):
        # A tick in the body is cheaper than metering each item (~3x, measured),
        # so the iterable is marked as already counted.
        node = self.generic_visit(node)
        node.body = [_tick(node)] + node.body
        node.iter = ast.copy_location(
            ast.Call(ast.Name("limit_counted", ast.Load()), [node.iter], []), node.iter)
        return node

    def visit_BinOp(self, node):
        node = self.generic_visit(node)
        op = _AMPLIFIERS.get(type(node.op))
        if op is None:
            return node
        call = ast.Call(ast.Name("limit_op", ast.Load()), [ast.Constant(op), node.left, node.right], [])
        return ast.copy_location(call, node)

    def visit_FormattedValue(self, node):
        node = self.generic_visit(node)
        if node.format_spec is None:
            return node
        call = ast.Call(ast.Name("limit_fmt", ast.Load()),
                        [node.value, ast.Constant(node.conversion), node.format_spec], [])
        return ast.copy_location(ast.FormattedValue(ast.copy_location(call, node), -1, None), node)

    def visit_AugAssign(self, node):
        node = self.generic_visit(node)
        if isinstance(node.target, (ast.Attribute, ast.Subscript)):
            if not _pure(node.target):
                raise SandboxError(f"line {node.lineno}: augmented assignment to a computed "
                                   "target; write `x = x + y` instead")
            load = _as_load(node.target)
            value = self.visit_BinOp(ast.copy_location(ast.BinOp(load, node.op, node.value), node))
            return ast.copy_location(ast.Assign([node.target], value), node)
        return node


_AMPLIFIERS = {ast.Mult: "*", ast.Pow: "**", ast.LShift: "<<", ast.Mod: "%"}


def _tick(node):
    return ast.copy_location(ast.Expr(ast.Call(ast.Name("limit_tick", ast.Load()), [], [])), node)


def _pure(expr):
    return all(isinstance(n, (ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.Load,
                              ast.Store, ast.Slice)) for n in ast.walk(expr))


def _as_load(target):
    new = copy.deepcopy(target)
    new.ctx = ast.Load()
    return new


def rewrite(tree, fn):
    """The tree RestrictedPython compiles (see _Rewrite); raises SandboxError."""
    receiver = (fn.args.posonlyargs + fn.args.args)[0].arg
    tree = _Rewrite(receiver, covenant.changed_slots(fn)).visit(copy.deepcopy(tree))
    return ast.fix_missing_locations(tree)


def restricted_errors(tree):
    """RestrictedPython's own complaints about a rewritten tree (a second opinion)."""
    from RestrictedPython.compile import compile_restricted_exec
    return list(compile_restricted_exec(copy.deepcopy(tree)).errors)


def compile_rewritten(tree, fn_name, name):
    """RestrictedPython-compile a vetted, rewritten tree; return the function."""
    code = compile_restricted(tree, filename=f"<method {name}>", mode="exec")
    glb = safe_globals(name)
    exec(code, glb)      # defines the function only; its body runs under the guards
    return glb[fn_name]


def compile_method(source, name="<method>"):
    """Vet and compile method source; raises GuardianRejection if refused."""
    from . import vet
    verdict = vet(source, name=name, covenant_check=False)
    verdict.raise_if_rejected()
    return compile_rewritten(verdict.tree, verdict.function, name)
