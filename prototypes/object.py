"""UvmObject: a prototype object whose state is a PersistentMapping of slots.

Self physics, not classes: new kinds of objects are clones with slots added
at run time. Lookup order for ``obj.name`` (the rule, written once):

1. ``obj``'s own slots;
2. its parents, depth-first, in the order their ``*`` slots were added, each
   ancestor searched once (first hit wins, so diamonds are fine); a parent
   that leads back onto the current search path is a DelegationCycle;
3. ``doesNotUnderstand``: a ``doesNotUnderstand`` method slot found in the
   chain gets the reified Message; else an extender installed by the host
   (``prototypes.extension``) that accepts the message makes the read a
   ``Send``, which asks a mind for the method when called; else a
   DoesNotUnderstand (an AttributeError) names the selector and the chain.

The names of the UvmObject API (``clone``, ``lookup``, ``slot_names``, ...)
are reserved: no slot may take one. Names starting with ``_`` are never
slots: they are Python/ZODB machinery. A method slot (``Method``) read
through lookup comes back bound to the receiver the message was sent to, not
to the object that holds it.

Reads are cached per object in its instance dict (never stored: only
``_slots`` is pickled), so a repeated read of a slot, own or inherited, is a
plain attribute read. Every slot mapping on the searched path remembers the
reader and makes it forget its cache when the mapping changes, is
invalidated by another commit, rolled back or ghosted (see ``slots.py``).
"""
import keyword

from persistent import GHOST, Persistent
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from zope.interface import implementer

from . import extension
from .errors import DelegationCycle, DoesNotUnderstand, SlotError
from .interfaces import IPrototype
from .method import BoundMethod, Method, install
from .clone import _copy
from .persist import PersistentSet, Unstorable, tracked
from .slots import Slots, is_parent_name

_psa = Persistent.__setattr__
_MISSING = object()
_CONTAINERS = (PersistentList, PersistentMapping, PersistentSet)


class Message:
    """A reified message: what doesNotUnderstand receives.

    ``args``/``kwargs`` are known when the message was sent as a call (the
    extension hook); a ``doesNotUnderstand`` method slot is asked on the read
    itself, so it gets none. ``site`` is ``file:line: source`` when known.
    """

    def __init__(self, receiver, selector, chain, args=(), kwargs=None, site=None):
        self.receiver, self.selector, self.chain = receiver, selector, chain
        self.args, self.kwargs, self.site = tuple(args), dict(kwargs or {}), site

    def __repr__(self):
        return f"<Message {self.selector!r} to {self.receiver.short_name()}>"


_VALID = set()      # names already checked: the check runs once per distinct name


def check_slot_name(name):
    if name in _VALID:
        return
    if not isinstance(name, str):
        raise SlotError(f"slot names are strings, not {type(name).__name__}")
    base = name[:-1] if is_parent_name(name) else name
    if not base.isidentifier() or keyword.iskeyword(base) or base.startswith("_"):
        raise SlotError(f"bad slot name {name!r}: use an identifier not starting with '_' "
                        "(add '*' at the end for a parent slot)")
    if name in RESERVED:
        raise SlotError(f"{name!r} is a UvmObject API name and cannot be a slot")
    if len(_VALID) < 100_000:
        _VALID.add(name)


