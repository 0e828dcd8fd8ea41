"""Calling an untrusted method in an isolated worker: the host's broker.

``call(receiver, method, args, kw, limits)`` sends the method's source and
its arguments to a worker (``guardians.workers``) and serves what the worker
asks while it runs: slot reads, slot writes, changes to tracked containers,
and the prototype API (``slot_names``, ``lookup``, ``clone``...). Every write
is checked against the method's rights (``prototypes.capabilities``) and
applied at once to the live objects in the caller's transaction, with an
undo record. So, as for an in-process call:

- the call's writes land in the caller's transaction and commit with it;
- if the call fails for any reason (an exception, a limit, a refused write
  even when the method caught the refusal, a crash of the worker, the host's
  Ctrl-C) every write it made is undone before the error reaches the caller;
- once the call has returned, nothing it left behind can write: the handle
  table is closed and the worker refuses stale stand-ins.

Values crossing the boundary are plain data or handles to host objects;
the worker never sees a ZODB object, a connection or a file.
"""
import builtins
import logging

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from guardians import limits as lim
from guardians import wire
from guardians.sandbox import SandboxError

from .capabilities import Rights
from .method import Method, savepoint_of, undo_to
from .persist import PersistentSet, tracked
from .slots import Slots

log = logging.getLogger("prototypes.isolation")

_MISSING = object()
_READ_API = frozenset({"slot_names", "own_slots", "short_name", "all_slot_names", "parents",
                       "lookup_chain", "holder_of", "lookup", "has", "repr"})
_RAISE = {"ZeroDivisionError", "ValueError", "TypeError", "KeyError", "IndexError",
          "AttributeError", "RecursionError", "ArithmeticError", "OverflowError",
          "AssertionError", "LookupError", "NameError", "UnboundLocalError", "RuntimeError",
          "NotImplementedError", "StopIteration", "UnicodeError", "PermissionError",
          "FloatingPointError"}


class IsolatedError(RuntimeError):
    """A method in a worker raised an exception of a kind the host does not re-create."""

    def __init__(self, kind, message):
        self.kind = kind
        super().__init__(f"{kind}: {message}")


class Undo:
    """What an isolated call changed, to put back if it fails."""

    def __init__(self):
        self.entries = []
        self.seen = set()

    def slot(self, obj, name):
        key = ("slot", id(obj), name)
        if key not in self.seen:
            self.seen.add(key)
            self.entries.append(("slot", obj, name, obj._slots.data.get(name, _MISSING)))

    def container(self, c):
        key = ("container", id(c))
        if key not in self.seen:
            self.seen.add(key)
            data = c.data
            self.entries.append(("container", c, None, type(data)(data)))

    def rollback(self, kept=None):
        """Put back what was changed, but on objects of connection ``kept`` (a savepoint of
        its transaction put those back): objects outside any connection, or in another."""
        for kind, obj, name, old in reversed(self.entries):
            if kept is not None and obj._p_jar is kept:
                continue
            try:
                if kind == "slot":
                    if old is _MISSING:
                        if name in obj._slots.data:
                            obj.remove_slot(name)
                    else:
                        obj.set_slot(name, old)        # the value it held, as it was
                else:
                    obj.data = old
                    obj._p_changed = True
            except Exception:       # noqa: BLE001 - undo as much as can be undone
                log.exception("could not undo a write of an isolated call")
        self.entries.clear()


