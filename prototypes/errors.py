"""Errors of the object model."""


class DoesNotUnderstand(AttributeError):
    """A message reached the end of the lookup chain.

    ``selector`` is the message name, ``receiver`` the object it was sent to and
    ``chain`` the objects searched, in lookup order. It is an AttributeError so
    that ``hasattr`` and ``getattr(obj, name, default)`` keep working.
    """

    def __init__(self, receiver, selector, chain):
        self.receiver, self.selector, self.chain = receiver, selector, chain
        path = " -> ".join(_short(o) for o in chain)
        super().__init__(
            f"{_short(receiver)} does not understand {selector!r} "
            f"(looked in: {path})")


class DelegationCycle(RuntimeError):
    """Parent slots form a loop."""

    def __init__(self, cycle):
        self.cycle = cycle
        super().__init__("delegation cycle: " + " -> ".join(_short(o) for o in cycle)
                         + ". Remove one of these parent slots.")


class SlotError(KeyError):
    """A slot name is invalid, or a slot is missing."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _short(obj):
    try:
        return type(obj).short_name(obj)     # not obj.short_name: no slot lookup here
    except Exception:   # an unloadable or foreign object still gets a name
        return object.__repr__(obj)


class ExtensionFailed(RuntimeError):
    """Self-extension could not answer a message; the image is as it was.

    ``reasons`` are the guardians' (or the failure's) last reasons, as text;
    ``attempts`` one plain record per answer the mind gave.
    """

    def __init__(self, message, *, selector, reasons=(), attempts=()):
        self.selector, self.reasons, self.attempts = selector, list(reasons), list(attempts)
        super().__init__(message + "".join(f"\n  {r}" for r in self.reasons))
