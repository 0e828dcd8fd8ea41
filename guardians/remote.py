"""Inside an isolated worker: stand-ins for the host's objects, and the call's session.

A method running in a worker sees its receiver as a ``Remote``: reading a
slot asks the host (answers are cached for the rest of the call, and the
cache is dropped on every write), writing one asks the host to write it
(the host checks the method's capabilities and may refuse). Tracked
containers arrive as ``RList``/``RDict``/``RSet``: real ``list``/``dict``/
``set`` subclasses holding a copy of the contents, whose in-place changes
are applied here and sent to the host, which applies them to the real
container. A method slot arrives as an ``RMethod`` and runs here, in the
same worker, with the same rights.

When the call ends its session closes: every stand-in from it refuses to
be used (a leftover generator or finalizer cannot write).
"""
import os
import sys
import types

from . import wire
from .containers import SetInPlace
from .sandbox import SandboxError, register_alias


class CallOver(SandboxError):
    """A stand-in was used after the call that made it ended."""


class RemoteError(Exception):
    """The host refused or failed an operation (its message says why)."""


_ERRORS = {"AttributeError": AttributeError, "KeyError": KeyError, "TypeError": TypeError,
           "ValueError": ValueError, "IndexError": IndexError, "SandboxError": SandboxError,
           "DoesNotUnderstand": AttributeError, "SlotError": KeyError}


class Session:
    """One call's view of the host: the handle table, the read cache, the pipe."""

    def __init__(self, chan, compile_method):
        self.chan, self.compile = chan, compile_method
        self.proxies = {}       # handle id -> stand-in
        self.cache = {}         # (handle id, slot) -> value read
        self.open = True
        self.owners = {}        # code object -> handles of the methods it belongs to

    def close(self):
        self.open = False
        self.proxies.clear()
        self.cache.clear()

    # -- talking to the host ----------------------------------------------------
    def ask(self, op, **fields):
        if not self.open:
            raise CallOver("this object belongs to a call that has ended")
        fields["by"] = self.running()       # the methods whose code is running, for rights
        try:
            self.chan.send({"op": op, **fields})
            reply = self.chan.recv()
        except BaseException:       # noqa: BLE001 - a half-sent or half-read frame
            os._exit(70)    # the wire is out of step: only a fresh worker can go on
        if not isinstance(reply, dict):
            os._exit(70)
        if "err" in reply:
            kind, message = reply["err"]
            raise _ERRORS.get(kind, RemoteError)(message)
        return self.decode(reply.get("ok"))

    def learn(self, fn, h):
        """Note that ``fn`` (and every function its source defines) is method ``h``'s code
        (None: the call's own method)."""
        codes = [fn.__code__]
        codes += [g.__code__ for g in fn.__globals__.values()
                  if isinstance(g, types.FunctionType)
                  and g.__code__.co_filename == fn.__code__.co_filename]
        while codes:
            code = codes.pop()
            self.owners.setdefault(code, set()).add(h)
            codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))

    def running(self):
        """The methods whose code has a frame on the stack now, the innermost included.

        A grant is bound to its method's own code: a generator or closure another method
        made runs with that method's rights, wherever it is called from.
        """
        by, frame = set(), sys._getframe(1)
        while frame is not None:
            hs = self.owners.get(frame.f_code)
            if hs:
                by.update(h for h in hs if h is not None)
            frame = frame.f_back
        return sorted(by)

    def wrote(self):
        self.cache.clear()

    def get(self, proxy, name):
        key = (proxy._h, name)
        try:
            return self.cache[key]
        except KeyError:
            pass
        value = self.cache[key] = self.ask("get", h=proxy._h, name=name)
        return value

    def set(self, proxy, name, value):
        self.wrote()
        self.ask("set", h=proxy._h, name=name, v=self.encode(value))

    def delete(self, proxy, name):
        self.wrote()
        self.ask("del", h=proxy._h, name=name)

    def api(self, proxy, fn, *args, write=False, **kw):
        if write:
            self.wrote()
        return self.ask("api", h=proxy._h, fn=fn, a=self.encode(list(args)),
                        kw=self.encode(dict(kw)))

    def mutate(self, proxy, op, *args):
        self.wrote()
        return self.ask("mut", h=proxy._h, m=op, a=self.encode(list(args)))

    # -- values -------------------------------------------------------------------
    def encode(self, value):
        return wire.encode(value, self._describe)

    def _describe(self, value):
        h = getattr(type(value), "_remote", None) and value._h
        if h is None or self.proxies.get(h) is not value:
            raise TypeError(f"a {type(value).__name__} cannot leave a method: pass or store "
                            "plain data (numbers, text, lists, dicts, sets) or objects")
        return {"h": h}

    def decode(self, value):
        return wire.decode(value, self._proxy)

    def _proxy(self, desc):
        h = desc["h"]
        found = self.proxies.get(h)
        if found is not None:
            return found
        kind = desc.get("k")
        if kind == "o":
            p = Remote(self, h, desc.get("n", "object"))
        elif kind == "m":       # not kept: each read of a method binds it to its receiver
            receiver = self.decode(desc["r"]) if desc.get("r") else None
            return RMethod(self, h, desc["name"], desc["src"], receiver)
        elif kind in ("l", "d", "s"):
            cls = {"l": RList, "d": RDict, "s": RSet}[kind]
            p = cls.__new__(cls)
            p._s, p._h = self, h
            contents = self.decode(desc["v"])
            if kind == "d":
                dict.update(p, contents)
            elif kind == "s":
                set.update(p, contents)
            else:
                list.extend(p, contents)
        elif kind == "g":
            p = RMessage(self.decode(desc["v"]))
        else:
            p = Opaque(self, h, desc.get("n", "object"))
        self.proxies[h] = p
        return p