class Broker:
    """The host side of one isolated call (handles, rights, undo)."""

    def __init__(self, receiver, method):
        self.objects = {}       # handle -> object
        self.handles = {}       # id(object) -> handle
        self.owner = {}         # handle of a container -> (object whose slot holds it, slot)
        self.sent = set()       # handles whose contents the worker has
        self.rights = Rights(receiver, method)
        self.undo = Undo()
        self.receiver = receiver

    # -- handles ------------------------------------------------------------------
    def handle(self, obj, owner=None, slot=None):
        h = self.handles.get(id(obj))
        if h is None:
            h = len(self.objects) + 1
            self.objects[h] = obj
            self.handles[id(obj)] = h
        if owner is not None and h not in self.owner:   # first seen as an argument: now known
            self.owner[h] = (owner, slot)
        return h

    def describe(self, obj, owner=None, slot=None, bound=None):
        from .object import Message, UvmObject
        h = self.handle(obj, owner, slot)
        if h in self.sent:
            return {"h": h}
        t = type(obj)
        if isinstance(obj, UvmObject):
            desc = {"h": h, "k": "o", "n": obj.short_name()}
        elif t is Method:
            if bound is None:
                desc = {"h": h, "k": "x", "n": "method"}
            else:       # never cached: the same method read through two objects binds to each
                return {"h": h, "k": "m", "name": obj.name, "src": obj.source,
                        "r": self.describe(bound)}
        elif t is PersistentList:
            owner, slot = self.owner.get(h, (owner, slot))
            desc = {"h": h, "k": "l", "v": self.encode(list(obj.data), owner, slot)}
        elif t is PersistentMapping:
            owner, slot = self.owner.get(h, (owner, slot))
            desc = {"h": h, "k": "d", "v": self.encode(dict(obj.data), owner, slot)}
        elif t is PersistentSet:
            desc = {"h": h, "k": "s", "v": self.encode(set(obj.data), owner, slot)}
        elif t is Message:          # what a doesNotUnderstand method gets: plain data and handles
            desc = {"h": h, "k": "g", "v": self.encode(
                {"receiver": obj.receiver, "selector": obj.selector, "args": tuple(obj.args),
                 "kwargs": dict(obj.kwargs), "site": obj.site})}
        else:
            desc = {"h": h, "k": "x", "n": t.__name__}
        self.sent.add(h)
        return desc

    def encode(self, value, owner=None, slot=None, bound=None):
        return wire.encode(value, lambda v: self.describe(v, owner, slot, bound))

    def decode(self, value):
        return wire.decode(value, self._object)

    def _object(self, desc):
        h = desc.get("h")
        obj = self.objects.get(h) if type(h) is int else None
        if obj is None:
            raise wire.WireError("a handle this call never gave out")
        if type(obj) in (Method, Slots):
            raise SandboxError("a method cannot be stored or passed from an isolated method")
        return obj

    def prototype(self, msg):
        from .object import UvmObject
        obj = self._object({"h": msg.get("h")})
        if not isinstance(obj, UvmObject):
            raise TypeError(f"a {type(obj).__name__} has no slots")
        return obj

    def slot_name(self, msg):
        name = msg.get("name")
        if not isinstance(name, str) or not name or name[0] == "_":
            raise SandboxError(f"access to slot {name!r} is not allowed")
        return name

    # -- serving the worker -------------------------------------------------------
    def serve(self, msg):
        try:
            if not isinstance(msg, dict):
                raise wire.WireError("a request that is not an object")
            op = msg.get("op")
            handler = getattr(self, f"do_{op}", None) if op in _OPS else None
            if handler is None:
                raise wire.WireError(f"an unknown request {op!r}")
            return {"ok": handler(msg)}
        except wire.WireError:
            raise               # no honest worker sends it: guardians.workers stops the worker
        except (RecursionError, MemoryError) as e:
            return {"err": ["SandboxError", f"refused: {type(e).__name__}: {e}"]}
        except Exception as e:      # noqa: BLE001 - the method sees the error, as in process
            return {"err": [type(e).__name__, str(e)]}

    def do_get(self, msg):
        obj, name = self.prototype(msg), self.slot_name(msg)
        value = obj.lookup(name, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"{obj.short_name()} does not understand {name!r}")
        return self.encode(value, obj.holder_of(name), name, bound=obj)

    def adopt(self, value, obj):
        """``value`` with every tracked container another object holds replaced by a copy.

        Storing another object's list in your own slot must not give you a way
        to change it later: you get your own copy (as ``clone`` would).
        """
        from .clone import _copy
        t = type(value)
        if t in _TRACKED:
            owner = self.owner.get(self.handles.get(id(value)), (None,))[0]
            if owner is not None and (owner is obj or id(owner) in self.rights.created):
                return value
            return _copy(value, {})
        if t in (list, tuple):
            return t(self.adopt(v, obj) for v in value)
        if t is dict:
            return {k: self.adopt(v, obj) for k, v in value.items()}
        return value

    def running(self, msg):
        """The nested methods running in the worker (their grants narrow the call's)."""
        by = msg.get("by") or []
        if not isinstance(by, list):
            raise wire.WireError("malformed method stack")
        out = []
        for h in by:
            m = self.objects.get(h) if type(h) is int else None
            if type(m) is not Method:
                raise wire.WireError("a method stack naming something that is not a method")
            out.append(m)
        return out

    def do_set(self, msg):
        obj, name = self.prototype(msg), self.slot_name(msg)
        value = self.adopt(self.decode(msg.get("v")), obj)
        old = obj._slots.data.get(name)
        by = self.running(msg)
        self.rights.check(obj, name, old, value, by=by)
        self.undo.slot(obj, name)
        before = _limits(obj) if name.endswith("*") else None
        obj.set_slot(name, value)
        if name.endswith("*") and _limits(obj) != before:    # the calls it runs: limits
            self.rights.check(obj, "method_limits", by=by, what="take the limits of a new "
                              "parent into")

    def do_del(self, msg):
        obj, name = self.prototype(msg), self.slot_name(msg)
        self.rights.check(obj, name, obj._slots.data.get(name), what="delete",
                          by=self.running(msg))
        self.undo.slot(obj, name)
        obj.remove_slot(name)

    def do_api(self, msg):
        obj, fn = self.prototype(msg), msg.get("fn")
        args = self.decode(msg.get("a", {"l": []}))
        kw = self.decode(msg.get("kw", {"d": []}))
        if not isinstance(args, list) or not isinstance(kw, dict):
            raise wire.WireError("malformed arguments")
        if fn == "clone":
            for name, value in kw.items():
                if not isinstance(name, str) or name[:1] == "_":
                    raise SandboxError(f"slot {name!r} is not allowed")
                if name == "method_limits":     # a clone's calls would run under these
                    self.rights.check(obj, name, by=self.running(msg), what="set on a clone of")
            new = obj.clone(**{k: self.adopt(v, None) for k, v in kw.items()})
            self.rights.created_now(new)
            if _limits(new) != _limits(obj):    # a parent given to the clone: its limits
                self.rights.check(new, "method_limits", by=self.running(msg),
                                  what="take the limits of a new parent into")
            return self.encode(new)
        if fn not in _READ_API:
            raise SandboxError(f"{fn!r} is not part of what a method may call")
        if fn == "repr":
            return repr(obj)
        if fn == "has":
            return obj.lookup(*args[:1], _MISSING) is not _MISSING
        if fn in ("lookup", "holder_of"):
            if not args or not isinstance(args[0], str) or args[0][:1] == "_":
                raise SandboxError("a slot name is a string not starting with '_'")
            if fn == "lookup" and len(args) == 1 and obj.lookup(args[0], _MISSING) is _MISSING:
                raise KeyError(f"{obj.short_name()} has no slot {args[0]!r} in its chain")
        value = getattr(obj, fn)(*args)
        holder = obj.holder_of(args[0]) if fn == "lookup" else obj
        return self.encode(value, holder, args[0] if fn == "lookup" else None, bound=obj)

    def do_mut(self, msg):
        c = self._object({"h": msg.get("h")})
        owner, slot = self.owner.get(self.handles[id(c)], (None, None))
        if owner is None:
            raise SandboxError("this container cannot be changed from a method")
        self.rights.check(owner, slot, what="change", by=self.running(msg))
        args = self.decode(msg.get("a", {"l": []}))
        if not isinstance(args, list):
            raise wire.WireError("malformed arguments")
        self.undo.container(c)
        out = _MUTATE[type(c)](c, msg.get("m"), [tracked(self.adopt(a, owner), jar=c._p_jar) for a in args])
        return self.encode(out, owner, slot)


