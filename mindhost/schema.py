"""The minds' well-known prototypes: the ``mind`` trait, Orai and Hermes.

Each mind holds its identity text (its soul), role, model ids, generation,
precision, ledger, lineage and engine settings; Hermes also its routing.
"""
from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping

from prototypes import Method, UvmObject
from prototypes.bootstrap import Part
from prototypes.settings import defaults

from .settings import EngineSettings, RoutingSettings

# Short on purpose: the bundled 135M model loses track of a simple question
# under a longer system prompt (measured); larger models can take a fuller soul.
ORAI_IDENTITY = (
    "You are a helpful AI assistant named Orai. You are the deep, creative main mind "
    "of BAT OS. You never deceive or harm.")
HERMES_IDENTITY = (
    "You are a helpful AI assistant named Hermes, the majordomo of BAT OS. You keep "
    "answers short and exact, and you hand deep or creative work to Orai. You never "
    "deceive or harm.")

INTRODUCE = '''\
def introduce(self):
    """The mind's name, role and generation."""
    return f"{self.name} ({self.role}), generation {self.generation}"
'''


def _make(env):
    mind = UvmObject(**{"name": "mind", "parent*": env["traits"],
                        "doc": "Trait shared by the minds (Orai, Hermes)."})
    mind.set_slot("introduce", Method("introduce", INTRODUCE, {"author": "bootstrap"}))
    out = {"mind": mind}
    # Orai keeps FP16; Hermes runs a Q8 copy of its FP16 Gold Master by day.
    for key, role, identity, precision in (("orai", "main mind", ORAI_IDENTITY, "fp16"),
                                           ("hermes", "majordomo", HERMES_IDENTITY, "q8")):
        out[key] = UvmObject(**{
            "name": key, "parent*": env.get("mind", mind), "role": role, "identity": identity,
            "model": None, "generation": 0, "runtime": None, "precision": precision,
            "ledger": OOBTree(), "lineage": IOBTree(),
            "engine": PersistentMapping(defaults(EngineSettings))})
    out["hermes"].set_slot("routing", PersistentMapping(defaults(RoutingSettings)))
    return out


def _upgrades(root):
    """An image made before the PSM had no routing."""
    if "hermes" in root and root["hermes"].lookup("routing", None) is None:
        return ["routing"]
    return []


def _upgrade(root, todo):
    root["hermes"].set_slot("routing", PersistentMapping(defaults(RoutingSettings)))


MINDS = Part("minds", ("mind", "orai", "hermes"), _make, _upgrades, _upgrade)
