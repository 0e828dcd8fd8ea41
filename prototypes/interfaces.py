"""Contracts of the object model."""
from zope.interface import Interface


class IPrototype(Interface):
    """A prototype object (Self-style): state is slots, behaviour is slots.

    Rules:
    - Slots live in one PersistentMapping per object; every write through a
      slot is tracked by ZODB. An in-place change to a plain list/dict/set held
      in a slot is not: code doing that must mark the object changed (the
      persistence guardian enforces this for methods).
    - Slot names are identifiers not starting with ``_``; a name ending in
      ``*`` is a parent slot and must hold a prototype.
    - Lookup: own slots, then parents depth-first in the order their slots
      were added (each ancestor once), then the API, then doesNotUnderstand.
    - Assigning a parent that would make a loop raises DelegationCycle; a loop
      found during lookup raises it too.
    - Methods are ``Method`` slots holding vetted source; the compiled function
      is a volatile cache, never stored.
    """

    def lookup(name, default=None):
        """Raw slot value from the chain (methods unbound), else default/SlotError."""

    def lookup_chain():
        """[self, ancestors in lookup order]."""

    def set_slot(name, value):
        """Add or replace an own slot."""

    def remove_slot(name):
        """Remove an own slot (SlotError if absent)."""

    def slot_names():
        """Own slot names in insertion order."""

    def clone(**overrides):
        """A new object: parents, prototypes, methods and blobs shared; containers copied."""

    def define(name, source, provenance=None):
        """Vet source with both guardians, then install it as a method slot."""


class IExtender(Interface):
    """Where a message nobody understands goes (``prototypes.extension.using``).

    Rules:
    - ``accepts`` is asked on the read that missed, so it must be cheap and
      must not write; False means a plain DoesNotUnderstand.
    - ``handle`` gets the reified Message (receiver, selector, args, kwargs,
      site) when the ``Send`` is called; its return value is the call's
      value. On failure it raises ExtensionFailed and leaves the image as
      it was.
    """

    def accepts(receiver, selector):
        """True if this message should be answered by writing a method."""

    def handle(message):
        """Answer the message (write, vet, install, re-send) and return the result."""