class Remote:
    """A prototype object of the host (see the module docstring)."""
    __slots__ = ("_s", "_h", "_n")
    _remote = True
    _shown_as = "UvmObject"

    def __init__(self, session, h, name):
        object.__setattr__(self, "_s", session)
        object.__setattr__(self, "_h", h)
        object.__setattr__(self, "_n", name)

    def __getattr__(self, name):
        if name[:1] == "_":
            raise AttributeError(name)
        return self._s.get(self, name)

    def __setattr__(self, name, value):
        self._s.set(self, name, value)

    def __delattr__(self, name):
        self._s.delete(self, name)

    # what the sandbox's write guard looks for on a prototype
    def __guarded_setattr__(self, name, value):
        self._s.set(self, name, value)

    __guarded_setitem__ = __guarded_setattr__

    def __guarded_delattr__(self, name):
        self._s.delete(self, name)

    def __getitem__(self, name):
        return self.lookup(name)

    def __setitem__(self, name, value):
        self._s.set(self, name, value)

    def __delitem__(self, name):
        self._s.delete(self, name)

    def __contains__(self, name):
        return self._s.api(self, "has", name)

    def __eq__(self, other):
        return isinstance(other, Remote) and other._h == self._h and other._s is self._s

    def __hash__(self):
        return hash(("remote", self._h))

    def __repr__(self):
        return self._s.api(self, "repr")

    # -- the prototype API a method may use ----------------------------------------
    def slot_names(self):
        return self._s.api(self, "slot_names")

    def own_slots(self):
        return self._s.api(self, "own_slots")

    def all_slot_names(self):
        return self._s.api(self, "all_slot_names")

    def short_name(self):
        return self._s.api(self, "short_name")

    def parents(self):
        return self._s.api(self, "parents")

    def lookup_chain(self):
        return self._s.api(self, "lookup_chain")

    def holder_of(self, name):
        return self._s.api(self, "holder_of", name)

    def lookup(self, name, *default):
        return self._s.api(self, "lookup", name, *default)

    def set_slot(self, name, value):
        self._s.set(self, name, value)

    def remove_slot(self, name):
        self._s.delete(self, name)

    def clone(self, **overrides):
        return self._s.api(self, "clone", write=True, **overrides)

    def define(self, *args, **kw):
        raise SandboxError("methods cannot install methods (define is for the console and the "
                           "system)")


class RMethod:
    """A method slot of the host, run here with the caller's rights."""
    __slots__ = ("_s", "_h", "_name", "_src", "_receiver")
    _remote = True

    def __init__(self, session, h, name, source, receiver):
        self._s, self._h, self._name, self._src, self._receiver = (session, h, name, source,
                                                                   receiver)

    def __call__(self, *args, **kw):
        if not self._s.open:
            raise CallOver("this method belongs to a call that has ended")
        if self._receiver is None:
            raise SandboxError(f"method {self._name} is not bound to an object")
        fn = self._s.compile(self._src, self._name)
        self._s.learn(fn, self._h)      # its code writes with its own grants too
        return fn(self._receiver, *args, **kw)

    @property
    def source(self):
        return self._src

    def __repr__(self):
        return f"<method {self._name}>"