def _limits(obj):
    """The method limits ``obj``'s calls run under (a plain dict, or None for the defaults)."""
    found = obj.lookup("method_limits", None)
    return dict(found) if found is not None else None


_OPS = frozenset({"get", "set", "del", "api", "mut"})
_TRACKED = (PersistentList, PersistentMapping, PersistentSet)


def _list_op(c, op, a):
    if op == "append":
        c.append(a[0])
        return a[0]
    if op == "extend":
        c.extend(a[0])
        return list(a[0])
    if op == "insert":
        c.insert(a[0], a[1])
        return a[1]
    if op == "pop":
        c.pop(a[0])
    elif op == "setitem":
        c[a[0]] = a[1]
        return a[1]
    elif op == "delitem":
        del c[a[0]]
    elif op == "clear":
        del c[:]
    elif op == "replace":
        c[:] = a[0]
        return list(a[0])
    else:
        raise SandboxError(f"unknown list change {op!r}")
    return None


def _dict_op(c, op, a):
    if op == "set":
        c[a[0]] = a[1]
        return a[1]
    if op == "del":
        del c[a[0]]
    elif op == "clear":
        c.clear()
    else:
        raise SandboxError(f"unknown dict change {op!r}")
    return None


def _set_op(c, op, a):
    if op == "add":
        c.add(a[0])
    elif op == "discard":
        c.discard(a[0])
    elif op == "clear":
        c.clear()
    elif op == "replace":
        c.data = set(a[0])
        c._p_changed = True
    else:
        raise SandboxError(f"unknown set change {op!r}")
    return None


