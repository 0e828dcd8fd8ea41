"""The prototypal state machine: one cognitive cycle of a mission, in one transaction.

IDLE -> DECOMPOSING -> DELEGATING -> SYNTHESIZING -> COMPLETE, or FAILED from
any of them. The mission delegates to its current state prototype (its
parent slot), so the prompts it uses are that state's ``prompt`` slot.

* DECOMPOSING: a given plan, a fixed one (audit), Hermes's routing (chat), or
  a plan the mind writes (task), parsed robustly (``plans.parse_plan``).
* DELEGATING: each step answers with a mind, searches its mounted memory,
  asks the other mind, or calls a registered tool.
* SYNTHESIZING: one answering step is the answer; several are woven into one
  by the speaking mind with the SYNTHESIZING prompt.
* COMPLETE: the answer is recorded and the mission leaves the queue.
* FAILED: dooms the transaction; nothing of the cycle persists. The failure
  record is written afterwards, in a transaction of its own.

Every exchange lands in the speaking mind's ledger inside the same
transaction. A conflict at commit re-runs the cycle; generations are
memoised, so a retry costs a commit, not another inference.
"""
import dataclasses
import logging
import re
import threading
import time

from persistent.mapping import PersistentMapping
from transaction.interfaces import TransientError

from image.errors import ImageError
from image.keys import new_key
from memory import notebook
from memory.ledger import Exchange, record
from mindhost.settings import routing_of
from prototypes import settings as st

from .context import (
    corpus_memories,
    framing,
    keep_note,
    prepare,
    provenance,
    store_summaries,
)
from .missions import TERMINAL, StaleClaim, check_fence, dequeue, enter, record_failure
from .plans import one_step, parse_plan
from .tools import TOOLS

log = logging.getLogger("batos.psm")
OTHER = {"orai": "hermes", "hermes": "orai"}
COMMIT_TRIES = 10         # a retry re-runs the cycle from the memo: a commit, no inference


class Cancelled(Exception):
    """The kernel is stopping: the cycle is abandoned and its mission stays queued."""


class CycleFailed(ImageError):
    """A cycle failed; nothing of it was written but the failure record."""

    def __init__(self, message, *, mission, state, failure):
        super().__init__(message)
        self.mission, self.state, self.failure = mission, state, failure


@dataclasses.dataclass
class Services:
    """What a cycle runs on: models, the embedder for ledger packets, tools."""
    pool: object
    embedder: object
    tools: dict = dataclasses.field(default_factory=lambda: TOOLS)
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    kernel_id: str = None
    # Runs model work: here by default; the kernel passes its main thread's runner
    # (torch on a CPU runs up to 1.9x slower off the main thread; measured).
    infer: object = None

    def __post_init__(self):
        if self.infer is None:
            self.infer = _run_here

    def embed(self, text) -> bytes:
        def encode():       # the embedder serialises its own calls
            return self.embedder.encode([text])[0].astype("<f4").tobytes()
        return self.infer(encode)


def _run_here(fn):
    return fn()