class _Tracked:
    """Shared by RList/RDict/RSet: the session check and the host round trip."""
    __slots__ = ()
    _remote = True

    def _send(self, op, *args):
        return self._s.mutate(self, op, *args)


class RList(_Tracked, list):
    __slots__ = ("_s", "_h")

    def append(self, x):
        list.append(self, self._send("append", x))

    def extend(self, xs):
        list.extend(self, self._send("extend", list(xs)))

    def insert(self, i, x):
        list.insert(self, i, self._send("insert", i, x))

    def pop(self, i=-1):
        out = list.pop(self, i)
        self._send("pop", i)
        return out

    def clear(self):
        list.clear(self)
        self._send("clear")

    def __setitem__(self, i, x):
        if isinstance(i, int):
            list.__setitem__(self, i, self._send("setitem", i, x))
        else:
            items = list(self)
            items[i] = x
            self._replace(items)

    def __delitem__(self, i):
        list.__delitem__(self, i)
        self._replace(list(self)) if not isinstance(i, int) else self._send("delitem", i)

    def _replace(self, items):
        list.__setitem__(self, slice(None), self._send("replace", items))

    def remove(self, x):
        items = list(self)
        items.remove(x)
        self._replace(items)

    def sort(self, *, key=None, reverse=False):
        self._replace(sorted(self, key=key, reverse=reverse))

    def reverse(self):
        self._replace(list(reversed(self)))

    def __iadd__(self, xs):
        self.extend(xs)
        return self

    def __imul__(self, n):
        self._replace(list(self) * n)
        return self


class RDict(_Tracked, dict):
    __slots__ = ("_s", "_h")

    def __setitem__(self, k, v):
        dict.__setitem__(self, k, self._send("set", k, v))

    def __delitem__(self, k):
        dict.__delitem__(self, k)
        self._send("del", k)

    def pop(self, k, *default):
        had = k in self
        out = dict.pop(self, k, *default)
        if had:
            self._send("del", k)
        return out

    def popitem(self):
        k, v = dict.popitem(self)
        self._send("del", k)
        return k, v

    def setdefault(self, k, default=None):
        if k not in self:
            self[k] = default
        return dict.__getitem__(self, k)

    def update(self, *args, **kw):
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def __ior__(self, other):
        self.update(other)
        return self

    def clear(self):
        dict.clear(self)
        self._send("clear")


class RSet(_Tracked, SetInPlace, set):
    __slots__ = ("_s", "_h")

    def add(self, x):
        set.add(self, x)
        self._send("add", x)

    def discard(self, x):
        set.discard(self, x)
        self._send("discard", x)

    def remove(self, x):
        set.remove(self, x)
        self._send("discard", x)

    def pop(self):
        x = set.pop(self)
        self._send("discard", x)
        return x

    def clear(self):
        set.clear(self)
        self._send("clear")

    def _replace(self, items):
        set.clear(self)
        set.update(self, items)
        self._send("replace", list(items))

    def update(self, *others):
        self._replace(set(self).union(*others))

    def difference_update(self, *others):
        self._replace(set(self).difference(*others))

    def intersection_update(self, *others):
        self._replace(set(self).intersection(*others))

    def symmetric_difference_update(self, other):
        self._replace(set(self) ^ set(other))



class RMessage:
    """A message not understood, as a doesNotUnderstand method reads it."""
    __slots__ = ("receiver", "selector", "args", "kwargs", "site")

    def __init__(self, fields):
        for name in self.__slots__:
            object.__setattr__(self, name, fields.get(name))

    def __setattr__(self, name, value):
        raise SandboxError("a message cannot be changed")

    def __repr__(self):
        return f"<message {self.selector!r}>"


class Opaque:
    """A host object a method can hold and pass back but not look into."""
    __slots__ = ("_s", "_h", "_n")
    _remote = True

    def __init__(self, session, h, name):
        object.__setattr__(self, "_s", session)
        object.__setattr__(self, "_h", h)
        object.__setattr__(self, "_n", name)

    def __getattr__(self, name):
        raise AttributeError(f"a {self._n} cannot be used from an isolated method")

    def __repr__(self):
        return f"<{self._n}>"


register_alias(list, RList)
register_alias(dict, RDict)
register_alias(set, RSet)
