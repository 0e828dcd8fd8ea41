"""Persistence-aware cloning.

A clone gets its own copy of the slot graph: containers (plain or
persistent, BTrees included) are copied recursively so the clone can change
them without touching the original; objects with identity — prototypes
(parents included), blobs and any other persistent object — are shared by
reference. Methods get a version of their own, with the same source and no
grants: a grant is given to one object's method, not to every clone of it.
"""
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from .method import Method
from .persist import PersistentSet
from .slots import Slots


def clone(proto, **overrides):
    from .object import UvmObject
    new = UvmObject()
    memo = {}
    for name, value in proto.own_slots().items():
        new.set_slot(name, _copy(value, memo))
    for name, value in overrides.items():
        new.set_slot(name, value)
    return new


def _is_btree(value):
    mod = type(value).__module__ or ""
    return mod.startswith("BTrees.") and hasattr(value, "items") and hasattr(value, "update")


def _copy(value, memo):
    key = id(value)
    if key in memo:
        return memo[key]
    t = type(value)
    if t in (list, PersistentList):
        new = memo[key] = t()
        new.extend(_copy(v, memo) for v in value)
    elif t in (dict, PersistentMapping, Slots):
        new = memo[key] = t()
        new.update({k: _copy(v, memo) for k, v in value.items()})
    elif t is PersistentSet:
        new = memo[key] = PersistentSet(_copy(v, memo) for v in value.data)
    elif t in (set, frozenset):
        new = memo[key] = t(_copy(v, memo) for v in value)
    elif t is tuple:
        new = memo[key] = tuple(_copy(v, memo) for v in value)
    elif t is Method:
        new = memo[key] = Method(value.name, value.source,
                                 dict(value.provenance, cloned=True))
        new.untrusted = value.untrusted
    elif _is_btree(value):
        new = memo[key] = t()
        new.update({k: _copy(v, memo) for k, v in value.items()})
    else:
        return value    # immutable data, or an object with identity: shared
    return new
