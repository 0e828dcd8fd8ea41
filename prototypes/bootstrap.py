"""The well-known prototypes, created under stable names in the image root.

``bootstrap(img)`` is idempotent: on an image that has them all it writes
nothing (not even an empty transaction). It records the schema version.
"""
import logging

from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from guardians import limits

from image.errors import ImageVersionError
from image.meta import META_KEY, SCHEMA_VERSION, ensure_meta, schema_version

from .extension import DEFAULTS as DNU_DEFAULTS
from .extension import EXAMPLES as DNU_EXAMPLES
from .extension import PROMPT as DNU_PROMPT
from .extension import RETRY as DNU_RETRY
from .extension import RULES as DNU_RULES
from .method import Method
from .object import UvmObject

log = logging.getLogger(__name__)

# Short on purpose: the bundled 135M model loses track of a simple question
# under a longer system prompt (measured); larger models can take a fuller soul.
ORAI_IDENTITY = (
    "You are a helpful AI assistant named Orai. You are the deep, creative main mind "
    "of BAT OS. You never deceive or harm.")
HERMES_IDENTITY = (
    "You are a helpful AI assistant named Hermes, the majordomo of BAT OS. You keep "
    "answers short and exact, and you hand deep or creative work to Orai. You never "
    "deceive or harm.")

PSM_STATES = ("IDLE", "DECOMPOSING", "DELEGATING", "SYNTHESIZING", "COMPLETE", "FAILED")
# missions: id -> mission; queue: key -> mission id; failures and audits: time
# key -> record. The queue keeps a head key "" for good: BTrees resolve
# concurrent inserts and deletes of distinct keys unless the first key changes
# or the bucket empties (measured), so writers never conflict over it.
CONTAINERS = ("missions", "queue", "failures", "audits")
QUEUE_HEAD = ""
WELL_KNOWN = ("traits", "mind", "orai", "hermes", "state", "states", "memory", "lineage",
              "extension", *CONTAINERS)

# The PSM's prompts are slots of the state prototypes: read and changed at runtime.
STATE_PROMPTS = {
    "DECOMPOSING": (
        "Break the request below into at most {max_steps} steps. Reply with only a JSON "
        "list. Each step is an object with \"do\" and \"input\": do is \"answer\" (you "
        "answer input), \"search\" (look input up in memory), \"ask\" (ask {other}) or "
        "\"tool\" (add \"tool\": one of {tools}).\n\nRequest: {request}"),
    "SYNTHESIZING": (
        "Answer the request using the notes.\n\nRequest: {request}\n\nNotes:\n{notes}"),
}
# Hermes hands deep or creative work to Orai. "rules" costs no generation;
# "mind" asks Hermes itself with the prompt below (answer ORAI or HERMES).
ROUTING = {
    "mode": "rules", "to": "orai", "max_words": 80,
    "keywords": ["story", "poem", "essay", "creative", "imagine", "brainstorm", "design",
                 "in depth", "philosophy", "novel", "song", "invent"],
    "prompt": ("Reply with one word. Reply ORAI if this request needs deep or creative "
               "work, else reply HERMES.\n\nRequest: {request}"),
}

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
    # Orai keeps FP16; Hermes runs a Q8 copy of its FP16 Gold Master by day.
    for key, role, identity, precision in (("orai", "main mind", ORAI_IDENTITY, "fp16"),
                                           ("hermes", "majordomo", HERMES_IDENTITY, "q8")):
        generations = IOBTree()
        lineage.set_slot(key, generations)
        minds[key] = UvmObject(**{
            "name": key, "parent*": mind, "role": role, "identity": identity,
            "model": None, "generation": 0, "runtime": None, "precision": precision,
            "ledger": OOBTree(), "lineage": generations,
            "engine": PersistentMapping({"name": "auto", "max_tokens": 512, "temperature": 0.0})})
    state = UvmObject(**{"name": "state", "parent*": traits,
                         "doc": "Trait of the prototypal state machine's states."})
    states = PersistentMapping({
        s: UvmObject(**{"name": s, "parent*": state, "prompt": STATE_PROMPTS.get(s, "")})
        for s in PSM_STATES})
    minds["hermes"].set_slot("routing", PersistentMapping(ROUTING))
    memory = UvmObject(**{"name": "memory", "parent*": traits, "corpora": OOBTree(),
                          "mounts": PersistentMapping()})
    traits.set_slot("method_limits", PersistentMapping(limits.DEFAULTS))
    extension = UvmObject(**{
        "name": "extension", "parent*": traits,
        "doc": "Self-extension: who writes a method a message lacks, and what they are told.",
        **DNU_DEFAULTS, "prompt": DNU_PROMPT, "retry": DNU_RETRY, "rules": DNU_RULES,
        "examples": PersistentList(DNU_EXAMPLES)})
    return {"traits": traits, "mind": mind, "orai": minds["orai"], "hermes": minds["hermes"],
            "state": state, "states": states, "memory": memory, "lineage": lineage,
            "extension": extension,
            **{name: OOBTree({QUEUE_HEAD: None} if name == "queue" else {})
               for name in CONTAINERS}}


def _upgrades(root) -> list:
    """What an image made before the PSM had needs: empty state prompts, no routing."""
    todo = []
    if "states" in root:
        todo += [s for s, text in STATE_PROMPTS.items() if not root["states"][s].prompt]
    if "hermes" in root and root["hermes"].lookup("routing", None) is None:
        todo.append("routing")
    if "queue" in root and QUEUE_HEAD not in root["queue"]:
        todo.append("queue head")
    if "traits" in root and root["traits"].lookup("method_limits", None) is None:
        todo.append("method limits")
    return todo


def _upgrade(root, todo):
    for name in todo:
        if name == "routing":
            root["hermes"].set_slot("routing", PersistentMapping(ROUTING))
        elif name == "queue head":
            root["queue"][QUEUE_HEAD] = None
        elif name == "method limits":
            root["traits"].set_slot("method_limits", PersistentMapping(limits.DEFAULTS))
        else:
            root["states"][name].prompt = STATE_PROMPTS[name]


def bootstrap(img) -> list:
    """Create whatever well-known object is missing; return the names created."""
    with img.view() as root:
        _check_version(img, root)
        if (schema_version(root) is not None and all(k in root for k in WELL_KNOWN)
                and not _upgrades(root)):
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
            _upgrade(root, _upgrades(root))
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