_MUTATE = {PersistentList: _list_op, PersistentMapping: _dict_op, PersistentSet: _set_op}


def call(receiver, method, args, kw, settings=None):
    """Run ``method`` on ``receiver`` in a worker; return its result (see the module docstring)."""
    from guardians import workers
    limits = lim.check(settings)
    broker = Broker(receiver, method)
    what = f"{receiver.short_name()}.{method.name}"
    anchor = next((o for o in (receiver, *receiver.parents()) if o._p_jar is not None), None)
    savepoint = savepoint_of(anchor) if anchor is not None else None
    ok = False
    try:
        request = {"op": "call", "src": method.source, "name": method.name,
                   "recv": broker.encode(receiver), "args": broker.encode(list(args)),
                   "kw": broker.encode(dict(kw)), "limits": limits}
        reply = workers.run(request, broker.serve, limits, what)
        if broker.rights.refused is not None:
            raise broker.rights.refused
        if reply["op"] == "fail":
            raise _error(reply, what)
        result = broker.decode(reply.get("value"))
        ok = True
        return result
    finally:
        if not ok:
            # the savepoint puts back exactly what the image had (changed flags included);
            # the undo record covers objects outside any connection
            undo_to(savepoint, anchor)
            broker.undo.rollback(kept=anchor._p_jar if savepoint is not None else None)
        broker.objects.clear()          # the call is over: its handles mean nothing now


def _error(reply, what):
    kind, message = str(reply.get("type")), str(reply.get("message"))[:2000]
    if kind == "LimitExceeded":
        return lim.LimitExceeded(str(reply.get("kind") or "limit"), f"{what}: {message}")
    if kind == "SandboxError" or kind == "CallOver":
        return SandboxError(message)
    if kind in _RAISE:
        cls = getattr(builtins, kind)
        return cls(message)
    return IsolatedError(kind, message)
