"""The bifocal memory's well-known prototype: ``memory`` (corpora and mounts)."""
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping

from prototypes import UvmObject
from prototypes.bootstrap import Part


def _make(env):
    return {"memory": UvmObject(**{"name": "memory", "parent*": env["traits"],
                                   "corpora": OOBTree(), "mounts": PersistentMapping()})}


MEMORY = Part("memory", ("memory",), _make)
