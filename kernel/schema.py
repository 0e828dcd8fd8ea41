"""The whole root of an image: every package's well-known prototypes, in order.

Parts (each in the package that owns it): ``traits`` (prototypes), the minds
(mindhost), ``memory`` (memory), ``lineage`` (night), then the kernel's own:
the PSM's states, the mission containers and the ``extension`` prototype.
``bootstrap(img)`` creates what is missing and upgrades older images.
"""
from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from memory.schema import MEMORY
from mindhost.schema import MINDS
from night.schema import LINEAGE
from prototypes import UvmObject
from prototypes import bootstrap as _bootstrap
from prototypes.bootstrap import TRACKING, TRAITS, Part
from prototypes.settings import defaults

from .extend import ExtensionSettings
from .missions import QUEUE_HEAD

PSM_STATES = ("IDLE", "DECOMPOSING", "DELEGATING", "SYNTHESIZING", "COMPLETE", "FAILED")
# missions: id -> mission; queue: key -> mission id; failures and audits: time key -> record;
# runners: runner id -> presence record (runners.py)
CONTAINERS = ("missions", "queue", "failures", "audits", "runners")

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


def _make_psm(env):
    state = UvmObject(**{"name": "state", "parent*": env["traits"],
                         "doc": "Trait of the prototypal state machine's states."})
    states = PersistentMapping({
        s: UvmObject(**{"name": s, "parent*": env.get("state", state),
                        "prompt": STATE_PROMPTS.get(s, "")})
        for s in PSM_STATES})
    return {"state": state, "states": states,
            **{name: OOBTree({QUEUE_HEAD: None} if name == "queue" else {})
               for name in CONTAINERS}}


def _psm_upgrades(root):
    """What an image made before the PSM had: empty state prompts, no queue head."""
    todo = []
    if "states" in root:
        todo += [s for s in STATE_PROMPTS if not root["states"][s].prompt]
    if "queue" in root and QUEUE_HEAD not in root["queue"]:
        todo.append("queue head")
    return todo


def _psm_upgrade(root, todo):
    for name in todo:
        if name == "queue head":
            root["queue"][QUEUE_HEAD] = None
        else:
            root["states"][name].prompt = STATE_PROMPTS[name]


def _make_extension(env):
    settings = defaults(ExtensionSettings)
    settings["examples"] = PersistentList(settings["examples"])
    return {"extension": UvmObject(**{
        "name": "extension", "parent*": env["traits"],
        "doc": "Self-extension: who writes a method a message lacks, and what they are told.",
        **settings})}


PSM = Part("psm", ("state", "states", *CONTAINERS), _make_psm, _psm_upgrades, _psm_upgrade)
EXTENSION = Part("extension", ("extension",), _make_extension)

SCHEMA = (TRAITS, MINDS, MEMORY, LINEAGE, PSM, EXTENSION, TRACKING)
WELL_KNOWN = _bootstrap.names_of(SCHEMA)


def bootstrap(img) -> list:
    """Create whatever well-known object is missing; return the names created."""
    return _bootstrap.bootstrap(img, SCHEMA)


def well_known(root) -> dict:
    """The well-known objects of an open root, by stable name."""
    return _bootstrap.well_known(root, SCHEMA)
