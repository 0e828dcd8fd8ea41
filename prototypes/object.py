"""UvmObject: a prototype object whose state is a PersistentMapping of slots.

Self physics, not classes: new kinds of objects are clones with slots added
at run time. Lookup order for ``obj.name`` (the rule, written once):

1. ``obj``'s own slots;
2. its parents, depth-first, in the order their ``*`` slots were added, each
   ancestor searched once (first hit wins, so diamonds are fine); a parent
   that leads back onto the current search path is a DelegationCycle;
3. the UvmObject API below (``clone``, ``slot_names``, ...);
4. ``doesNotUnderstand``: a ``doesNotUnderstand`` method slot found in the
   chain gets the reified Message; without one a DoesNotUnderstand
   (an AttributeError) names the selector and the chain searched.

Names starting with ``_`` are never slots: they are Python/ZODB machinery.
A method slot (``Method``) read through lookup comes back bound to the
receiver the message was sent to, not the object that holds it.
"""
import keyword

from persistent import Persistent
from zope.interface import implementer

from .errors import DelegationCycle, DoesNotUnderstand, SlotError
from .interfaces import IPrototype
from .method import BoundMethod, Method
from .slots import Slots, is_parent_name

_pga = Persistent.__getattribute__
_psa = Persistent.__setattr__
_MISSING = object()


class Message:
    """A reified message: what doesNotUnderstand receives."""

    def __init__(self, receiver, selector, chain):
        self.receiver, self.selector, self.chain = receiver, selector, chain

    def __repr__(self):
        return f"<Message {self.selector!r} to {self.receiver.short_name()}>"


def check_slot_name(name):
    if not isinstance(name, str):
        raise SlotError(f"slot names are strings, not {type(name).__name__}")
    base = name[:-1] if is_parent_name(name) else name
    if not base.isidentifier() or keyword.iskeyword(base) or base.startswith("_"):
        raise SlotError(f"bad slot name {name!r}: use an identifier not starting with '_' "
                        "(add '*' at the end for a parent slot)")


@implementer(IPrototype)
class UvmObject(Persistent):

    __iter__ = None     # __getitem__ is slot access, not the sequence protocol

    def __init__(self, **slots):
        _psa(self, "_slots", Slots())
        for name, value in slots.items():
            self.set_slot(name, value)

    # -- lookup ---------------------------------------------------------------
    def __getattribute__(self, name):
        if name[0] == "_":
            return _pga(self, name)
        slots = _pga(self, "_slots")
        d = slots.data
        if name in d:
            v = d[name]
        else:
            try:
                v = _search(self, slots, name, [self], set())
            except DelegationCycle:
                if hasattr(UvmObject, name):    # the API stays usable, to fix the loop
                    return _pga(self, name)
                raise
            if v is _MISSING:
                try:
                    return _pga(self, name)     # the UvmObject API
                except AttributeError:
                    return _not_understood(self, name)
        if type(v) is Method:
            return BoundMethod(self, v)
        return v

    def lookup(self, name, default=_MISSING):
        """The raw slot value (methods unbound) from the chain, or ``default``."""
        slots = _pga(self, "_slots")
        if name in slots.data:
            return slots.data[name]
        v = _search(self, slots, name, [self], set())
        if v is _MISSING:
            if default is _MISSING:
                raise SlotError(f"{self.short_name()} has no slot {name!r} in its chain")
            return default
        return v

    def holder_of(self, name):
        """The object in the chain that holds slot ``name`` (None if none)."""
        for obj in self.lookup_chain():
            if name in _pga(obj, "_slots").data:
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
            if any(o is self for o in value.lookup_chain()):
                raise DelegationCycle([self] + _path_to(value, self) + [self])
        _pga(self, "_slots")[name] = value

    def remove_slot(self, name):
        slots = _pga(self, "_slots")
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
        return list(_pga(self, "_slots").data)

    def own_slots(self):
        return dict(_pga(self, "_slots").data)

    def parents(self):
        return list(_pga(self, "_slots").parents())

    def all_slot_names(self):
        """Every slot name reachable, own first, in lookup order."""
        names = []
        for obj in self.lookup_chain():
            names.extend(n for n in _pga(obj, "_slots").data if n not in names)
        return names

    def short_name(self):
        name = _pga(self, "_slots").data.get("name")
        if not isinstance(name, str):
            oid = _pga(self, "_p_oid")
            name = "UvmObject@" + (oid.hex().lstrip("0") or "0" if oid else hex(id(self)))
        return name

    def __repr__(self):
        slots = _pga(self, "_slots").data
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
        method = Method(name, verdict.source, provenance)
        method.function()          # compile now: a method that cannot compile is not installed
        self.set_slot(name, method)
        return method

    # -- persistence ----------------------------------------------------------
    def __getstate__(self):
        return {"_slots": _pga(self, "_slots")}

    def __setstate__(self, state):
        _pga(self, "__dict__").clear()
        _pga(self, "__dict__").update(state)


def _search(obj, slots, name, path, seen):
    """Depth-first search of ``obj``'s parents for slot ``name``."""
    for parent in slots.parents():
        if any(parent is p for p in path):
            raise DelegationCycle(path[next(i for i, p in enumerate(path) if p is parent):] + [parent])
        if id(parent) in seen:
            continue
        seen.add(id(parent))
        pslots = _pga(parent, "_slots")
        d = pslots.data
        if name in d:
            return d[name]
        path.append(parent)
        v = _search(parent, pslots, name, path, seen)
        path.pop()
        if v is not _MISSING:
            return v
    return _MISSING


def _linearize(obj, path, seen, out):
    for parent in _pga(obj, "_slots").parents():
        if any(parent is p for p in path):
            raise DelegationCycle(path[next(i for i, p in enumerate(path) if p is parent):] + [parent])
        if id(parent) in seen:
            continue
        seen.add(id(parent))
        out.append(parent)
        path.append(parent)
        _linearize(parent, path, seen, out)
        path.pop()


def _path_to(start, target):
    """A parent path from ``start`` down to ``target`` (for cycle messages)."""
    for parent in _pga(start, "_slots").parents():
        if parent is target:
            return [start]
        sub = _path_to(parent, target)
        if sub:
            return [start] + sub
    return []


def _not_understood(receiver, selector):
    chain = receiver.lookup_chain()
    handler = receiver.lookup("doesNotUnderstand", None)
    if isinstance(handler, Method):
        return BoundMethod(receiver, handler)(Message(receiver, selector, chain))
    raise DoesNotUnderstand(receiver, selector, chain)