@implementer(IPrototype)
class UvmObject(Persistent):

    __iter__ = None     # __getitem__ is slot access, not the sequence protocol

    def __init__(self, **slots):
        for name, value in slots.items():
            check_slot_name(name)
            if name[-1] == "*":
                if not isinstance(value, UvmObject):
                    raise SlotError(f"parent slot {name!r} must hold a prototype object, "
                                    f"not {type(value).__name__}")
            else:
                slots[name] = _tracked(name, value)
        # Neither object is in a database yet, so nothing needs tracking: adopt
        # the keyword dict as the mapping's data. A new object has no readers
        # and cannot be its own ancestor.
        fresh = Slots.__new__(Slots)
        fresh.__dict__["data"] = slots
        self.__dict__["_slots"] = fresh

    # -- lookup ---------------------------------------------------------------
    # Hits on the read cache must cost what a plain attribute read costs. With
    # Persistent's own __getattribute__ plus a __getattr__, CPython calls the
    # former through a slow generic path (~3x a plain read); object's generic
    # one takes its C fast path. Ghosts have an empty __dict__, so they miss
    # and land in __getattr__, which unghostifies them first.
    __getattribute__ = object.__getattribute__

    def __getattr__(self, name):
        """Reached on a miss: a ghost to load, or a slot not cached yet."""
        if self._p_state == GHOST:
            self._p_activate()
            d = self.__dict__
            if name in d:
                return d[name]
        if name[0] == "_":
            raise AttributeError(name)
        value, path = _resolve(self, name)
        if value is _MISSING:
            return _not_understood(self, name)
        if type(value) is Method:
            value = BoundMethod(self, value)
        self.__dict__[name] = value
        for slots in path:
            slots.add_reader(self)
        return value

    def _forget_reads(self, name=None):
        """Drop cached reads: of slot ``name``, or all of them."""
        d = self.__dict__
        if name is not None:
            d.pop(name, None)
            return
        for key in [k for k in d if k[0] != "_"]:
            del d[key]

    def lookup(self, name, default=_MISSING):
        """The raw slot value (methods unbound) from the chain, or ``default``."""
        value, _ = _resolve(self, name)
        if value is _MISSING:
            if default is _MISSING:
                raise SlotError(f"{self.short_name()} has no slot {name!r} in its chain")
            return default
        return value

    def holder_of(self, name):
        """The object in the chain that holds slot ``name`` (None if none)."""
        for obj in self.lookup_chain():
            if name in obj._slots.data:
                return obj
        return None

    def lookup_chain(self):
        """self, then every ancestor in lookup order."""
        chain, seen = [self], {id(self)}
        _linearize(self, [self], seen, chain)
        return chain

    # -- slots ----------------------------------------------------------------
    def __setattr__(self, name, value):
        if name[0] == "_":
            _psa(self, name, value)
        else:
            self.set_slot(name, value)

    def __delattr__(self, name):
        if name[0] == "_":
            Persistent.__delattr__(self, name)
        else:
            self.remove_slot(name)

    def set_slot(self, name, value):
        check_slot_name(name)
        if is_parent_name(name):
            if not isinstance(value, UvmObject):
                raise SlotError(f"parent slot {name!r} must hold a prototype object, "
                                f"not {type(value).__name__}")
            if value is self:
                raise DelegationCycle([self, self])
            _tracked(name, value, self._p_jar)          # a parent from another connection
            if any(o is self for o in value.lookup_chain()):
                raise DelegationCycle([self] + _path_to(value, self) + [self])
        else:
            if (type(value) in _CONTAINERS and value._p_jar is not None
                    and self._slots.data.get(name) is not value):
                # stored in another slot already: this one gets its own copy, so that a
                # container has one owner, where it is stored, whatever path reads it later
                value = _copy(value, {})
            value = _tracked(name, value, self._p_jar)   # plain containers become tracked
        slots = self._slots
        slots[name] = value              # tracked write; every cached read of it is forgotten
        if type(value) is not Method and name[-1] != "*":
            self.__dict__[name] = value  # an own slot wins lookup: cache it now
            slots.add_reader(self)

    def remove_slot(self, name):
        slots = self._slots
        if name not in slots.data:
            raise SlotError(f"{self.short_name()} has no own slot {name!r}")
        del slots[name]

    def __getitem__(self, name):
        return self.lookup(name)

    def __setitem__(self, name, value):
        self.set_slot(name, value)

    def __delitem__(self, name):
        self.remove_slot(name)

    def __contains__(self, name):
        return self.lookup(name, _MISSING) is not _MISSING

    # RestrictedPython's write guard lets sandboxed code assign through these.
    def __guarded_setattr__(self, name, value):
        self.set_slot(name, value)

    def __guarded_setitem__(self, name, value):
        self.set_slot(name, value)

    def __guarded_delattr__(self, name):
        self.remove_slot(name)

    # -- introspection --------------------------------------------------------
    def slot_names(self):
        """Own slot names, in the order they were added."""
        return list(self._slots.data)

    def own_slots(self):
        return dict(self._slots.data)

    def parents(self):
        return list(self._slots.parents())

    def all_slot_names(self):
        """Every slot name reachable, own first, in lookup order."""
        names = {}                       # a dict: ordered, and each name checked once
        for obj in self.lookup_chain():
            for n in obj._slots.data:
                names.setdefault(n)
        return list(names)

    def short_name(self):
        name = self._slots.data.get("name")
        if not isinstance(name, str):
            oid = self._p_oid
            name = "UvmObject@" + (oid.hex().lstrip("0") or "0" if oid else hex(id(self)))
        return name

    def __repr__(self):
        slots = self._slots.data
        own = [n for n in slots if not is_parent_name(n)]
        shown = ", ".join(own[:8]) + (", …" if len(own) > 8 else "")
        parents = ", ".join(f"{n}={slots[n].short_name()}" for n in slots if is_parent_name(n))
        return f"<{self.short_name()} slots=[{shown}]" + (f" parents=[{parents}]>" if parents else ">")

    # -- behaviour ------------------------------------------------------------
    def clone(self, **overrides):
        """A new object with a deep copy of the slot graph (see prototypes.clone)."""
        from .clone import clone
        return clone(self, **overrides)

    def define(self, name, source, provenance=None):
        """Vet ``source`` with the guardians and install it as method slot ``name``."""
        from guardians import vet
        verdict = vet(source, receiver=self, name=name)
        verdict.raise_if_rejected()
        return install(self, name, verdict.source, provenance)

    # -- persistence ----------------------------------------------------------
    def __getstate__(self):
        return {"_slots": self.__dict__["_slots"]}     # never the read cache

    def __setstate__(self, state):
        d = self.__dict__
        d.clear()
        d["_slots"] = state["_slots"]


