"""One table of list, dict and set operations, for every container that stands for one.

A slot's list is a different object on each path: a ``PersistentList`` in the
image (``prototypes.persist``), an ``RList`` in an isolated worker that sends
each change to the host (``guardians.remote``), replayed there by
``prototypes.isolation``. Each must change on exactly the operations that
change a plain list, or a write is lost (an inherited ``set.__ixor__`` changed
only the worker's copy) or invented. ``OPS`` says, for every public operation
of the plain type and every in-place operator, whether it reads or writes;
``unimplemented(cls, kind)`` names the writes a stand-in inherits from the
plain type instead of defining (tests/test_containers.py checks every
container against it, and runs generated method bodies on all paths).
"""
READ, WRITE = "read", "write"

OPS = {
    list: {
        "append": WRITE, "extend": WRITE, "insert": WRITE, "pop": WRITE, "remove": WRITE,
        "clear": WRITE, "sort": WRITE, "reverse": WRITE, "__setitem__": WRITE,
        "__delitem__": WRITE, "__iadd__": WRITE, "__imul__": WRITE,
        "copy": READ, "count": READ, "index": READ,
    },
    dict: {
        "pop": WRITE, "popitem": WRITE, "setdefault": WRITE, "update": WRITE, "clear": WRITE,
        "__setitem__": WRITE, "__delitem__": WRITE, "__ior__": WRITE,
        "copy": READ, "fromkeys": READ, "get": READ, "items": READ, "keys": READ,
        "values": READ,
    },
    set: {
        "add": WRITE, "clear": WRITE, "discard": WRITE, "pop": WRITE, "remove": WRITE,
        "update": WRITE, "difference_update": WRITE, "intersection_update": WRITE,
        "symmetric_difference_update": WRITE, "__ior__": WRITE, "__iand__": WRITE,
        "__isub__": WRITE, "__ixor__": WRITE,
        "copy": READ, "difference": READ, "intersection": READ, "isdisjoint": READ,
        "issubset": READ, "issuperset": READ, "symmetric_difference": READ, "union": READ,
    },
}


def writes(kind):
    """The operations that change a ``kind`` (list, dict or set)."""
    return {name for name, what in OPS[kind].items() if what == WRITE}


def public(kind):
    """What Python's ``kind`` offers that the table must classify."""
    return {n for n in dir(kind) if not n.startswith("_")} | {
        n for n in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "__ior__",
                    "__iand__", "__isub__", "__ixor__") if hasattr(kind, n)}


def unimplemented(cls, kind):
    """Writes of ``kind`` that ``cls`` does not define itself (nor in a base other than
    ``kind``): on a stand-in, each would change a local copy only."""
    missing = set()
    for name in writes(kind):
        owner = next((c for c in cls.__mro__ if name in c.__dict__), None)
        if owner is None or owner is kind or owner is object:
            missing.add(name)
    return missing


class SetInPlace:
    """A set's in-place operators as its named updates, for a stand-in whose updates are
    the ones that record the change (``update``, ``intersection_update``, ...)."""
    __slots__ = ()

    def __ior__(self, other):
        self.update(other)
        return self

    def __iand__(self, other):
        self.intersection_update(other)
        return self

    def __isub__(self, other):
        self.difference_update(other)
        return self

    def __ixor__(self, other):
        self.symmetric_difference_update(other)
        return self
