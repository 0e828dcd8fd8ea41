"""Security guardian: static checks on method source before anything compiles.

Method source is untrusted input. This pass runs before RestrictedPython's own
compile-time checks (a second, independent layer) and the run-time guards in
``guardians.sandbox`` (a third). Rules, each with an id used in verdicts:

- ``one-function``: the source is ``def``s only: the method (named like its
  slot when there are several), whose first parameter is the receiver, and
  any helpers it calls; no decorators, no ``async``.
- ``import``: only ``import M`` / ``from M import name`` of a module in
  ``guardians.modules.ALLOWED`` (pure standard modules), no submodules, no ``*``.
- ``global``, ``class``: none of these statements.
- ``private-attribute``: no attribute starting with ``_`` (dunders, ``_p_``,
  ``_v_``). Two exceptions: reading ``x.__name__``, and the persistence marker
  ``self._p_changed = True``; also through ``getattr``/``setattr``/``hasattr``/
  ``delattr`` with a constant name.
- ``private-name``: no name starting with ``__`` (one leading ``_`` is fine:
  ``_``, ``_total``, ``def _helper``).
- ``frame-attribute``: no attributes that climb to frames, code or globals
  (``gi_frame``, ``f_globals``, ``tb_frame``, ``cr_frame``, ...).
- ``forbidden-name``: no exec/eval/compile/open/__import__/globals/locals/
  vars/breakpoint/input and the other names in FORBIDDEN_NAMES.
- ``definition-time``: default values must be literals, so that installing a
  method (which defines the function) runs none of its code.
- ``too-large``: source over MAX_SOURCE characters.
"""
import ast
import re

from .verdict import Reason

MAX_SOURCE = 20_000
FORBIDDEN_NAMES = frozenset({
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars",
    "breakpoint", "input", "help", "exit", "quit", "memoryview", "object",
    "super", "dir", "classmethod", "staticmethod", "property", "__builtins__",
    "__loader__", "__spec__", "getattribute", "reload", "execfile", "file",
    # inserted by the sandbox's rewrite only
    "note_changed", "limit_tick", "limit_op", "limit_fmt", "limit_counted", "limit_import",
    "type_name", "aug_item", "aug_attr",
    *(f"iop_{n}" for n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lshift",
                           "rshift", "and", "xor", "or", "matmul")),
})
FRAME_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "cr_frame", "cr_code",
    "cr_await", "cr_origin", "ag_frame", "ag_code", "ag_await",
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace",
    "tb_frame", "tb_next", "co_code", "co_consts", "co_names",
    "func_globals", "func_code", "func_closure", "im_func", "im_self", "cell_contents",
    "mro",
})
ATTR_BUILTINS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def is_changed_marker(node, receiver):
    """``self._p_changed = True``: the one ``_p_`` access the covenant needs."""
    return (isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(t := node.targets[0], ast.Attribute) and t.attr == "_p_changed"
            and isinstance(t.value, ast.Name) and t.value.id == receiver
            and isinstance(node.value, ast.Constant) and node.value.value in (True, 1))


def find_function(tree, name=None):
    """The method's def, or a Reason saying what is wrong.

    The source is function definitions only. With one, that is the method;
    with several, the method is the (last, as in Python) one named ``name``,
    and the others are helpers it may call (they run under the same rules).
    """
    body = tree.body
    if not body or not all(isinstance(n, ast.FunctionDef) for n in body):
        kinds = ", ".join(type(n).__name__ for n in body) or "nothing"
        line = next((n.lineno for n in body if not isinstance(n, ast.FunctionDef)), None)
        return None, Reason("one-function", line,
                            f"method source must be function definitions only (found: {kinds})")
    named = [n for n in body if n.name == name] if name else []
    if len(body) > 1 and not named:
        return None, Reason("one-function", body[0].lineno,
                            f"with several functions, one must be named {name!r}, the method"
                            if name else "several functions, and no method name to pick one")
    fn = named[-1] if named else body[0]
    for d in body:
        for default in d.args.defaults + [x for x in d.args.kw_defaults if x is not None]:
            if not _literal(default):
                return None, Reason("definition-time", default.lineno,
                                    "default values must be literals (they run when the method "
                                    "is installed)")
        if d.decorator_list:
            return None, Reason("one-function", d.lineno, "decorators are not allowed on methods")
    params = fn.args.posonlyargs + fn.args.args
    if not params:
        return None, Reason("one-function", fn.lineno,
                            "a method's first parameter is the receiver (self)")
    return fn, None


