"""Creating the well-known prototypes of an image, from parts each package owns.

The object model knows nothing of minds or missions. Each package that keeps
objects under a stable name in the root describes them as a ``Part``: the
names it owns, how to make them, and what an older image lacks (with the
upgrade that adds it). ``kernel.schema`` lists the parts in order; this
module runs them.

``bootstrap(img, parts)`` is idempotent: on an image that has everything it
writes nothing (not even an empty transaction). It records the schema version.
"""
import dataclasses
import logging
from typing import Callable

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from guardians import limits
from image.errors import ImageVersionError
from image.meta import SCHEMA_VERSION, ensure_meta, get_meta, schema_version

from .clone import _is_btree
from .method import Method
from .object import UvmObject
from .persist import untracked

log = logging.getLogger(__name__)


def _none(root):
    return []


@dataclasses.dataclass(frozen=True)
class Part:
    """Well-known objects one package owns.

    ``make(env)`` returns fresh objects by root name; ``env`` holds the objects
    of the parts before (the image's own where it has them). ``upgrades(root)``
    names what an image made by an older BAT OS lacks; ``upgrade(root, todo)``
    adds it, inside the bootstrap transaction.
    """
    name: str
    names: tuple
    make: Callable
    upgrades: Callable = _none
    upgrade: Callable = None


DESCRIBE = '''\
def describe(self):
    """One line: the name and own slots of this object."""
    names = [n for n in self.slot_names() if not n.endswith("*")]
    return f"{self.short_name()}: " + ", ".join(names)
'''


def _make_traits(env):
    traits = UvmObject(name="traits", doc="Root trait: every prototype delegates here.")
    traits.set_slot("describe", Method("describe", DESCRIBE, {"author": "bootstrap"}))
    traits.set_slot("method_limits", PersistentMapping(limits.DEFAULTS))
    return {"traits": traits}


def _traits_upgrades(root):
    if "traits" in root and root["traits"].lookup("method_limits", None) is None:
        return ["method limits"]
    return []


def _traits_upgrade(root, todo):
    root["traits"].set_slot("method_limits", PersistentMapping(limits.DEFAULTS))


TRAITS = Part("traits", ("traits",), _make_traits, _traits_upgrades, _traits_upgrade)


def _tracking_upgrades(root):
    """An image made before transparent persistence may hold plain containers in slots."""
    return [] if get_meta(root).get("tracked_slots") else ["tracked slots"]


def _tracking_upgrade(root, todo):
    changed = track_all(root)
    ensure_meta(root)["tracked_slots"] = True
    if changed:
        log.info("bootstrap made %d plain containers in slots tracked", changed)


def track_all(root) -> int:
    """Replace every plain container held (at any depth) in a reachable slot; return how many."""
    changed, seen = 0, set()
    todo = [v for v in root.values()]
    while todo:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, UvmObject):
            for name, slot in list(value.own_slots().items()):
                if untracked(slot):
                    value.set_slot(name, slot)      # set_slot converts it
                    changed += 1
                todo.append(value.lookup(name))
        elif isinstance(value, (PersistentMapping, PersistentList, tuple)) or _is_btree(value):
            items = value.values() if hasattr(value, "values") else value
            todo.extend(v for v in items if not isinstance(v, _ATOMS))
    return changed


_ATOMS = (int, float, str, bytes, type(None))

# Last of every schema: it walks what the other parts made.
TRACKING = Part("tracking", (), lambda env: {}, _tracking_upgrades, _tracking_upgrade)


def names_of(parts) -> tuple:
    return tuple(n for p in parts for n in p.names)


def _todo(root, parts):
    return [(p, todo) for p in parts for todo in [p.upgrades(root)] if todo]


def bootstrap(img, parts) -> list:
    """Create whatever well-known object is missing; return the names created."""
    names = names_of(parts)
    with img.view() as root:
        _check_version(img, root)
        if (schema_version(root) is not None and all(k in root for k in names)
                and not _todo(root, parts)
                and list(get_meta(root).get("well_known", ())) == list(names)):
            return []       # nothing to do: write nothing
    if img.read_only:
        raise ImageVersionError(f"the image at {img.location} is not bootstrapped and is "
                                "open read-only; run `batos init` on it first")
    created = []
    for attempt in img.attempts():
        with attempt as conn:
            root = conn.root()
            _check_version(img, root)
            ensure_meta(root)["well_known"] = list(names)   # what capabilities protect
            created, env = [], {}
            for part in parts:
                missing = [k for k in part.names if k not in root]
                if missing:
                    fresh = part.make(env)
                    for key in missing:
                        root[key] = fresh[key]
                    created += missing
                env.update({k: root[k] for k in part.names})
            for part, todo in _todo(root, parts):
                part.upgrade(root, todo)
                log.info("bootstrap upgraded %s: %s", part.name, ", ".join(todo))
            conn.transaction_manager.get().note("bootstrap")
    log.info("bootstrap created %s (schema %d)", ", ".join(created) or "nothing", SCHEMA_VERSION)
    return created


def _check_version(img, root):
    version = schema_version(root)
    if version is not None and version > SCHEMA_VERSION:
        raise ImageVersionError(
            f"the image at {img.location} has schema version {version}; this BAT OS "
            f"knows up to {SCHEMA_VERSION}. Upgrade BAT OS to open it.")


def well_known(root, parts) -> dict:
    """The well-known objects of an open root, by stable name."""
    return {k: root[k] for k in names_of(parts) if k in root}


__all__ = ["Part", "TRAITS", "TRACKING", "track_all", "bootstrap", "well_known", "names_of"]
