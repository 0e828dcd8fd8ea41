"""The bifocal memory's well-known prototype: ``memory`` (corpora, mounts, and each mind's
recall index, notebook and conversation summaries)."""
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping

from prototypes import UvmObject
from prototypes.bootstrap import Part

MINDS = ("orai", "hermes")
# made with the image, so that two first writers never race to create them
TABLES = ("recall", "notebooks", "summaries")


def _tables():
    from .notebook import Notebook
    from .recall import RecallIndex
    return {"recall": OOBTree({m: RecallIndex(m) for m in MINDS}),
            "notebooks": OOBTree({m: Notebook(m) for m in MINDS}),
            "summaries": OOBTree({m: OOBTree() for m in MINDS})}


def per_mind(root, table, mind, make=None):
    """``root['memory'].<table>[mind]``; with ``make`` (a callable), created where missing
    (an image not yet upgraded by bootstrap), else None where missing."""
    memory = root["memory"]
    t = memory.lookup(table, None)
    if t is None and make is not None:
        memory.set_slot(table, OOBTree())
        t = memory.lookup(table, None)
    if t is None:
        return None
    value = t.get(mind)
    if value is None and make is not None:
        value = t[mind] = make()
    return value


def _make(env):
    return {"memory": UvmObject(**{"name": "memory", "parent*": env["traits"],
                                   "corpora": OOBTree(), "mounts": PersistentMapping(),
                                   **_tables()})}


def _upgrades(root):
    """An image made before recall, notebooks and summaries."""
    memory = root.get("memory")
    if memory is None:
        return []
    return [t for t in TABLES if memory.lookup(t, None) is None]


def _upgrade(root, todo):
    made = _tables()
    for t in todo:
        root["memory"].set_slot(t, made[t])
    if "recall" in todo:          # the ledgers so far: indexed by the next flush
        for mind in MINDS:
            if mind in root:
                made["recall"][mind].pending.update(root[mind].ledger.keys())


MEMORY = Part("memory", ("memory",), _make, _upgrades, _upgrade)
