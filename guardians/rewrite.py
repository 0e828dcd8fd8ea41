"""The AST rewrite that makes vetted method source compile under RestrictedPython.

It runs after the static checks (``security``, ``covenant``) and before
RestrictedPython's compiler, and turns ordinary code RestrictedPython refuses
into equivalent code it accepts:

- names starting with one ``_`` (``_double``, ``_total``) are renamed to
  names that cannot clash (RestrictedPython refuses them; they are local
  to the method, so renaming changes nothing);
- ``import math`` / ``from math import sqrt`` of an allowed module become
  assignments from ``limit_import`` (``guardians.modules``);
- ``x: int = 5`` becomes ``x = 5``; ``x.__name__`` becomes ``type_name(x)``;
- ``a[k] op= v`` and ``a.b op= v`` become ``aug_item(a, k, op, v)`` and
  ``aug_attr(a, 'b', op, v)`` (each part evaluated once);
- ``self._p_changed = True`` becomes ``note_changed(self, 'slot', ...)``.

Metered (in-process) code also gets ``limit_tick()`` at the top of every
function and loop body (a ``for`` iterable is wrapped in ``limit_counted``
so that it is not metered twice), ``limit_op`` for ``*``, ``**``, ``<<``
and ``%``, and ``limit_fmt`` for f-string fields with a format spec. Code for
an isolated worker (``metered=False``) gets none of these: the operating
system bounds it there.
"""
import ast
import copy

from . import covenant, security

_AMPLIFIERS = {ast.Mult: "*", ast.Pow: "**", ast.LShift: "<<", ast.Mod: "%"}
_OPS = {ast.Add: "+=", ast.Sub: "-=", ast.Mult: "*=", ast.Div: "/=", ast.FloorDiv: "//=",
        ast.Mod: "%=", ast.Pow: "**=", ast.LShift: "<<=", ast.RShift: ">>=", ast.BitAnd: "&=",
        ast.BitXor: "^=", ast.BitOr: "|=", ast.MatMult: "@="}


# ``x op= y`` on a name: the operator module's in-place function, under these names
IN_PLACE = {op: "iop_" + name for op, name in (
    ("+=", "add"), ("-=", "sub"), ("*=", "mul"), ("/=", "truediv"), ("//=", "floordiv"),
    ("%=", "mod"), ("**=", "pow"), ("<<=", "lshift"), (">>=", "rshift"), ("&=", "and"),
    ("^=", "xor"), ("|=", "or"), ("@=", "matmul"))}


class RewriteError(Exception):
    """Vetted code that cannot be rewritten (should not happen; reported as a rejection)."""


def _call(name, *args):
    return ast.Call(ast.Name(name, ast.Load()), list(args), [])


