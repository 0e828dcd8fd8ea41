"""The kernel: the long-running process that owns an image, and the runners beside it.

It starts in ordered ``init_*`` steps: serve a folder image over ZEO (a
PostgreSQL image needs no server), open its own client, load services, its
first presence beat, say what lapsed runners left, start the mission threads,
the HTTP API and the scheduler (presence, heartbeat, the night cycle). A
*runner* (``runner=True``) runs only the mission threads and its presence, on a
PostgreSQL image or attached to a kernel's ZEO server, on any machine;
runners.py gives the claim protocol they all follow.
Missions come from the persistent queue (anyone attached may enqueue); each
runs through the PSM on a mission thread. ``stop()`` lets in-flight missions
finish within a grace period, then abandons them (their transactions abort
and they stay queued), so nothing is ever half-written.
"""
import logging
import os
import queue
import threading
import time

from transaction.interfaces import TransientError

from image import open_image
from image.errors import ImageError, ImageLocked
from image.location import local_dir
from image.meta import get_meta
from mindhost.pool import ModelPool
from prototypes import settings as st

from . import missions as ms
from . import runners, streams
from .options import KernelOptions, options
from .psm import Cancelled, CycleFailed, Services, run_mission
from .scheduling import Job, MainThread
from .streams import STREAM_KEEP, Stream
from .tools import rss_bytes

log = logging.getLogger("batos.kernel")


class KernelRunning(ImageError):
    """Another kernel already serves this image."""