class Cycle:
    """One attempt at running a mission through the states, inside a transaction."""

    def __init__(self, img, root, mission, services, memo, on_event, tm, fence=None):
        self.img, self.root, self.mission, self.services = img, root, mission, services
        self.fence = fence
        self.memo, self.on_event, self.tm = memo, on_event, tm
        self.state = self.failed_in = mission.state
        self.speaker = mission.mind
        self.prefix = ""             # Hermes's routing note, said before the answer
        self.final = ""              # the answer as streamed so far, this attempt
        self.artifacts = {}
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}

    def run(self):
        try:
            for state in ("DECOMPOSING", "DELEGATING", "SYNTHESIZING", "COMPLETE"):
                self.transition(state)
                WORK[state](self)
        except Cancelled:
            self.doom()
            raise
        except BaseException:
            self.failed_in = self.state
            self.transition("FAILED")
            WORK["FAILED"](self)
            raise

    def doom(self):
        self.tm.get().doom()

    def transition(self, state):
        self.state = state
        enter(self.root, self.mission, state)
        log.info("mission %s -> %s", self.mission.id, state,
                 extra={"event": "transition", "mission": self.mission.id, "state": state,
                        "kind": self.mission.kind})
        self.emit("state", state)

    def emit(self, kind, data):
        if self.on_event is not None:
            self.on_event(kind, data)

    def say(self, piece):
        """Add to the final answer; stream only what no earlier attempt streamed."""
        self.final += piece
        sent = self.memo.get("_sent", 0)
        if len(self.final) > sent:
            self.emit("token", self.final[sent:])
            self.memo["_sent"] = len(self.final)

    # -- the work the states share ---------------------------------------------
    def generate(self, mind, request, *, history=(), memories=True, final=False,
                 ledger_prompt=None, max_tokens=None, signals=None):
        """A mind's answer (assembled context, streamed when final); recorded in its ledger
        unless ``ledger_prompt`` is False. Returns ``(text, exchange key or None)``."""
        m, svc = self.mission, self.services
        # read here, from this worker's own connection; loaded and used in ONE main-thread
        # hop below, so nothing can unload the model between loading and use
        info = svc.pool.describe(self.root, mind)
        settings = info["settings"]
        identity, max_tokens, temperature, budget = framing(info, m.options, max_tokens)
        key = (mind, identity, request, repr(history), max_tokens, temperature)
        if key not in self.memo:
            if svc.cancel.is_set():          # stopping: start no new generation
                raise Cancelled(f"mission {m.id}: the runner is stopping")
            made = {}

            def infer():
                with svc.pool.lease(info) as model:
                    asm, _ = prepare(self.img, self.root, mind, request, model=model,
                                     identity=identity, budget=budget, history=history,
                                     memories=memories, made=made, embedder=svc.embedder)
                    pieces = []
                    for piece in model.stream(asm.messages, max_tokens=max_tokens,
                                              temperature=temperature, kv=settings["kv"]):
                        if svc.cancel.is_set():
                            raise Cancelled(f"mission {m.id}: the kernel is stopping")
                        pieces.append(piece)
                        if final:
                            self.say(piece)
                    return asm, pieces, dict(model.last_stats)
            asm, pieces, stats = svc.infer(infer)
            text = "".join(pieces).strip()
            vector = svc.embed(f"{ledger_prompt or request}\n{text}") if ledger_prompt is not False else b""
            self.memo[key] = (text, stats, vector, asm.sources, made,
                              provenance(asm))
        elif final:
            self.say(self.memo[key][0])
        text, stats, vector, sources, made, parts = self.memo[key]
        store_summaries(self.root, mind, made)
        self.usage["prompt_tokens"] += stats.get("prompt_tokens", 0)
        self.usage["completion_tokens"] += stats.get("tokens", 0)
        self.usage["seconds"] += stats.get("seconds", 0.0)
        if ledger_prompt is False:
            return text, None
        ex = Exchange(mind, ledger_prompt or request, text, vector, time.time(), mission=m.id,
                      model=info.get("model"),
                      signals={"source": m.source, "memory": list(sources),
                               "context": parts, **(signals or {})})
        ex_key = record(self.root, ex)
        m.exchanges = m.exchanges + [[mind, ex_key]]
        return text, ex_key

    def memories(self, mind, request):
        """Hits from the corpora mounted for ``mind``, best first (none mounted: none)."""
        return corpus_memories(self.img, self.root, mind, request)

    def keep_note(self, mind, request, exchange_key):
        """The notebook step after the answer: what the owner asked to be remembered."""
        if exchange_key is None or notebook.cue(request) is None:
            return
        info = self.services.pool.describe(self.root, mind)

        def count(text):
            def counted():
                with self.services.pool.lease(info) as model:
                    return model.count_tokens(text)
            return self.services.infer(counted)
        version = keep_note(self.root, mind, request, exchange_key, count)
        if version:
            self.emit("notebook", {"mind": mind, "version": version})


