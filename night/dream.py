"""The Twin Dream: one night per mind, step by step, recorded and resumable.

Steps, in order: curate -> train -> merge (Hermes: TIES into the Gold Master;
Orai: the adapter fused into its FP16 base) -> requantize (Hermes only) ->
gate -> deploy (promote, or record the rejection). The night in progress is
plain data in the mind's ``night`` slot; each step runs outside any
transaction and then commits its result in one short one. Running again
after a crash skips the steps whose record and files are intact and redoes
the rest: files of an interrupted step are staged under names that the next
run replaces or sweeps, so a generation is never made twice and the model
store keeps nothing that the image does not point at.

Test hook: ``BATOS_DREAM_FAULT=STEP`` SIGKILLs the process in the middle of
that step (after partial files exist), to prove the resume.
"""
import datetime
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from mindhost import minds as minds_mod
from mindhost import store
from mindhost.engines import get_engine
from prototypes.persist import plain
from prototypes.settings import plain as st_plain

from . import lineage
from .schema import CURSOR, cursor

log = logging.getLogger(__name__)

STEPS = ("curate", "train", "merge", "requantize", "gate", "deploy")
ORDER = ("orai", "hermes")          # the owner's schedule: Orai first, then Hermes
FAULT_ENV = "BATOS_DREAM_FAULT"


def _now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _fault(step):
    """The test hook: die here, the hard way, if asked to."""
    if os.environ.get(FAULT_ENV) == step:
        log.warning("fault injected in %s: SIGKILL", step, extra={"event": "fault"})
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def steps_for(mind):
    return tuple(s for s in STEPS if not (s == "requantize" and mind == "orai"))


class NightInterrupted(Exception):
    """The night was asked to stop (the kernel got SIGTERM); its record stays, so the next
    run resumes it from the last finished step."""


class Reporter:
    """What the night tells its watcher; the CLI draws it with rich, the kernel logs it."""

    def start(self, mind, step, total=None):
        pass

    def advance(self, mind, step, done, total=None):
        pass

    def done(self, mind, step, seconds, summary=""):
        pass


class LogReporter(Reporter):
    """The kernel's reporter: each finished step is a structured log line."""

    def done(self, mind, step, seconds, summary=""):
        log.info("%s: %s done in %.1f s (%s)", mind, step, seconds, summary,
                 extra={"event": "night_step_done", "mind": mind, "step": step,
                        "seconds": seconds})


