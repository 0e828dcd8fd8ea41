"""The slot mapping of a prototype object.

A PersistentMapping (so every write through it is tracked by ZODB) that also
keeps two volatile things, both in ``_v_`` attributes that ZODB never stores:

* the tuple of its parent objects, in the order their slots were added;
* the prototypes that cached a value read through this mapping (their read
  cache, see ``prototypes.object``), so they can be told to forget it.

Whenever the mapping changes here (readers forget the changed slot; a
parent change drops the parent tuple and makes readers forget everything),
or is invalidated by another transaction's commit, rolled back by an abort
or ghosted by the object cache (readers forget everything), every mutator
and ``_p_invalidate``/``_p_deactivate`` go through ``_changed``. A cached
read is therefore never stale.
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
            readers = self.__dict__["_v_readers"] = {}
        ref = readers.get(id(obj))
        if ref is None or ref() is not obj:    # ids are reused once an object dies
            readers[id(obj)] = weakref.ref(obj)

    def _changed(self, name=None):
        """Slot ``name`` (or, with None, any slot) changed: readers forget it."""
        d = self.__dict__
        if name is None or name[-1:] == PARENT_SUFFIX:
            d.pop("_v_parents", None)
            name = None                  # a new parent can change every lookup
        readers = d.get("_v_readers")
        if readers:
            for ref in list(readers.values()):
                obj = ref()
                if obj is not None:
                    obj._forget_reads(name)

    def _p_invalidate(self):
        self._changed()
        super()._p_invalidate()

    def _p_deactivate(self):
        self._changed()
        super()._p_deactivate()


def _mutator(name, keyed):
    base = getattr(PersistentMapping, name)

    def method(self, *args, **kw):
        result = base(self, *args, **kw)
        self._changed(args[0] if keyed else None)
        return result
    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name, _keyed in (("__setitem__", True), ("__delitem__", True), ("pop", True),
                      ("setdefault", True), ("clear", False), ("update", False),
                      ("popitem", False)):
    setattr(Slots, _name, _mutator(_name, _keyed))
del _name, _keyed