# -- the states' work ------------------------------------------------------------
def route(c) -> str:
    """Hermes, as majordomo: answer itself, or hand the request to Orai (and say so)."""
    rules = st.plain(routing_of(c.root["hermes"]))
    request, mode = c.mission.request, rules["mode"]
    if mode == "off":
        return "hermes"
    if mode == "mind":
        text, _ = c.generate("hermes", rules["prompt"].format(request=request), memories=False,
                             ledger_prompt=False, max_tokens=4)
        to = rules["to"] if "ORAI" in text.upper() else "hermes"
    else:
        low = request.lower()         # whole words: "history" is not a "story"
        deep = any(re.search(rf"\b{re.escape(k)}\b", low) for k in rules["keywords"])
        to = rules["to"] if deep or len(request.split()) > rules["max_words"] else "hermes"
    if to != "hermes":
        c.mission.routed_to = to
        c.emit("routed", to)
        c.prefix = f"(Hermes passed this to {to.capitalize()}.)\n\n"
        c.say(c.prefix)
    return to


def decompose(c):
    m = c.mission
    if m.plan:
        steps, note = list(m.plan), "given"
    elif m.kind == "audit":
        steps, note = [{"do": "tool", "tool": "self_audit", "input": "", "mind": "hermes"}], "audit"
    else:
        mind = c.speaker = route(c) if m.mind == "hermes" else m.mind
        if m.kind == "chat":
            steps, note = one_step(m.request, mind), "chat"
        else:
            prompt = m.prompt.format(request=m.request, max_steps=5, other=OTHER[mind].capitalize(),
                                     tools=", ".join(sorted(
                                         t for t, f in c.services.tools.items()
                                         if not getattr(f, "internal", False))))
            text, _ = c.generate(mind, prompt, memories=False, ledger_prompt=False)
            steps, why = parse_plan(text, m.request, mind, tools=c.services.tools)
            note = why or "planned by " + mind
    m.plan = steps
    m.plan_note = note


def delegate(c):
    m = c.mission
    single = len(m.plan) == 1 and m.plan[0]["do"] in ("answer", "ask")
    results = []
    for step in m.plan:
        do, mind, text, key = step["do"], step["mind"], step["input"], None
        if do in ("answer", "ask"):
            history = m.history if do == "answer" else ()
            out, key = c.generate(mind, text, history=history, final=single,
                                  signals={"step": do})
        elif do == "search":
            hits = c.memories(mind, text)
            out = "\n".join(f"[{src}] {body}" for src, body in hits) or "(nothing found)"
        else:
            tool = c.services.tools.get(step.get("tool"))
            if tool is None:
                raise ImageError(f"no tool {step.get('tool')!r}; the tools are "
                                 f"{', '.join(sorted(c.services.tools))}")
            out = tool(c, text)
        results.append({"do": do, "mind": mind, "input": text, "output": out, "exchange": key})
    m.results = results


def synthesize(c):
    m = c.mission
    results = m.results
    speaker = c.speaker
    if len(results) == 1 and results[0]["do"] in ("answer", "ask"):
        answer = results[0]["output"]
    elif m.kind in ("audit", "extend"):
        answer = results[0]["output"]
        c.say(answer)
    else:
        notes = "\n".join(f"{i + 1}. ({r['do']}) {r['input']}: {r['output']}"
                          for i, r in enumerate(results))
        answer, _ = c.generate(speaker, m.prompt.format(request=m.request, notes=notes),
                               final=True, ledger_prompt=m.request, memories=False,
                               signals={"step": "synthesis"})
    m.speaker = speaker
    m.answer = c.prefix + answer
    if m.kind == "chat" or m.kind == "task":
        said = [key for mind, key in m.exchanges if mind == speaker]
        c.keep_note(speaker, m.request, said[-1] if said else None)


def complete(c):
    m = c.mission
    check_fence(c.root, m.id, c.fence, "completion")      # a stale runner completes nothing
    m.finished = time.time()
    m.usage = dict(c.usage)
    dequeue(c.root, m)
    if "audit" in c.artifacts:
        c.root["audits"][new_key(m.finished)] = PersistentMapping(c.artifacts["audit"])


