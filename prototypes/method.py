"""Methods are slots holding source text; the compiled function is volatile."""
import time
import types

from persistent import Persistent


class Method(Persistent):
    """A method slot: vetted source, compiled on first use in each process.

    The compiled function lives in ``_v_function`` and is never persisted.
    ``provenance`` records who wrote the source and when; it is read-only
    (methods can reach it, and must not rewrite their own history).
    """

    def __init__(self, name, source, provenance=None):
        self.name = name
        self.source = source
        self._provenance = dict(provenance or {}, installed=time.time())

    @property
    def provenance(self):
        return types.MappingProxyType(self._provenance)

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
    __slots__ = ("receiver", "method")

    def __init__(self, receiver, method):
        self.receiver, self.method = receiver, method

    def __call__(self, *args, **kw):
        return self.method.function()(self.receiver, *args, **kw)

    @property
    def source(self):
        return self.method.source

    def __repr__(self):
        return f"<bound {self.method!r} of {self.receiver.short_name()}>"
