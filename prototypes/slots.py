"""The slot mapping of a prototype object.

A PersistentMapping (so every write through it is tracked by ZODB) that also
keeps two volatile things, both in ``_v_`` attributes that ZODB never stores:

* the tuple of its parent objects, in the order their slots were added;
* the prototypes that cached a value read through this mapping (their read
  cache, see ``prototypes.object``), so they can be told to forget it.

Both are dropped whenever the mapping changes here, is invalidated by
another transaction's commit, is rolled back by an abort, or is ghosted by
the object cache: every mutator and ``_p_invalidate``/``_p_deactivate`` go
through ``_changed``. A cached read is therefore never stale.
"""
import weakref

from persistent.mapping import PersistentMapping

PARENT_SUFFIX = "*"


def is_parent_name(name: str) -> bool:
    return name.endswith(PARENT_SUFFIX)


class Slots(PersistentMapping):

    def parents(self):
        """Parent objects in the order their slots were added (cached)."""
        d = self.__dict__
        cached = d.get("_v_parents")
        if cached is None:
            cached = d["_v_parents"] = tuple(
                v for k, v in self.data.items() if k[-1:] == PARENT_SUFFIX)
        return cached

    def add_reader(self, obj):
        """Remember that ``obj`` cached a value read through this mapping."""
        readers = self.__dict__.get("_v_readers")
        if readers is None:
            readers = self.__dict__["_v_readers"] = weakref.WeakSet()
        readers.add(obj)

    def _changed(self):
        d = self.__dict__
        d.pop("_v_parents", None)
        readers = d.get("_v_readers")
        if readers:
            gone = list(readers)
            readers.clear()          # kept: the next reader re-registers cheaply
            for obj in gone:
                obj._forget_reads()

    def _p_invalidate(self):
        self._changed()
        super()._p_invalidate()

    def _p_deactivate(self):
        self._changed()
        super()._p_deactivate()


def _mutator(name):
    base = getattr(PersistentMapping, name)

    def method(self, *args, **kw):
        result = base(self, *args, **kw)
        self._changed()
        return result
    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name in ("__setitem__", "__delitem__", "clear", "update", "setdefault", "pop", "popitem"):
    setattr(Slots, _name, _mutator(_name))
del _name