def fail(c):
    """FAILED dooms the transaction: it can only abort, so no partial thought persists."""
    c.doom()


WORK = {"DECOMPOSING": decompose, "DELEGATING": delegate, "SYNTHESIZING": synthesize,
        "COMPLETE": complete, "FAILED": fail}


def _index_recall(img, minds):
    """Move a mind's pending exchanges into a recall segment once there are enough (its own
    short transaction; a failure costs only speed: pending exchanges are searched anyway)."""
    from memory import recall
    for mind in minds:
        if mind in OTHER:
            try:
                recall.flush(img, mind)
            except Exception as e:         # noqa: BLE001 - recall is a cache over the ledger
                log.warning("recall: could not index %s's exchanges: %s", mind, e)


def run_mission(img, mid, services, *, on_event=None, fence=None) -> dict:
    """Run mission ``mid`` through one cycle; return its summary.

    ``fence``: the ``(runner, epoch)`` of this runner's claim (missions.claim); the cycle
    and its failure record are written only while it holds. None: an unclaimed run in
    this process (tests). Raises CycleFailed (after writing the failure record), or
    with nothing written: Cancelled, StaleClaim, or a TransientError when every commit
    conflicted (the caller hands its claim back; the mission stays queued).
    """
    from .missions import summary
    memo, cycle, tries = {}, None, 0
    started = time.perf_counter()
    try:
        for attempt in img.attempts(COMMIT_TRIES):
            tries += 1
            if tries > 1:
                log.warning("mission %s: conflict at commit, retrying", mid,
                            extra={"event": "conflict", "mission": mid, "attempt": tries})
            with attempt as conn:
                tm = conn.transaction_manager
                root = conn.root()
                m = root["missions"].get(mid)
                if m is None or m.state in TERMINAL:
                    return summary(m) if m is not None else None
                check_fence(root, mid, fence, "running")
                cycle = Cycle(img, root, m, services, memo, on_event, tm, fence)
                cycle.run()
                tm.get().note(f"mission {mid}: COMPLETE")
                result = summary(m) | {"usage": dict(cycle.usage)}
    except Cancelled:
        log.warning("mission %s abandoned: the runner is stopping; it stays queued", mid,
                    extra={"event": "abort", "mission": mid, "reason": "stopping"})
        raise
    except StaleClaim as e:
        log.warning("%s", e, extra={"event": "fenced", "mission": mid, "fence": fence})
        raise
    except TransientError as e:
        # nothing is wrong with the mission: the image was too busy to take its commit
        log.warning("mission %s: still conflicting after %d tries (%s); it stays queued", mid,
                    tries, type(e).__name__, extra={"event": "busy", "mission": mid})
        raise
    except Exception as e:
        state = cycle.failed_in if cycle is not None else "IDLE"
        reason = f"{type(e).__name__}: {e}"
        log.error("mission %s failed in %s: %s", mid, state, reason,
                  extra={"event": "abort", "mission": mid, "state": state, "reason": reason})
        try:
            key = img.run(record_failure, mid, state, reason, services.kernel_id, fence,
                          note=f"failure record: mission {mid}")
        except StaleClaim as stale:
            log.warning("%s", stale, extra={"event": "fenced", "mission": mid, "fence": fence})
            raise stale from e
        if on_event is not None:
            on_event("failed", reason)
        raise CycleFailed(f"mission {mid} failed in {state}: {reason}", mission=mid,
                          state=state, failure=key) from e
    result["seconds"] = time.perf_counter() - started
    _index_recall(img, {mind for mind, _ in result.get("exchanges") or ()} or {result.get("mind")})
    log.info("mission %s committed", mid, extra={
        "event": "commit", "mission": mid, "tries": tries, "seconds": round(result["seconds"], 3),
        "tokens": cycle.usage["completion_tokens"]})
    if on_event is not None:
        on_event("done", result)
    return result
