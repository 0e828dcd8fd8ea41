"""The slot mapping of a prototype object.

A PersistentMapping (so every write through it is tracked) that keeps a
volatile cache of its parent objects. The cache lives in a ``_v_`` attribute:
ZODB clears it whenever the mapping is ghostified or invalidated, and every
mutator below clears it too, so it is never stale.
"""
from persistent.mapping import PersistentMapping

PARENT_SUFFIX = "*"


def is_parent_name(name: str) -> bool:
    return name.endswith(PARENT_SUFFIX)


class Slots(PersistentMapping):

    def parents(self):
        """Parent objects in the order their slots were added (cached)."""
        try:
            cached = self._v_parents
        except AttributeError:
            cached = None
        if cached is None:
            cached = self._v_parents = tuple(
                v for k, v in self.data.items() if k[-1:] == PARENT_SUFFIX)
        return cached

    def _forget(self):
        self._v_parents = None


def _mutator(name):
    base = getattr(PersistentMapping, name)

    def method(self, *args, **kw):
        self._v_parents = None
        return base(self, *args, **kw)
    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name in ("__setitem__", "__delitem__", "clear", "update", "setdefault", "pop", "popitem"):
    setattr(Slots, _name, _mutator(_name))
del _name