class _Rewrite(ast.NodeTransformer):

    def __init__(self, receiver, slots, renames, metered):
        self.receiver, self.slots, self.renames, self.metered = receiver, slots, renames, metered

    # -- names ----------------------------------------------------------------
    def _name(self, name):
        return self.renames.get(name, name)

    def visit_Name(self, node):
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._name(node.arg)
        node.annotation = None          # annotations would run at definition time
        return node

    def visit_keyword(self, node):
        if node.arg is not None:
            node.arg = self._name(node.arg)
        return self.generic_visit(node)

    def visit_ExceptHandler(self, node):
        if node.name:
            node.name = self._name(node.name)
        return self.generic_visit(node)

    def visit_Nonlocal(self, node):
        node.names = [self._name(n) for n in node.names]
        return node

    def visit_Attribute(self, node):
        node = self.generic_visit(node)
        if node.attr == "__name__" and isinstance(node.ctx, ast.Load):
            return ast.copy_location(_call("type_name", node.value), node)
        return node

    # -- statements -----------------------------------------------------------
    def visit_Import(self, node):
        out = []
        for alias in node.names:
            target = self._name(alias.asname or alias.name)
            out.append(ast.Assign([ast.Name(target, ast.Store())],
                                  _call("limit_import", ast.Constant(alias.name))))
        return [ast.copy_location(n, node) for n in out]

    def visit_ImportFrom(self, node):
        out = []
        for alias in node.names:
            target = self._name(alias.asname or alias.name)
            out.append(ast.Assign([ast.Name(target, ast.Store())],
                                  _call("limit_import", ast.Constant(node.module),
                                        ast.Constant(alias.name))))
        return [ast.copy_location(n, node) for n in out]

    def visit_AnnAssign(self, node):
        node = self.generic_visit(node)
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        return ast.copy_location(ast.Assign([node.target], node.value), node)

    def visit_Assign(self, node):
        if security.is_changed_marker(node, self.receiver):
            call = _call("note_changed", ast.Name(self._name(self.receiver), ast.Load()),
                         *[ast.Constant(s) for s in self.slots])
            return ast.copy_location(ast.Expr(call), node)
        return self.generic_visit(node)

    def visit_AugAssign(self, node):
        node = self.generic_visit(node)
        op = ast.Constant(_OPS[type(node.op)])
        t = node.target
        if isinstance(t, ast.Name) and not (self.metered and type(node.op) in _AMPLIFIERS):
            # ``x += y`` as ``x = iop_add(x, y)``: operator.iadd itself, no Python frame
            call = _call(IN_PLACE[_OPS[type(node.op)]], ast.Name(t.id, ast.Load()), node.value)
            return ast.copy_location(ast.Assign([ast.Name(t.id, ast.Store())], call), node)
        if isinstance(t, ast.Subscript):
            call = _call("aug_item", _as_load(t.value), _key(t.slice), op, node.value)
        elif isinstance(t, ast.Attribute):
            call = _call("aug_attr", _as_load(t.value), ast.Constant(t.attr), op, node.value)
        else:
            return node
        return ast.copy_location(ast.Expr(call), node)

    def visit_FunctionDef(self, node):
        node.name = self._name(node.name)
        node.returns = None
        node = self.generic_visit(node)
        if self.metered:
            doc = node.body[:1] if (isinstance(node.body[0], ast.Expr) and isinstance(
                node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)) else []
            node.body = doc + [_tick(node)] + node.body[len(doc):]
        return node

    def visit_While(self, node):
        node = self.generic_visit(node)
        if self.metered:
            node.body = [_tick(node)] + node.body
        return node

    def visit_For(self, node):
        # A tick in the body is cheaper than metering each item (~3x, measured),
        # so the iterable is marked as already counted.
        node = self.generic_visit(node)
        if self.metered:
            node.body = [_tick(node)] + node.body
            node.iter = ast.copy_location(_call("limit_counted", node.iter), node.iter)
        return node

    # -- expressions ----------------------------------------------------------
    def visit_BinOp(self, node):
        node = self.generic_visit(node)
        op = _AMPLIFIERS.get(type(node.op))
        if op is None or not self.metered:
            return node
        return ast.copy_location(_call("limit_op", ast.Constant(op), node.left, node.right), node)

    def visit_FormattedValue(self, node):
        node = self.generic_visit(node)
        if node.format_spec is None or not self.metered:
            return node
        call = _call("limit_fmt", node.value, ast.Constant(node.conversion), node.format_spec)
        return ast.copy_location(ast.FormattedValue(ast.copy_location(call, node), -1, None), node)


def _tick(node):
    return ast.copy_location(ast.Expr(_call("limit_tick")), node)


def _key(slice_node):
    """A subscript's key as an expression (``a[1:2]`` → ``slice(1, 2, None)``)."""
    if isinstance(slice_node, ast.Slice):
        parts = [p if p is not None else ast.Constant(None)
                 for p in (slice_node.lower, slice_node.upper, slice_node.step)]
        return _call("slice", *parts)
    return slice_node


def _as_load(target):
    new = copy.deepcopy(target)
    new.ctx = ast.Load()
    return new


def renames(tree) -> dict:
    """``_name`` → a name RestrictedPython accepts and the source does not use."""
    used = set()
    for node in ast.walk(tree):
        for field in ("id", "arg", "name"):
            value = getattr(node, field, None)
            if isinstance(value, str):
                used.add(value)
        if isinstance(node, ast.Nonlocal):
            used.update(node.names)
        if isinstance(node, ast.alias):
            used.add(node.asname or node.name)
    out = {}
    for name in sorted(used):
        if name.startswith("_") and not name.startswith("__") and name != "_":
            new, n = "u" + name, 0
            while new in used or new in out.values():
                n += 1
                new = f"u{n}{name}"
            out[name] = new
    return out


def rewrite(tree, fn, metered=True):
    """The tree RestrictedPython compiles; raises RewriteError."""
    receiver = (fn.args.posonlyargs + fn.args.args)[0].arg
    tree = copy.deepcopy(tree)
    try:
        tree = _Rewrite(receiver, covenant.changed_slots(fn), renames(tree), metered).visit(tree)
    except (KeyError, AttributeError) as e:
        raise RewriteError(f"cannot rewrite this code: {e}") from None
    return ast.fix_missing_locations(tree)