def _literal(node):
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def check(tree, name=None) -> list:
    reasons = []
    fn, why = find_function(tree, name)
    if why:
        reasons.append(why)
    receiver = (fn.args.posonlyargs + fn.args.args)[0].arg if fn else "self"
    markers = {id(n.targets[0]) for n in ast.walk(tree) if is_changed_marker(n, receiver)}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            reasons.extend(_check_import(node, line))
        elif isinstance(node, ast.Global):
            reasons.append(Reason("global", line, "the global statement is not allowed"))
        elif isinstance(node, ast.ClassDef):
            reasons.append(Reason("class", line, "class definitions are not allowed in methods"))
        elif isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)):
            reasons.append(Reason("one-function", line, "async code is not allowed"))
        elif isinstance(node, ast.Attribute):
            if node.attr == "__name__" and isinstance(node.ctx, ast.Load):
                pass
            elif node.attr.startswith("_") and id(node) not in markers:
                reasons.append(Reason("private-attribute", line,
                                      f"attribute {node.attr!r} starts with '_' (dunder/_p_/_v_ access is not allowed)"))
            elif node.attr in FRAME_ATTRIBUTES:
                reasons.append(Reason("frame-attribute", line,
                                      f"attribute {node.attr!r} reaches interpreter internals"))
        elif isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES:
                reasons.append(Reason("forbidden-name", line, f"{node.id!r} is not allowed in methods"))
            elif node.id.startswith("__"):
                reasons.append(Reason("private-name", line, f"name {node.id!r} starts with '__'"))
        elif isinstance(node, ast.arg) and node.arg.startswith("__"):
            reasons.append(Reason("private-name", line, f"parameter {node.arg!r} starts with '__'"))
        elif (isinstance(node, (ast.FunctionDef, ast.ExceptHandler)) and node.name
              and node.name.startswith("__")):
            reasons.append(Reason("private-name", line, f"name {node.name!r} starts with '__'"))
        elif isinstance(node, ast.Nonlocal) and any(n.startswith("__") for n in node.names):
            reasons.append(Reason("private-name", line, "nonlocal names may not start with '__'"))
        elif isinstance(node, ast.Call):
            reasons.extend(_check_attr_builtin(node, line))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.search(r"\b(__\w+__|_p_\w+|_v_\w+)", node.value) and _looks_like_access(node.value):
                reasons.append(Reason("private-attribute", line,
                                      f"string {node.value[:40]!r} names a private attribute"))
    return reasons


def _looks_like_access(text):
    """A string that is itself a private name or a format field reaching one."""
    t = text.strip()
    return bool(re.fullmatch(r"_\w*", t) or re.search(r"\{[^{}]*[.\[]\s*_", t))


def _check_attr_builtin(call, line):
    f = call.func
    if isinstance(f, ast.Name) and f.id in ATTR_BUILTINS and len(call.args) >= 2:
        name = call.args[1]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            if name.value.startswith("_") or name.value in FRAME_ATTRIBUTES:
                return [Reason("private-attribute", line,
                               f"{f.id}(..., {name.value!r}) reaches a private attribute")]
    return []


def _check_import(node, line):
    """``import M`` / ``from M import n`` of an allowed module only."""
    from .modules import ALLOWED
    allowed = ", ".join(sorted(ALLOWED))
    if isinstance(node, ast.ImportFrom):
        if node.level or node.module not in ALLOWED:
            return [Reason("import", line, f"a method may import only {allowed}, "
                                           f"not {'.' * node.level}{node.module or ''}")]
        bad = [a.name for a in node.names if a.name == "*" or a.name.startswith("_")
               or (node.module != "math" and a.name not in ALLOWED[node.module])]
        if bad:
            return [Reason("import", line, f"cannot import {', '.join(bad)} from {node.module}")]
        return [Reason("private-name", line, f"name {a.asname!r} starts with '__'")
                for a in node.names if (a.asname or "").startswith("__")]
    bad = [a.name for a in node.names if a.name not in ALLOWED]
    if bad:
        return [Reason("import", line, f"a method may import only {allowed}, "
                                       f"not {', '.join(bad)}")]
    return [Reason("private-name", line, f"name {a.asname!r} starts with '__'")
            for a in node.names if (a.asname or "").startswith("__")]
