"""The night's well-known prototype, ``lineage``, and its slots on the minds.

``lineage`` shows each mind's generations (the IOBTree the mind holds in its
own ``lineage`` slot). Each mind's curation cursor, the ledger key its last
night curated up to, is its own slot ``curated_until``; older images kept it
inside the ``curation`` settings as ``since`` and are migrated here.
"""
from prototypes import UvmObject
from prototypes.bootstrap import Part

MINDS = ("orai", "hermes")
CURSOR = "curated_until"


def _make(env):
    lineage = UvmObject(**{"name": "lineage", "parent*": env["traits"],
                           "doc": "Generations of each mind, by number."})
    for key in MINDS:
        lineage.set_slot(key, env[key].lineage)
    return {"lineage": lineage}


def _upgrades(root):
    todo = []
    for key in MINDS:
        m = root.get(key)
        settings = m.lookup("curation", None) if m is not None else None
        if settings is not None and "since" in settings:
            todo.append(f"{key} curation cursor")
    return todo


def _upgrade(root, todo):
    for key in MINDS:
        if f"{key} curation cursor" in todo:
            m = root[key]
            settings = dict(m.curation)
            old = settings.pop("since")
            m.curation = settings
            if m.lookup(CURSOR, None) is None or (old or "") > m.lookup(CURSOR, None):
                m.set_slot(CURSOR, old)         # the later of the two wins


def cursor(mind_obj):
    """The ledger key ``mind_obj``'s last night curated up to ("" before the first).
    An image not yet migrated still has it as ``curation["since"]``: read it there."""
    value = mind_obj.lookup(CURSOR, None)
    if value is None:
        value = dict(mind_obj.lookup("curation", None) or {}).get("since")
    return value or ""


LINEAGE = Part("lineage", ("lineage",), _make, _upgrades, _upgrade)