def _tracked(name, value, jar=None):
    try:
        return tracked(value, jar=jar)
    except Unstorable as e:
        raise Unstorable(f"slot {name!r}: {e}") from None


def _resolve(obj, name):
    """``(value, slot mappings searched)``; value is _MISSING when not found."""
    slots = obj._slots
    if name in slots.data:
        return slots.data[name], (slots,)
    path = [slots]
    value = _search(slots, name, [obj], set(), path)
    return value, path


def _search(slots, name, chain, seen, searched):
    """Depth-first search of the parents of the object owning ``slots``."""
    for parent in slots.parents():
        if any(parent is p for p in chain):
            raise DelegationCycle(chain[next(i for i, p in enumerate(chain) if p is parent):] + [parent])
        if id(parent) in seen:
            continue
        seen.add(id(parent))
        pslots = parent._slots
        searched.append(pslots)
        if name in pslots.data:
            return pslots.data[name]
        chain.append(parent)
        value = _search(pslots, name, chain, seen, searched)
        chain.pop()
        if value is not _MISSING:
            return value
    return _MISSING


def _linearize(obj, path, seen, out):
    for parent in obj._slots.parents():
        if any(parent is p for p in path):
            raise DelegationCycle(path[next(i for i, p in enumerate(path) if p is parent):] + [parent])
        if id(parent) in seen:
            continue
        seen.add(id(parent))
        out.append(parent)
        path.append(parent)
        _linearize(parent, path, seen, out)
        path.pop()


def _path_to(start, target, dead=None):
    """A parent path from ``start`` down to ``target`` (for cycle messages); each object is
    searched once (``dead``: those that cannot reach it), so a diamond costs its size."""
    dead = set() if dead is None else dead
    for parent in start._slots.parents():
        if parent is target:
            return [start]
        if id(parent) in dead:
            continue
        sub = _path_to(parent, target, dead)
        if sub:
            return [start] + sub
        dead.add(id(parent))
    return []


def _not_understood(receiver, selector):
    chain = receiver.lookup_chain()
    handler = receiver.lookup("doesNotUnderstand", None)
    if isinstance(handler, Method):
        return BoundMethod(receiver, handler)(Message(receiver, selector, chain))
    extender = extension.current()
    if extender is not None and extender.accepts(receiver, selector):
        return extension.Send(extender, receiver, selector, chain)
    raise DoesNotUnderstand(receiver, selector, chain)


RESERVED = frozenset(n for n in vars(UvmObject) if not n.startswith("_"))
