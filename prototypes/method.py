"""Methods are slots holding source text; the compiled function is volatile.

Two ways to run, one semantics (a call's writes are all or nothing, in the
caller's transaction; limits from the ``method_limits`` slot in the
receiver's chain):

- an **untrusted** method (written by a mind, or marked ``untrusted`` by the
  owner) always runs in an isolated worker process (``prototypes.isolation``),
  with the operating system holding its limits and the host checking every
  write against its capabilities;
- a method the owner wrote runs here, in process, under the guardians'
  in-interpreter budget (``guardians.limits``) and inside a savepoint: if
  the call raises, whatever it wrote is rolled back.
"""
import logging
import time
import types

from persistent import Persistent

log = logging.getLogger(__name__)
_GONE = object()


class Method(Persistent):
    """A method slot: vetted source, compiled on first use in each process.

    The compiled function lives in ``_v_function`` and is never persisted.
    ``provenance`` records who wrote the source and when; it is read-only
    (methods can reach it, and must not rewrite their own history).
    ``previous`` is the version this one replaced (None for the first), so
    every earlier version is kept and can be restored (``revert``).
    """
    previous = None        # images from before versions were kept load with none
    untrusted = False      # the owner's mark: run in a worker even though a person wrote it
    grants = None          # kind -> {"by", "at"}: what an untrusted method may also write

    def __init__(self, name, source, provenance=None, previous=None):
        self.name = name
        self.source = source
        self._provenance = dict(provenance or {}, installed=time.time())
        self.previous = previous

    @property
    def provenance(self):
        return types.MappingProxyType(self._provenance)

    @property
    def isolated(self) -> bool:
        """Does this method run in an isolated worker (written by a mind, or marked untrusted)?"""
        return bool(self.untrusted) or self._provenance.get("author") == "mind"

    def versions(self) -> list:
        """This version, then each earlier one, newest first."""
        out, m = [], self
        while m is not None:
            out.append(m)
            m = m.previous
        return out

    def __setattr__(self, name, value):
        if name == "source":                  # new source: the compiled cache is stale
            self.__dict__.pop("_v_function", None)
        super().__setattr__(name, value)

    def function(self):
        try:
            fn = self._v_function
        except AttributeError:
            fn = None
        if fn is None:
            from guardians.sandbox import compile_method
            fn = self._v_function = compile_method(self.source, self.name)
        return fn

    def __repr__(self):
        first = self.source.strip().splitlines()[0] if self.source.strip() else ""
        return f"<Method {self.name}: {first}>"


class BoundMethod:
    """A method slot bound to the receiver the message was sent to (Self semantics)."""
    __slots__ = ("method", "receiver")

    def __init__(self, receiver, method):
        self.receiver, self.method = receiver, method

    def __call__(self, *args, **kw):
        from guardians import limits
        method = self.method
        if method.isolated:
            from .isolation import call
            return call(self.receiver, method, args, kw,
                        self.receiver.lookup("method_limits", None))
        fn = method.function()
        if limits.current() is not None:           # called from method code: its budget
            return fn(self.receiver, *args, **kw)
        receiver = self.receiver
        settings = receiver.lookup("method_limits", None)
        savepoint = savepoint_of(receiver, detached=True)
        try:
            return limits.call(fn, (receiver, *args), kw, settings,
                               what=f"{receiver.short_name()}.{self.method.name}")
        except BaseException as e:
            undo_to(savepoint, receiver)
            if isinstance(e, (TypeError, NameError)) and getattr(fn, "renamed", None):
                from guardians.sandbox import unrename
                e.args = tuple(unrename(a, fn) if isinstance(a, str) else a for a in e.args)
            raise

    @property
    def source(self):
        return self.method.source

    def __repr__(self):
        return f"<bound {self.method!r} of {self.receiver.short_name()}>"


def _tracked_types():
    from persistent.list import PersistentList
    from persistent.mapping import PersistentMapping

    from .persist import PersistentSet
    return (PersistentList, PersistentMapping, PersistentSet)


class Detached:
    """What a savepoint is for a receiver in no connection: its own slots and the tracked
    containers under them, as they were, put back in place (the same objects)."""

    def __init__(self, obj):
        self.obj, self.slots = obj, dict(obj._slots.data)
        self.containers, todo, seen = [], list(self.slots.values()), set()
        kinds = _tracked_types()
        while todo:
            v = todo.pop()
            data = v.data if type(v) in kinds else None
            if data is None or id(v) in seen:
                continue
            seen.add(id(v))
            self.containers.append((v, type(data)(data)))
            todo.extend(data.values() if isinstance(data, dict) else data)

    def rollback(self):
        for c, data in self.containers:
            c.data = data
        obj, slots = self.obj, self.obj._slots.data
        for name in [n for n in slots if n not in self.slots]:
            obj.remove_slot(name)
        for name, value in self.slots.items():
            if slots.get(name, _GONE) is not value:
                obj.set_slot(name, value)


def savepoint_of(obj, detached=False):
    """A savepoint of the transaction ``obj``'s connection is in; for an object in no
    connection, a ``Detached`` record with ``detached`` (else None)."""
    jar = obj._p_jar
    if jar is None:
        return Detached(obj) if detached else None
    try:
        return jar.transaction_manager.get().savepoint(optimistic=True)
    except Exception as e:   # no transaction begun (explicit mode) or a manager without savepoints
        log.debug("no savepoint around a method call: %s", e)
        return None


def undo_to(savepoint, obj):
    if savepoint is None:
        return
    if isinstance(savepoint, Detached):
        savepoint.rollback()
        return
    try:
        savepoint.rollback()
    except TypeError:        # a data manager that cannot roll back: the transaction must not commit
        obj._p_jar.transaction_manager.get().doom()


def install(obj, name, source, provenance=None):
    """Compile vetted ``source`` and make it ``obj``'s method ``name``, keeping the one it replaces."""
    old = obj._slots.data.get(name)
    method = Method(name, source, provenance, previous=old if isinstance(old, Method) else None)
    method.function()          # compile now: a method that cannot compile is not installed
    obj.set_slot(name, method)
    return method


def revert(obj, name):
    """Restore the previous version of ``obj``'s own method ``name``; return it (None: removed).

    A method with no earlier version is removed, so the message is not
    understood again.
    """
    from .errors import SlotError
    current = obj._slots.data.get(name)
    if not isinstance(current, Method):
        raise SlotError(f"{obj.short_name()} has no own method {name!r}")
    if current.previous is None:
        obj.remove_slot(name)
        return None
    obj.set_slot(name, current.previous)
    return current.previous
