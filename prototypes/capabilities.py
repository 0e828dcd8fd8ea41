"""What an untrusted method may write, and the grants that widen it.

By default a method written by a mind (or marked untrusted) may write only
its receiver's own data slots (and what they hold) and the objects it created
in the call (``clone``). Anything else needs a grant of that kind, recorded
on the method's version in the image with who granted it and when:

- ``parents``: the receiver's parent slots (``name*``);
- ``methods``: slots that hold methods (replacing or removing one);
- ``limits``: ``method_limits``, anywhere;
- ``others``: slots of objects other than the receiver;
- ``well-known``: the image's well-known prototypes (``traits``, the minds,
  ``memory``, ``extension``, the PSM's states...), receiver included.

A method's provenance and version history are never reachable from a method
at all. A new version of a method starts with no grants.
"""
import time

from persistent.mapping import PersistentMapping

from .errors import SlotError

KINDS = ("parents", "methods", "limits", "others", "well-known")


class CapabilityError(PermissionError):
    """An untrusted method wrote where it has no grant (the call fails and is undone)."""


def grants(method) -> dict:
    """``kind -> {"by", "at"}`` of a method version (empty for none)."""
    return dict(getattr(method, "grants", None) or {})


def _method(obj, name):
    from .method import Method
    m = obj._slots.data.get(name)
    if not isinstance(m, Method):
        raise SlotError(f"{obj.short_name()} has no own method {name!r}")
    return m


def grant(obj, name, kind, by="owner"):
    """Let ``obj``'s method ``name`` (its current version) write what ``kind`` names."""
    if kind not in KINDS:
        raise ValueError(f"a grant is one of {', '.join(KINDS)}, not {kind!r}")
    m = _method(obj, name)
    if getattr(m, "grants", None) is None:
        m.grants = PersistentMapping()
    m.grants[kind] = {"by": str(by), "at": time.time()}
    return m


def revoke(obj, name, kind):
    m = _method(obj, name)
    if getattr(m, "grants", None) and kind in m.grants:
        del m.grants[kind]
    return m


class Rights:
    """One isolated call's rights: checked by the host on every write the worker asks for."""

    def __init__(self, receiver, method):
        self.receiver, self.method = receiver, method
        self.granted = set(grants(method))
        self.created = set()        # ids of objects made in this call
        self._well_known = None
        self.refused = None         # the first refusal: the call fails even if it was caught

    def well_known(self, target=None):
        """Ids of the image's well-known prototypes (the names bootstrap recorded).

        The image is found through any connection the call can see: the
        receiver's, an ancestor's or the target's (a receiver made in this
        transaction has none yet).
        """
        if self._well_known is None:
            from image.meta import get_meta
            objs = [self.receiver, *self.receiver.lookup_chain(), target]
            jar = next((o._p_jar for o in objs if o is not None and o._p_jar is not None), None)
            if jar is None:
                return set()          # nothing in an image: nothing well-known (yet)
            root = jar.root()
            self._well_known = {id(root[n]) for n in get_meta(root).get("well_known", ())
                                if n in root}
        return self._well_known

    def created_now(self, obj):
        self.created.add(id(obj))

    def needed(self, obj, slot, old, new):
        from .method import Method
        if id(obj) in self.created:
            # its own new object, except for limits: a clone's calls would run under them
            return [] if slot != "method_limits" or "limits" in self.granted else ["limits"]
        need = []
        if obj is not self.receiver:
            need.append("others")
        if id(obj) in self.well_known(obj):
            need.append("well-known")
        if slot.endswith("*"):
            need.append("parents")
        if slot == "method_limits":
            need.append("limits")
        if (isinstance(old, Method) or isinstance(new, Method)
                or isinstance(obj.lookup(slot, None), Method)):   # shadowing one counts too
            need.append("methods")
        return [k for k in need if k not in self.granted]

    def check(self, obj, slot, old=None, new=None, what="write", by=()):
        """Refuse the write unless every method running (``by``: nested calls) may make it."""
        granted = self.granted
        for m in by:            # a method called from a granted one has only its own grants
            granted = granted & set(grants(m))
        saved, self.granted = self.granted, granted
        try:
            missing = self.needed(obj, slot, old, new)
        finally:
            self.granted = saved
        if missing:
            me = f"{self.receiver.short_name()}.{self.method.name}"
            err = CapabilityError(
                f"{me} may not {what} {obj.short_name()}.{slot}: that needs the "
                f"{' and '.join(repr(k) for k in missing)} grant"
                f"{'s' if len(missing) > 1 else ''}. If it should, the owner can grant it: "
                f":grant {self.receiver.short_name()} {self.method.name} {missing[0]}")
            if self.refused is None:
                self.refused = err
            raise err