class Night:
    """One mind's night: ``run()`` does (or finishes) it and returns its outcome."""

    def __init__(self, img, mind, *, store_dir, work_dir, reporter=None, cancel=None, ram=None):
        self.img, self.mind = img, minds_mod.check_mind(mind)
        self.ram = ram                  # the machine's memory (bytes); None: this one's
        self.store_dir, self.work_root = Path(store_dir), Path(work_dir)
        self.report = reporter or Reporter()
        self.cancel = cancel            # a threading.Event: set, the night stops at a check

    def check_cancel(self, where):
        if self.cancel is not None and self.cancel.is_set():
            log.warning("%s: night stopped %s; it resumes on the next run", self.mind, where,
                        extra={"event": "night_stopped", "mind": self.mind, "where": where})
            raise NightInterrupted(f"{self.mind}'s night stopped {where}")

    # -- the record in the image ---------------------------------------------------
    def _read(self):
        with self.img.view() as root:
            m = root[self.mind]
            night = m.lookup("night", None)
            return json.loads(json.dumps(plain(night))) if night else None

    def _begin(self):
        def write(root):
            m = root[self.mind]
            night = m.lookup("night", None)
            if night:
                return json.loads(json.dumps(plain(night)))
            if m.lookup("runtime", None) is None:
                raise minds_mod.MindError(f"{self.mind} has no model yet: run `batos init`")
            n = m.generation + 1
            night = {"generation": n, "started": _now(), "attempts": 0,
                     "since": cursor(m),
                     "dir": str(self.work_root / self.mind / f"gen-{n}"), "steps": {}}
            m.night = night
            return dict(night)
        night = self.img.run(write, note=f"{self.mind}: night begins")
        return night

    def _save_step(self, step, result):
        def write(root):
            m = root[self.mind]
            night = dict(m.night)
            night["steps"] = {**night["steps"], step: result}
            m.night = night
        self.img.run(write, note=f"{self.mind}: night step {step} done")

    def _bump_attempts(self):
        def write(root):
            m = root[self.mind]
            m.night = {**m.night, "attempts": m.night.get("attempts", 0) + 1}
        self.img.run(write, note=f"{self.mind}: night resumed")

    # -- the cycle ----------------------------------------------------------------
    def run(self) -> dict:
        night = self._read()
        resumed = night is not None
        if not resumed:
            refused = self._will_not_fit()
            if refused:
                log.error("%s", refused["reason"], extra={"event": "night_refused",
                                                          "mind": self.mind})
                lineage.record_night(self.img, self.mind, {"outcome": "does not fit",
                                                           **refused})
                return {"stop": True, "outcome": "does not fit", "reason": refused["reason"],
                        "fresh": True}
        if resumed:
            self._bump_attempts()
            log.info("%s: resuming the night of generation %d", self.mind, night["generation"],
                     extra={"event": "night_resume", "mind": self.mind})
        night = self._begin()
        self.dir = Path(night["dir"])
        if not resumed and self.dir.exists():
            shutil.rmtree(self.dir)         # a rejected night's files for the same number
        self.dir.mkdir(parents=True, exist_ok=True)
        self._sweep(night)
        steps = dict(night["steps"])
        outcome = None
        for step in steps_for(self.mind):
            if step != "deploy" and step in steps and self._intact(step, steps[step]):
                self.report.done(self.mind, step, steps[step].get("seconds", 0.0), "done before")
                continue
            for later in steps_for(self.mind)[steps_for(self.mind).index(step):]:
                steps.pop(later, None)     # a redone step invalidates what came after it
            self.check_cancel(f"before {step}")
            self.report.start(self.mind, step)
            log.info("%s: %s", self.mind, step, extra={"event": "night_step", "mind": self.mind,
                                                       "step": step})
            started = time.perf_counter()
            result = getattr(self, f"do_{step}")(night, steps)
            result["seconds"] = round(time.perf_counter() - started, 2)
            if step == "deploy" or result.get("stop"):
                outcome = result
                self.report.done(self.mind, step, result["seconds"], result["outcome"])
                break
            steps[step] = result
            self._save_step(step, result)
            self.report.done(self.mind, step, result["seconds"], result.get("summary", ""))
        self._finish_files()
        if outcome.get("stop"):
            shutil.rmtree(self.dir, ignore_errors=True)    # nothing was made
        return outcome

    def _will_not_fit(self):
        """The planner's verdict on this mind's night on this machine, before any step."""
        from mindhost.budget import PlanError, check_night, shape_from_config

        from .train import TrainConfig
        ctx = self._context()
        try:
            shape = shape_from_config(store.open_checked(ctx["master"]))
        except PlanError as e:          # a model the planner cannot read: say so, go on
            log.warning("%s: no memory plan for the night: %s", self.mind, e)
            return None
        training = st_plain(TrainConfig.from_settings(ctx["settings"]["training"]))
        return check_night(shape, self.mind, training=training, ram=self.ram,
                           engine=get_engine(ctx["engine"]).name,
                           precision="q8" if "requantize" in steps_for(self.mind) else "fp16")

    def _intact(self, step, result):
        if step == "curate":
            return (self.dir / "set" / "train.jsonl").is_file()
        if step == "train":
            return (self.dir / "adapter" / "adapter_config.json").is_file()
        if step in ("merge", "requantize"):
            rec = result.get("master" if step == "merge" else "runtime")
            return bool(rec) and not store.check(rec)
        return True

    def _sweep(self, night):
        keep = {r["id"] for s in night["steps"].values() for r in
                (s.get("master"), s.get("runtime")) if r}
        with self.img.view() as root:
            recorded = set((root.get(store.MODELS_KEY) or {}).keys()) | keep
        removed = store.sweep(self.store_dir, recorded=recorded, owned_by=f"{self.mind}/")
        if removed:
            log.info("removed %d leftover(s) of an interrupted night: %s", len(removed),
                     ", ".join(removed), extra={"event": "night_sweep", "mind": self.mind})

    def _finish_files(self):
        for name in ("merged", "lora-cache", "adapter.partial", "set.partial"):
            shutil.rmtree(self.dir / name, ignore_errors=True)

    # -- the steps ----------------------------------------------------------------
    def do_curate(self, night, steps):
        from .curate import curate, write_dataset
        with self.img.view() as root:
            cur = curate(root, self.mind, since=night["since"] or "")
        card = cur.card()
        summary = f"{card['examples']} examples from {card['exchanges_seen']} exchanges"
        if not cur.examples:
            return {"stop": True, "outcome": "nothing to learn", "card": card,
                    "summary": summary}
        write_dataset(cur, self.dir / "set")
        kept = [r.key for r in cur.rows if r.decision == "kept"]
        return {"examples": card["examples"], "valid": card["valid"], "until": cur.until,
                "kept": kept, "counts": card["counts"], "redactions": card["redactions"],
                "summary": summary}

    def _context(self) -> dict:
        """What the steps read from the mind (plain data): master, anchor, settings, engine."""
        with self.img.view() as root:
            m = root[self.mind]
            master = dict(store.find(root, m.model))
            return {"master": master,
                    "anchor": dict(store.find(root, m.lineage[0]["master"]))
                    if 0 in m.lineage else master,
                    "settings": {k: dict(m.lookup(k, None) or {})
                                 for k in ("training", "merge", "gate")},
                    "engine": m.engine.get("name") or "auto",
                    "serving": minds_mod.plan(root, self.mind)}

    def _progress(self, step, total, fault_at):
        """A byte counter for a store copy that reports, and dies at ``fault_at`` of
        ``total`` under the test hook."""
        seen = [0]

        def progress(n):
            self.check_cancel(f"in {step}")
            seen[0] += n
            self.report.advance(self.mind, step, seen[0], total)
            mark = int(total * fault_at)
            if seen[0] >= mark > 0 and seen[0] - n < mark:
                _fault(step)
        return progress

    def do_train(self, night, steps):
        from .train import TrainConfig, TrainingDiverged, TrainingError, train_lora
        ctx = self._context()
        master = ctx["master"]
        cfg = TrainConfig.from_settings(ctx["settings"]["training"])
        engine = get_engine(ctx["engine"]).name
        partial, final = self.dir / "adapter.partial", self.dir / "adapter"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)

        def progress(step, total, loss):
            self.check_cancel(f"in train, at step {step} of {total}")
            self.report.advance(self.mind, "train", step, total)
            if step == max(2, total // 2):
                _fault("train")
        try:
            record = train_lora(store.open_checked(master), self.dir / "set", partial, cfg,
                                progress, engine=engine)
        except TrainingError as e:
            # a diverged run, or a set/setting with nothing to learn: no merge, and the
            # reason stays in the mind's nights for the owner to read
            outcome = "diverged" if isinstance(e, TrainingDiverged) else "refused"
            shutil.rmtree(partial, ignore_errors=True)
            log.error("%s: training %s: %s", self.mind, outcome, e,
                      extra={"event": "night_train_failed", "mind": self.mind,
                             "outcome": outcome})
            lineage.record_night(self.img, self.mind, {
                "outcome": outcome, "step": "train", "reason": str(e),
                "training": {"config": {**st_plain(cfg),
                                        "target_modules": list(cfg.target_modules)},
                             "engine": engine},
                "night_started": night["started"], "attempts": night.get("attempts", 0)})
            return {"stop": True, "outcome": outcome, "reason": str(e)}
        os.replace(partial, final)
        return {"training": record, "summary": f"{cfg.iters} steps ({record['engine']}), loss "
                f"{record['loss'][0]:.3f} -> {record['loss'][-1]:.3f}"}

    def _import(self, folder, name, step, extra):
        total = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        return store.import_folder(folder, self.store_dir, name=name,
                                   progress=self._progress(step, total, 0.5),
                                   extra={"night": f"{self.mind}/gen-{extra['generation']}",
                                          **extra})

    def do_merge(self, night, steps):
        from .merge import fuse_adapter, merge_config, run_merge
        ctx = self._context()
        master, anchor, settings = ctx["master"], ctx["anchor"], ctx["settings"]
        n, merged = night["generation"], self.dir / "merged"
        adapter = self.dir / "adapter"
        progress = self._progress("merge", master["size"], 0)     # the fault hook: in the import
        check = (lambda: self.check_cancel("in merge"))
        if self.mind == "orai":
            info = fuse_adapter(store.open_checked(master), adapter, merged, progress, check)
        else:
            cfg = merge_config(store.open_checked(anchor), store.open_checked(master), adapter,
                               settings["merge"])
            info = run_merge(cfg, merged, self.dir / "lora-cache", progress, check)
            shutil.copy(merged / "mergekit.yml", self.dir / "mergekit.yml")
        record = self._import(merged, f"{self.mind}-gen{n}-fp16", "merge",
                              {"generation": n, "parent_master": master["id"]})
        shutil.rmtree(merged, ignore_errors=True)
        out = {"master": record, "method": info.get("config", {}).get("merge_method", "fuse"),
               "summary": f"{record['name']} ({record['id']})"}
        if self.mind != "orai":
            out |= {"yaml": info["yaml"], "command": info["command"]}
        return out

    def do_requantize(self, night, steps):
        master = steps["merge"]["master"]
        eng = get_engine(self._context()["engine"])
        # the Q8 copy is smaller than the master: a quarter of its size is surely reached
        progress = self._progress("requantize", master["size"], 0.25)
        runtime = minds_mod.build_runtime(master, self.store_dir, eng, progress, extra={
            "night": f"{self.mind}/gen-{night['generation']}", "generation": night["generation"]})
        return {"runtime": runtime, "summary": f"{runtime['name']} ({runtime['id']})"}

    def do_gate(self, night, steps):
        from .gate import passed, run_gate
        from .train import read_set
        ctx = self._context()
        settings, engine_name, prev_plan = ctx["settings"], ctx["engine"], ctx["serving"]
        new_rec = (steps.get("requantize") or {}).get("runtime") or steps["merge"]["master"]
        with self.img.view() as root:
            m = root[self.mind]
            name, role, identity = m.name, m.lookup("role", self.mind), m.identity
        taught = read_set(self.dir / "set" / "train.jsonl")
        valid = self.dir / "set" / "valid.jsonl"
        heldout = read_set(valid) if valid.is_file() and valid.stat().st_size else []
        engine = get_engine(new_rec.get("engine") or engine_name)
        # one model at a time: the previous generation is asked first, then unloaded
        checks = run_gate(lambda: minds_mod.load(prev_plan),
                          lambda: engine.load(store.open_checked(new_rec)),
                          name=name, role=role, identity=identity, taught=taught,
                          heldout=heldout, settings=settings["gate"])
        ok = passed(checks)
        rows = [{"name": c.name, "value": round(float(c.value), 5),
                 "threshold": round(float(c.threshold), 5), "passed": bool(c.passed),
                 "detail": c.detail} for c in checks]
        failed = [c["name"] for c in rows if not c["passed"]]
        return {"checks": rows, "passed": ok,
                "summary": f"failed: {', '.join(failed)}" if failed
                else f"all {len(rows)} checks passed"}

    def do_deploy(self, night, steps):
        n, gate = night["generation"], steps["gate"]
        master = steps["merge"]["master"]
        runtime = (steps.get("requantize") or {}).get("runtime") or master
        timings = {k: v.get("seconds") for k, v in steps.items()}
        cur = steps["curate"]
        record = {"engine": runtime.get("engine") or "torch",
                  "precision": "q8" if "requantize" in steps else "fp16",
                  "dataset": {"examples": cur["examples"], "valid": cur["valid"],
                              "counts": cur["counts"], "redactions": cur["redactions"],
                              "dir": str(self.dir / "set")},
                  "training": steps["train"]["training"],
                  "merge": {k: steps["merge"].get(k) for k in ("method", "yaml", "command")},
                  "hashes": {"master": master["sha256"], "runtime": runtime["sha256"]},
                  "gate": gate["checks"], "timings": timings, "night_started": night["started"],
                  "attempts": night.get("attempts", 0)}
        mind = self.mind

        def close(root, generation):
            m = root[mind]
            m.set_slot(CURSOR, cur["until"])
            if generation is not None:       # what was learned becomes golden, for replay
                for key in cur["kept"]:
                    if key in m.ledger:
                        m.ledger[key].signals["golden"] = generation
            m.night = None
        if gate["passed"]:
            lineage.promote(self.img, mind, master=master, runtime=runtime, record=record,
                            adapter=self.dir / "adapter", also=close)
            outcome = "promoted"
        else:
            failed = [c for c in gate["checks"] if not c["passed"]]
            lineage.record_night(self.img, mind, {**record, "outcome": "rejected",
                                                  "failed": failed}, also=close)
            outcome = "rejected"
        self._sweep({"steps": {}})             # a rejected generation's models leave the store
        log.info("%s: generation %d %s", mind, n, outcome,
                 extra={"event": "night_done", "mind": mind, "outcome": outcome,
                        "timings": timings})
        return {"outcome": outcome, "generation": n, "gate": gate["checks"],
                "timings": timings}


def end_empty_night(img, mind):
    """Close a night that had nothing to learn (the day's exchanges stay for the next)."""
    def write(root):
        root[mind].night = None
    img.run(write, note=f"{mind}: night ends, nothing to learn")


def dream(img, minds=ORDER, *, store_dir, work_dir, reporter=None, cancel=None,
          skip_unready=False, ram=None) -> list:
    """Each mind's night in turn (Orai first); a list of outcomes (plain data).

    ``cancel`` (a threading.Event) stops it between steps, and inside training and
    store copies, with NightInterrupted; running it again resumes. ``skip_unready``
    (the kernel's schedule) passes over a mind that has no model yet instead of failing."""
    out = []
    for mind in [m for m in ORDER if m in minds]:
        if skip_unready and mind in minds_mod.needs_models(img):
            log.info("%s has no model yet: no night", mind,
                     extra={"event": "night_skipped", "mind": mind})
            out.append({"mind": mind, "outcome": "no model", "seconds": 0.0})
            continue
        started = time.perf_counter()
        result = Night(img, mind, store_dir=store_dir, work_dir=work_dir,
                       reporter=reporter, cancel=cancel, ram=ram).run()
        if result.get("stop") and not result.get("fresh"):
            end_empty_night(img, mind)
        out.append({"mind": mind, **{k: v for k, v in result.items()
                                     if k not in ("stop", "fresh")},
                    "seconds": round(time.perf_counter() - started, 2)})
    return out


def dry_run(img, minds=ORDER) -> list:
    """What a night would do, without doing it: the curation each mind would train on."""
    from .curate import curate
    out = []
    with img.view() as root:
        for mind in [m for m in ORDER if m in minds]:
            m = root[mind]
            night = m.lookup("night", None)
            cur = curate(root, mind, since=(night or {}).get("since") or cursor(m))
            out.append({"mind": mind, "generation": m.generation + 1,
                        "done_before": sorted(night["steps"]) if night else [],
                        "card": cur.card(), "steps": list(steps_for(mind))})
    return out
