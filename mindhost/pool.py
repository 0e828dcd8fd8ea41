"""The models a process keeps loaded: one per mind, reloaded when its runtime changes.

Two calls, for two threads:

* ``describe(root, mind)`` reads what to load as plain data, on the thread
  that owns ``root``'s connection (a ZODB connection is never handed to
  another thread).
* ``lease(desc)`` is a context manager that loads the model if needed and
  holds it for the block, with its lock: a generation on one model runs one
  at a time, and ``unload_all`` (the night) or a runtime change waits for
  the lease to end instead of unloading a model that is in use. Take the
  lease in the same main-thread hop that uses the model, never in one hop
  for use in the next.
"""
import contextlib
import logging
import threading

from prototypes import settings as st

from . import minds
from .settings import engine_of

log = logging.getLogger(__name__)


class _Entry:
    __slots__ = ("lock", "model", "rid")

    def __init__(self, rid, model):
        self.rid, self.model, self.lock = rid, model, threading.RLock()


class ModelPool:
    """Loaded models by mind; ``describe`` then ``lease`` (see the module doc)."""

    def __init__(self, models=None):
        # models: {mind: ILoadedModel} fixed up front (tests, the scripted engine)
        self._fixed = {m: _Entry("fixed", model) for m, model in dict(models or {}).items()}
        self._models = {}                 # mind -> _Entry
        self._loading = {m: threading.Lock() for m in minds.MINDS}
        self._lock = threading.Lock()

    def describe(self, root, mind) -> dict:
        """What a generation needs to know of ``mind`` and its runtime (plain data)."""
        m = root[minds.check_mind(mind)]
        desc = {"mind": mind, "identity": m.identity, "generation": m.generation,
                "settings": st.plain(engine_of(m)), "plan": None, "model": "fixed"}
        if mind not in self._fixed:
            desc["plan"] = minds.plan(root, mind)
            desc["model"] = desc["plan"]["record"]["name"]
        return desc

    @contextlib.contextmanager
    def lease(self, desc):
        """``(model, lock held)`` for the block: loaded if needed, never unloaded meanwhile."""
        mind = desc["mind"]
        while True:
            if mind in self._fixed:
                entry = self._fixed[mind]
                with self._lock:
                    self._models.setdefault(mind, entry)
            else:
                entry = self._ensure(mind, desc["plan"])
            entry.lock.acquire()
            with self._lock:
                current = self._models.get(mind) is entry or mind in self._fixed
            if current:
                break
            entry.lock.release()          # unloaded between the two: load it again
        try:
            yield entry.model
        finally:
            entry.lock.release()

    def _ensure(self, mind, plan):
        rid = plan["record"]["id"]
        with self._loading[mind]:
            with self._lock:
                entry = self._models.get(mind)
            if entry is not None and entry.rid == rid:
                return entry
            if entry is not None:
                with self._lock:
                    self._models.pop(mind, None)
                with entry.lock:              # waits for a generation still running on it
                    entry.model.unload()
                log.info("unloaded %s's old runtime", mind, extra={"event": "model_unload",
                                                                  "mind": mind})
            model = minds.load(plan)
            entry = _Entry(rid, model)
            with self._lock:
                self._models[mind] = entry
            log.info("%s: loaded %s in %.1f s", mind, plan["record"]["name"],
                     model.load_seconds, extra={"event": "model_load", "mind": mind,
                                                "model": plan["record"]["name"],
                                                "seconds": round(model.load_seconds, 2)})
            return entry

    def get(self, root, mind):
        """Load ``mind``'s runtime now (warm-up); ``describe`` + ``lease`` is the way to use it."""
        desc = self.describe(root, mind)
        with self.lease(desc):
            pass
        return desc

    def loaded_names(self):
        with self._lock:
            return sorted(self._models)

    def unload_all(self):
        """Free memory (the night cycle asks for this before it trains); waits for leases."""
        with self._lock:
            entries, self._models = list(self._models.items()), {}
        for mind, entry in entries:
            if entry.rid != "fixed":
                with self._loading[mind], entry.lock:
                    entry.model.unload()
