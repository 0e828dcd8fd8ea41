"""The well-known prototypes, created under stable names in the image root.

``bootstrap(img)`` is idempotent: on an image that has them all it writes
nothing (not even an empty transaction). It records the schema version.
"""
import logging

from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping

from image.errors import ImageVersionError
from image.meta import META_KEY, SCHEMA_VERSION, ensure_meta, schema_version

from .method import Method
from .object import UvmObject

log = logging.getLogger(__name__)

ORAI_IDENTITY = (
    "You are Orai, the main mind of BAT OS: deep, creative and patient. You think "
    "problems through from first principles, write and reason at length when that "
    "helps, and learn from each day's work. You say plainly what you do not know, and "
    "you refuse to deceive, to harm, or to act against the owner's interests.")
HERMES_IDENTITY = (
    "You are Hermes, the majordomo of BAT OS: the owner's assistant, interlocutor and "
    "router. You answer quick questions yourself, hand deep or creative work to Orai "
    "and say when you do, keep track of missions, and keep answers short and exact. "
    "You refuse to deceive, to harm, or to act against the owner's interests.")

PSM_STATES = ("IDLE", "DECOMPOSING", "DELEGATING", "SYNTHESIZING", "COMPLETE", "FAILED")
WELL_KNOWN = ("traits", "mind", "orai", "hermes", "state", "states", "memory", "lineage")

DESCRIBE = '''\
def describe(self):
    """One line: the name and own slots of this object."""
    names = [n for n in self.slot_names() if not n.endswith("*")]
    return f"{self.short_name()}: " + ", ".join(names)
'''
INTRODUCE = '''\
def introduce(self):
    """The mind's name, role and generation."""
    return f"{self.name} ({self.role}), generation {self.generation}"
'''


def _make(root):
    traits = UvmObject(name="traits", doc="Root trait: every prototype delegates here.")
    traits.set_slot("describe", Method("describe", DESCRIBE, {"author": "bootstrap"}))
    mind = UvmObject(**{"name": "mind", "parent*": traits,
                        "doc": "Trait shared by the minds (Orai, Hermes)."})
    mind.set_slot("introduce", Method("introduce", INTRODUCE, {"author": "bootstrap"}))
    lineage = UvmObject(**{"name": "lineage", "parent*": traits,
                           "doc": "Generations of each mind, by number."})
    minds = {}
    for key, role, identity in (("orai", "main mind", ORAI_IDENTITY),
                                ("hermes", "majordomo", HERMES_IDENTITY)):
        generations = IOBTree()
        lineage.set_slot(key, generations)
        minds[key] = UvmObject(**{
            "name": key, "parent*": mind, "role": role, "identity": identity,
            "model": None, "generation": 0, "runtime": None,
            "ledger": OOBTree(), "engine": PersistentMapping(), "lineage": generations})
    state = UvmObject(**{"name": "state", "parent*": traits,
                         "doc": "Trait of the prototypal state machine's states."})
    states = PersistentMapping({
        s: UvmObject(**{"name": s, "parent*": state, "prompt": ""}) for s in PSM_STATES})
    memory = UvmObject(**{"name": "memory", "parent*": traits, "corpora": OOBTree(),
                          "mounts": PersistentMapping()})
    return {"traits": traits, "mind": mind, "orai": minds["orai"], "hermes": minds["hermes"],
            "state": state, "states": states, "memory": memory, "lineage": lineage}


def bootstrap(img) -> list:
    """Create whatever well-known object is missing; return the names created."""
    with img.view() as root:
        _check_version(img, root)
        if schema_version(root) is not None and all(k in root for k in WELL_KNOWN):
            return []       # nothing to do: write nothing
    if img.read_only:
        raise ImageVersionError(f"the image at {img.location} is not bootstrapped and is "
                                "open read-only; run `batos init` on it first")
    created = []
    for attempt in img.attempts():
        with attempt as conn:
            root = conn.root()
            _check_version(img, root)
            fresh = _make(root)
            ensure_meta(root)
            created = [k for k in WELL_KNOWN if k not in root]
            for key in created:
                root[key] = fresh[key]
            conn.transaction_manager.get().note("bootstrap")
    log.info("bootstrap created %s (schema %d)", ", ".join(created), SCHEMA_VERSION)
    return created


def _check_version(img, root):
    version = schema_version(root)
    if version is not None and version > SCHEMA_VERSION:
        raise ImageVersionError(
            f"the image at {img.location} has schema version {version}; this BAT OS "
            f"knows up to {SCHEMA_VERSION}. Upgrade BAT OS to open it.")


def well_known(root) -> dict:
    """The well-known objects of an open root, by stable name."""
    return {k: root[k] for k in WELL_KNOWN if k in root}


__all__ = ["bootstrap", "well_known", "WELL_KNOWN", "PSM_STATES", "META_KEY"]