class Kernel:

    def __init__(self, loc, opts=None, *, pool=None, embedder=None, **overrides):
        """``opts``: KernelOptions (or plain data); keyword overrides win over it."""
        data = st.plain(opts) if isinstance(opts, KernelOptions) else dict(opts or {})
        opts = options({**data, **overrides})      # None is refused, not taken as "default"
        self.role = "runner" if opts.runner else "kernel"
        if not loc.persistent or (self.role == "kernel" and not loc.hosts_kernel):
            raise ImageError(
                f"the kernel runs on a folder image (it serves it over ZEO) or on a "
                f"postgresql:// image; {loc} is neither. To add a runner to a running kernel, "
                "use `batos kernel --runner`")
        self.opts, self.loc, self.home = opts, loc, local_dir(loc)
        self.zeo_address, self.http_address = opts.zeo_address(), opts.http_address()
        self.n_threads, self.heartbeat = opts.threads, opts.heartbeat
        self.grace, self.poll, self.dream_at = opts.grace, opts.poll, opts.dream_time()
        self.minds = tuple(opts.minds)
        if self.role == "runner":          # missions only: no API, audits or night
            self.http_address, self.heartbeat, self.dream_at = None, 0, None
        self.pool, self.embedder = pool, embedder
        self.started = time.time()
        self.id = runners.new_id(self.started)
        self.jobs, self.streams, self.inflight = [], {}, set()
        self.alone = None            # a suspect mission running alone here
        self.running, self.done = set(), 0
        self.work = queue.Queue()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.night_cancel = threading.Event()     # SIGTERM: the night stops between steps
        self.threads = []
        self.main = MainThread()
        self.stop_server = self.img = self.http = self.logfile = self.services = None
        self._lock = threading.Lock()

    # -- start-up, in order ------------------------------------------------------
    def start(self):
        try:
            for step in (self.init_serve, self.init_logs, self.init_image, self.init_services,
                         self.init_presence, self.init_recovery, self.init_threads,
                         self.init_http, self.init_scheduler, self.init_publish):
                step()
        except BaseException:
            self.stop()            # undo what started (the ZEO server above all)
            raise
        log.info("kernel ready", extra={"event": "ready", **self.info()})
        return self

    def init_serve(self):
        if self.role == "runner" or not self.loc.is_folder:
            return              # PostgreSQL: every process opens the database itself
        from image.serve import serve
        try:
            self.zeo_address, self.stop_server = serve(self.loc, self.zeo_address)
        except ImageLocked as e:
            from image.storage import serving_address
            addr = serving_address(self.loc)
            if addr:
                raise KernelRunning(
                    f"a kernel (pid {e.pid}) already serves the image at {self.loc} over "
                    f"zeo://{addr}; attach to it with `batos console --attach`, or stop it "
                    "(SIGTERM) before starting another") from None
            raise

    def init_logs(self):
        """JSON lines to IMAGE/logs/kernel.jsonl (once the image is ours: a refused
        second kernel writes nothing into the running one's log)."""
        from .logs import JsonFormatter, route_libraries
        folder = self.home / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        self.logfile = folder / ("kernel.jsonl" if self.role == "kernel"
                                 else f"runner-{os.getpid()}.jsonl")
        handler = logging.FileHandler(self.logfile)
        handler.setFormatter(JsonFormatter())
        route_libraries(handler)            # library warnings: into the kernel's log too
        root = logging.getLogger()
        if root.level > logging.INFO:
            for h in root.handlers:          # stderr keeps the level the user asked for
                h.setLevel(root.level)
            root.setLevel(logging.INFO)
        root.addHandler(handler)

    def init_image(self):
        if self.stop_server is not None:           # ours, served over ZEO
            addr = self.zeo_address
            spec = f"zeo://{addr}" if isinstance(addr, str) else f"zeo://{addr[0]}:{addr[1]}"
        elif self.loc.is_folder:                   # a runner: attach to the kernel's server
            from image.storage import serving_address
            addr = serving_address(self.loc)
            if addr is None:
                raise ImageError(f"no kernel serves {self.loc}, so a runner cannot attach; "
                                 f"start `batos kernel --image {self.loc}` first")
            spec = f"zeo://{addr}"
        else:
            spec = self.loc
        self.img = open_image(spec)
        from kernel.schema import bootstrap
        bootstrap(self.img)
        if self.role == "kernel":        # what is pending for recall (after an upgrade: all)
            from memory.recall import flush
            for mind in ("orai", "hermes"):
                flush(self.img, mind, at_least=1)

    def _refuse_second_kernel(self):
        """On PostgreSQL nothing locks the image: the kernel's presence says it runs."""
        with self.img.view() as root:
            other = get_meta(root).get("kernel")
            if other and other.get("id") != self.id and runners.Judge(
                    root, self.opts.expiry).alive(other.get("id")):
                raise KernelRunning(
                    f"a kernel ({other.get('id')}) already runs on {self.loc}; stop it "
                    "(SIGTERM) first, or add this machine as a runner: `batos kernel --runner`. "
                    f"(A kernel killed on another machine lapses after {self.opts.expiry:g} s "
                    "of silence.)")

    def init_services(self):
        from memory.embed import get_embedder

        from .api_token import ensure_token
        self.token = ensure_token(self.loc) if self.role == "kernel" else None
        self.services = Services(self.pool or ModelPool(), self.embedder or get_embedder(),
                                 kernel_id=self.id, infer=self.main.call)
        if self.role == "runner" and self.minds:     # load its minds now: fail early
            pool = self.services.pool
            with self.img.view() as root:
                wanted = [pool.describe(root, mind) for mind in self.minds]
            for desc in wanted:
                with pool.lease(desc):
                    pass

    def init_presence(self):
        """Say this runner is alive before judging anyone: its beats keep the storage time
        it reads fresh (runners.py)."""
        self.presence()
        if self.role == "kernel" and self.stop_server is None:
            self._refuse_second_kernel()

    def init_recovery(self):
        """Say which queued missions a lapsed runner held: the next claim takes them over
        (and counts the lapse; missions.claim fails a mission after MAX_LAPSES)."""
        with self.img.view() as root:
            judge = runners.Judge(root, self.opts.expiry)
            held = [(mid, root["missions"][mid].lookup("runner", None))
                    for mid in ms.queued(root, None)]
            lapsed = [(mid, r) for mid, r in held if r is not None and not judge.alive(r)]
        for mid, holder in lapsed:
            log.warning("mission %s was held by %s, which has lapsed; it will be run again", mid,
                        holder, extra={"event": "requeue", "mission": mid, "holder": holder})

    def init_threads(self):
        # a warm sandbox process for untrusted methods: the first mission that calls one
        # does not wait for it
        threading.Thread(target=_warm_sandbox, name="sandbox-warm", daemon=True).start()
        for target, name in [(self._dispatch, "dispatch")] + [
                (self._mission_thread, f"mission-{i}") for i in range(self.n_threads)]:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self.threads.append(t)

    def init_http(self):
        if self.http_address is None:
            return
        from .http_api import serve_http
        self.http = serve_http(self, *self.http_address)
        self.http_address = self.http.server_address[:2]

    def init_scheduler(self):
        if self.heartbeat:
            self.schedule("heartbeat", self.audit, every=self.heartbeat)
        if self.dream_at:
            self.schedule("dream", self.dream, at=self.dream_at)
        # presence has a thread of its own: a job (the night above all) may take hours
        for target, name in ((self._presence, "presence"), (self._scheduler, "scheduler")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self.threads.append(t)

    def init_publish(self):
        info = self.info()

        def publish(root):
            if self.role == "kernel":
                get_meta(root)["kernel"] = info
            self._announce(root)
        self.img.run(publish, note=f"{self.role} started")

    def info(self) -> dict:
        from .api_token import token_path
        z = self.zeo_address if self.stop_server is not None else None
        return {"pid": os.getpid(), "id": self.id, "role": self.role, "started": self.started,
                "image": str(self.loc), "minds": list(self.minds),
                "zeo": z if isinstance(z, str) else f"{z[0]}:{z[1]}" if z else None,
                "http": f"http://{self.http_address[0]}:{self.http_address[1]}"
                if self.http is not None else None,
                "token_file": str(token_path(self.loc)) if self.role == "kernel" else None,
                "threads": self.n_threads}

    def presence(self):
        """This runner's presence beat: it is alive (and runs these missions), in its own
        record."""
        self.img.run(self._announce, note=f"{self.role} presence")

    def _announce(self, root):
        with self._lock:
            running, done = set(self.running), self.done
        runners.beat(root, self.id, role=self.role, minds=self.minds, running=running,
                     done=done, started=self.started, expiry=self.opts.expiry,
                     address=self.info()["http"] if self.http is not None else None)
        if self.role == "kernel":
            runners.Judge(root, self.opts.expiry).forget_gone()

    # -- behaviour --------------------------------------------------------------
    def submit(self, mind, request, **kw) -> str:
        """Queue a mission (one short commit) and wake the dispatcher; return its id."""
        def add(root):
            return ms.new_mission(root, mind, request, **kw).id
        mid = self.img.run(add, note=f"mission for {mind}")
        self.wake.set()
        return mid

    def stream(self, mid) -> Stream:
        """The live events of a mission this runner runs (made when it claims one)."""
        with self._lock:
            s = self.streams.get(mid)
            if s is None:
                s = self.streams[mid] = Stream()
            return s

    def follow(self, mid, timeout, poll=None):
        """A mission's events, whichever runner runs it (streams.follow)."""
        return streams.follow(lambda: self.streams.get(mid), lambda: self._stored_end(mid),
                              timeout, self.poll if poll is None else poll, self.stopping)

    def _stored_end(self, mid):
        """``("done", summary)`` or ``("failed", reason)`` once the image says the mission
        ended; None while it has not."""
        with self.img.view() as root:
            m = root["missions"].get(mid)
            if m is None:
                return "failed", f"no mission {mid}"
            if m.state not in ms.TERMINAL:
                return None
            out = ms.summary(m)
        return ("done", out) if out["state"] == "COMPLETE" else ("failed", out["error"])

    def schedule(self, name, fn, every=None, at=None):
        """Run ``fn()`` every N seconds or daily at HH:MM (the night cycle plugs in here)."""
        self.jobs.append(Job(name, fn, every, at))

    def audit(self):
        """The autotelic heartbeat: a self-audit mission, unless one is already waiting."""
        with self.img.view() as root:
            waiting = any(root["missions"][mid].kind == "audit" for mid in ms.queued(root))
        log.info("heartbeat", extra={"event": "heartbeat", "rss_bytes": rss_bytes(),
                                     "models": self.services.pool.loaded_names()})
        if not waiting:
            self.submit("hermes", "self-audit", kind="audit", source="heartbeat")

    def dream(self, minds=None):
        """The night cycle, on the main thread (training is model work too), with the day
        runtimes unloaded first to free memory; missions wait in the queue meanwhile."""
        from mindhost import store
        from night.dream import ORDER, LogReporter, NightInterrupted, dream

        def night():
            self.services.pool.unload_all()
            return dream(self.img, minds or ORDER, store_dir=store.default_store(self.loc),
                         work_dir=self.home / "dream", reporter=LogReporter(),
                         cancel=self.night_cancel, skip_unready=True)
        log.info("the night begins", extra={"event": "dream_start"})
        try:
            results = self.main.call(night)
        except NightInterrupted as e:
            log.warning("the night was interrupted: %s; the next run resumes it", e,
                        extra={"event": "dream_interrupted"})
            return []
        log.info("the night is over: %s", ", ".join(f"{r['mind']} {r['outcome']}"
                                                    for r in results),
                 extra={"event": "dream_done", "results": results})
        return results

    # -- threads ------------------------------------------------------------------
    def _dispatch(self):
        while not self.stopping.is_set():
            self.wake.wait(self.poll)
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                with self.img.view() as root:
                    judge = runners.Judge(root, self.opts.expiry)
                    waiting = [(mid, _suspect(m, self.id)) for mid, m in (
                        (mid, root["missions"].get(mid)) for mid in ms.queued(root))
                        if judge.claimable(m, self.id, self.minds)]
            except Exception:       # the ZEO link can drop for a moment: try again
                log.exception("cannot read the queue", extra={"event": "queue_error"})
                continue
            for mid, suspect in waiting:
                with self._lock:
                    # no more than the mission threads can start: the rest stays unclaimed.
                    # A suspect (its last runner died holding it) runs alone: if it is a
                    # poison, it takes no other mission down with it.
                    if (mid in self.inflight or len(self.inflight) >= self.n_threads
                            or self.alone is not None or (suspect and self.inflight)):
                        continue
                    self.inflight.add(mid)
                    if suspect:
                        self.alone = mid
                self.work.put(mid)
            self._forget_old_streams()

    def _forget_old_streams(self):
        now = time.monotonic()
        with self._lock:
            for mid in [m for m, s in self.streams.items()
                        if s.ended and now - s.ended > STREAM_KEEP]:
                del self.streams[mid]

    def _mission_thread(self):
        while True:
            mid = self.work.get()
            if mid is None:
                return
            try:
                self._run(mid)
            finally:
                with self._lock:
                    self.inflight.discard(mid)
                    if self.alone == mid:
                        self.alone = None
                self.wake.set()          # a thread is free: dispatch the next one now

    def _run(self, mid):
        if self.stopping.is_set():           # a stop starts nothing, claims nothing
            return
        try:
            fence = self.img.run(ms.claim, mid, self.id, self.minds, self.opts.expiry,
                                 note=f"mission {mid}: claimed")
        except Exception:           # the claim did not commit: the mission stays queued
            log.exception("mission %s could not be claimed", mid,
                          extra={"event": "claim_error", "mission": mid})
            return
        if fence is None:
            return
        s = self.stream(mid)
        s.reopen()                  # it may have run here before, and stopped
        with self._lock:
            self.running.add(mid)
        try:
            run_mission(self.img, mid, self.services, on_event=s.push, fence=fence)
            log.info("mission %s done", mid, extra={"event": "mission_done", "mission": mid,
                                                    "rss_bytes": rss_bytes()})
        except Cancelled:
            self._hand_back(mid, fence)
            s.push("cancelled", "the runner stopped; the mission stays queued")
        except CycleFailed:
            pass                     # logged, recorded and streamed by run_mission
        except ms.StaleClaim:
            pass                     # logged by run_mission; the stored state says how it ends
        except TransientError as e:  # every commit conflicted (logged): it stays queued
            self._hand_back(mid, fence)
            s.push("cancelled", f"the image was too busy to take the answer ({type(e).__name__}); "
                                "the mission stays queued")
        except Exception as e:      # the image could not be reached: the mission stays queued
            log.exception("mission %s could not run", mid, extra={"event": "mission_error",
                                                                  "mission": mid})
            self._hand_back(mid, fence)
            s.push("cancelled", f"{type(e).__name__}: {e}")
        finally:
            if s.ended is None:      # no outcome here: followers read the stored state
                s.push("cancelled", "not run to its end here")
            with self._lock:
                self.running.discard(mid)
                self.done += 1

    def _hand_back(self, mid, fence):
        try:
            if self.img.run(ms.release, mid, fence, note=f"mission {mid}: handed back"):
                log.info("mission %s handed back", mid, extra={"event": "release", "mission": mid})
        except Exception:           # it lapses with this runner's presence instead
            log.exception("mission %s could not be handed back", mid,
                          extra={"event": "release_error", "mission": mid})

    def _presence(self):
        while not self.stopping.wait(self.opts.presence):
            try:
                self.presence()
            except Exception:       # the link can drop for a moment: say so, go on
                log.exception("cannot write presence", extra={"event": "presence_error"})

    def _scheduler(self):
        while not self.stopping.wait(1.0):
            now = time.time()
            for job in self.jobs:
                if job.due(now):
                    try:
                        job.fn()
                    except Exception:
                        log.exception("job %s failed", job.name, extra={"event": "job_error",
                                                                        "job": job.name})

    # -- the main thread ------------------------------------------------------------
    def run(self, stop_requested):
        """On the main thread: do the mission threads' model work until asked to stop."""
        try:
            self.main.serve(stop_requested.is_set)
        finally:
            self.stop()

    def request_stop(self):
        """From a signal handler: the main thread may be mid-generation, so the grace
        period starts now, on a timer, and cancels what is still running when it ends."""
        self.night_cancel.set()

        def cancel_late():
            if self.inflight:
                self.services.cancel.set()
        timer = threading.Timer(self.grace, cancel_late)
        timer.daemon = True
        timer.start()

    # -- shutdown ------------------------------------------------------------------
    def stop(self):
        """Finish or abandon in-flight missions, then close everything; idempotent.

        Also undoes a start that failed half-way: each part is closed if it started.
        """
        if self.stopping.is_set():
            return
        if self.stop_server is None and self.img is None:   # it never opened: nothing to undo
            self.stopping.set()
            return
        log.info("kernel stopping", extra={"event": "stopping", "inflight": sorted(self.inflight)})
        self.stopping.set()
        self.night_cancel.set()
        self.wake.set()
        while True:                     # what waits for a mission thread never starts
            try:
                mid = self.work.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                self.inflight.discard(mid)
                self.alone = None if self.alone == mid else self.alone
        services = getattr(self, "services", None)
        if services is not None:
            deadline = time.monotonic() + self.grace
            self.main.serve(lambda: not self.inflight or time.monotonic() > deadline)
            if self.inflight:
                services.cancel.set()   # abandon: their transactions abort, they stay queued
        for _ in range(self.n_threads):
            self.work.put(None)
        threads = [t for t in self.threads if t.name.startswith("mission-")]
        self.main.serve(lambda: not any(t.is_alive() for t in threads))
        for t in self.threads:
            t.join(timeout=10)
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        try:
            if self.img is not None:
                def unpublish(root):
                    if self.role == "kernel":
                        get_meta(root).pop("kernel", None)
                    runners.leave(root, self.id)
                try:
                    self.img.run(unpublish, note=f"{self.role} stopped")
                except Exception as e:      # the image went first (its server stopped)
                    log.warning("could not remove this %s's presence record (%s); it lapses "
                                "by itself", self.role, e, extra={"event": "unpublish_error"})
        finally:
            if services is not None:
                services.pool.unload_all()
            if self.img is not None:
                self.img.close()
            if self.stop_server is not None:
                self.stop_server()
        log.info("kernel stopped", extra={"event": "stopped"})


def _suspect(m, me) -> bool:
    """Did a runner die holding this mission (or is its holder dead now)?"""
    return m.lookup("lapses", 0) > 0 or m.lookup("runner", None) not in (None, me)


def _warm_sandbox():
    from guardians import workers
    try:
        workers.POOL.warm(1)
    except workers.WorkerError as e:
        log.warning("no sandbox process for untrusted methods could start (%s); each call "
                    "will try again", e, extra={"event": "sandbox_warm"})
