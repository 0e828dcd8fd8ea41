"""The models a kernel keeps loaded: one per mind, reloaded when its runtime changes.

A loaded model keeps per-call state (its cache, its last stats), so each has
a lock and generations on one model run one at a time; the two minds'
models run side by side.
"""
import logging
import threading

from . import minds

log = logging.getLogger(__name__)


class ModelPool:
    """``get(root, mind)`` -> ``(model, lock, info)``; loads on first use."""

    def __init__(self, models=None):
        # models: {mind: ILoadedModel} fixed up front (tests, the scripted engine)
        self._fixed = dict(models or {})
        self._models = {}                 # mind -> (runtime id, model, lock)
        self._loading = {m: threading.Lock() for m in minds.MINDS}
        self._lock = threading.Lock()

    def get(self, root, mind):
        m = root[minds.check_mind(mind)]
        info = {"mind": mind, "identity": m.identity, "generation": m.generation,
                "settings": dict(m.engine)}
        if mind in self._fixed:
            model = self._fixed[mind]
            with self._lock:
                entry = self._models.setdefault(mind, ("fixed", model, threading.Lock()))
            return model, entry[2], info | {"model": "fixed"}
        plan = minds.plan(root, mind)
        rid = plan["record"]["id"]
        with self._loading[mind]:
            entry = self._models.get(mind)
            if entry is None or entry[0] != rid:
                if entry is not None:
                    entry[1].unload()
                    log.info("unloaded %s's old runtime", mind, extra={"event": "model_unload",
                                                                      "mind": mind})
                model = minds.load(plan)
                entry = (rid, model, threading.Lock())
                with self._lock:
                    self._models[mind] = entry
                log.info("%s: loaded %s in %.1f s", mind, plan["record"]["name"],
                         model.load_seconds, extra={"event": "model_load", "mind": mind,
                                                    "model": plan["record"]["name"],
                                                    "seconds": round(model.load_seconds, 2)})
        return entry[1], entry[2], info | {"model": plan["record"]["name"]}

    def loaded_names(self):
        with self._lock:
            return sorted(self._models)

    def unload_all(self):
        """Free memory (the night cycle asks for this before it trains)."""
        with self._lock:
            entries, self._models = list(self._models.items()), {}
        for mind, (rid, model, lock) in entries:
            if rid != "fixed":
                with lock:
                    model.unload()
