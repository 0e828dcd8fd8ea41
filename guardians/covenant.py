"""Persistence guardian: the covenant, checked on the AST.

ZODB sees a write through a slot (``self.x = v``: the slot mapping is a
PersistentMapping) but not an in-place change to a plain list/dict/set held
in a slot (``self.items.append(x)``, ``self.cfg['k'] = v``, ``del
self.cfg[k]``, ``self.counts[k] += 1``), also through a local alias
(``items = self.items; items.append(x)``). Slots now store tracked
containers (``prototypes.persist``), so such a change is rejected only when
the receiver's slot still holds a plain container (an older image, before
``batos init`` migrated it), or the method says ``self._p_changed = True``.
"""
import ast

from .security import is_changed_marker
from .verdict import Reason

MUTATORS = frozenset({
    "append", "extend", "insert", "remove", "pop", "clear", "update", "add",
    "discard", "setdefault", "sort", "reverse", "popitem", "difference_update",
    "intersection_update", "symmetric_difference_update",
})


class Mutation:
    def __init__(self, slot, line, what):
        self.slot, self.line, self.what = slot, line, what


def mutations(fn) -> list:
    """Every in-place change to a container rooted in a slot of the receiver."""
    params = fn.args.posonlyargs + fn.args.args
    if not params:
        return []
    me = params[0].arg
    aliases = {}

    def root_slot(expr):
        """Slot name an expression's container comes from, if any."""
        depth = 0
        while isinstance(expr, (ast.Subscript, ast.Attribute)):
            if (isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name)
                    and expr.value.id == me):
                return expr.attr
            expr, depth = expr.value, depth + 1
        if isinstance(expr, ast.Name) and expr.id in aliases:
            return aliases[expr.id]
        return None

    # Aliases first (flow-insensitive: any local ever bound to a slot's container).
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Attribute, ast.Subscript)):
            slot = root_slot(node.value)
            if slot:
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        aliases[t.id] = slot
    found = []
    for node in ast.walk(fn):
        line = getattr(node, "lineno", None)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in MUTATORS
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id == me)):
            slot = root_slot(node.func.value)
            if slot:
                found.append(Mutation(slot, line, f".{node.func.attr}(...)"))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in _flatten(targets):
                if isinstance(t, ast.Subscript):
                    slot = root_slot(t.value)
                    if slot:
                        verb = {ast.Delete: "del", ast.AugAssign: "augmented item assignment"}.get(
                            type(node), "item assignment")
                        found.append(Mutation(slot, line, verb))
    return found


def _flatten(targets):
    for t in targets:
        if isinstance(t, (ast.Tuple, ast.List)):
            yield from _flatten(t.elts)
        else:
            yield t


def has_marker(fn) -> bool:
    params = fn.args.posonlyargs + fn.args.args
    me = params[0].arg if params else "self"
    return any(is_changed_marker(n, me) for n in ast.walk(fn))


def tracked(receiver, slot) -> bool:
    """Will ZODB see an in-place change to what the slot holds?

    Every value stored in a slot is made tracked when it is stored (plain
    containers become persistent ones, ``prototypes.persist``), so only a
    value an older image still holds as a plain container is untracked.
    """
    if receiver is None:
        return True
    try:
        value = receiver.lookup(slot)
    except Exception:     # unknown slot: whatever is stored there will be tracked
        return True
    return not _plain_container(value)


def _plain_container(value):
    return isinstance(value, (list, dict, set)) or (
        type(value) is tuple and any(_plain_container(v) for v in value))


def check(fn, receiver=None) -> list:
    if fn is None or has_marker(fn):
        return []
    reasons = []
    for m in mutations(fn):
        if tracked(receiver, m.slot):
            continue
        reasons.append(Reason(
            "persistence-covenant", m.line,
            f"in-place change to slot {m.slot!r} ({m.what}): the slot still holds a plain "
            f"{type(receiver.lookup(m.slot)).__name__}, whose changes ZODB cannot see (an image "
            "from before slots were tracked). Run `batos init` on the image to track it, "
            "assign a new value to the slot, or add `self._p_changed = True`"))
    return reasons


def changed_slots(fn) -> list:
    """Slot names the method mutates in place (for the sandbox's marker)."""
    return sorted({m.slot for m in mutations(fn)})
