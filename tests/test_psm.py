"""The PSM on a real folder image with a scripted engine (logic) and a real embedder."""
import json

import pytest
from scripted_engine import ScriptedEngine

from image.dump import dump
from kernel.missions import new_mission, queued
from kernel.psm import Cancelled, CycleFailed, Services, run_mission
from mindhost.pool import ModelPool


@pytest.fixture
def psm(folder_image, tiny_st_model):
    from memory.embed import Embedder
    answers = {"hermes": [], "orai": []}
    models = {k: ScriptedEngine(lambda text, k=k: answers[k].pop(0)(text)
                                if callable(answers[k][0]) else answers[k].pop(0)).load()
              for k in answers}
    svc = Services(ModelPool(models), Embedder(tiny_st_model))
    return folder_image, svc, answers, models


def enqueue(img, mind, request, **kw):
    with img.transaction() as conn:
        return new_mission(conn.root(), mind, request, **kw).id


def test_chat_with_hermes_completes_and_lands_in_its_ledger(psm):
    img, svc, answers, models = psm
    answers["hermes"].append("Paris is the capital of France.")
    mid = enqueue(img, "hermes", "What is the capital of France?")
    events = []
    out = run_mission(img, mid, svc, on_event=lambda k, d: events.append((k, d)))
    assert out["state"] == "COMPLETE" and out["answer"] == "Paris is the capital of France."
    assert [d for k, d in events if k == "state"] == [
        "DECOMPOSING", "DELEGATING", "SYNTHESIZING", "COMPLETE"]
    assert "".join(d for k, d in events if k == "token") == out["answer"]
    with img.view() as root:
        assert queued(root) == []
        (mind, key), = root["missions"][mid].exchanges
        ex = root["hermes"].ledger[key]
        assert mind == "hermes" and ex.mission == mid and len(ex.vector) == 32 * 4
        assert ex.prompt == "What is the capital of France?" and len(root["orai"].ledger) == 0
        assert [s for s, _ in root["missions"][mid].trail][-1] == "COMPLETE"
    assert "Hermes" in models["hermes"].calls[0]           # its identity text was the system


def test_the_minds_kv_setting_reaches_the_generation(psm):
    img, svc, answers, models = psm
    with img.transaction() as conn:
        conn.root()["hermes"].engine["kv"] = "q4"
    answers["hermes"].append("Paris.")
    out = run_mission(img, enqueue(img, "hermes", "What is the capital of France?"), svc)
    assert out["state"] == "COMPLETE" and models["hermes"].last_stats["kv"] == "q4"


def test_hermes_routes_creative_work_to_orai_and_says_so(psm):
    img, svc, answers, _ = psm
    answers["orai"].append("Roses bloom.")
    mid = enqueue(img, "hermes", "Write a poem about roses")
    out = run_mission(img, mid, svc)
    assert out["routed_to"] == "orai" and out["speaker"] == "orai"
    assert out["answer"] == "(Hermes passed this to Orai.)\n\nRoses bloom."
    with img.view() as root:
        assert len(root["orai"].ledger) == 1 and len(root["hermes"].ledger) == 0


def test_routing_matches_whole_words(psm):
    img, svc, answers, _ = psm
    answers["hermes"].append("It was founded long ago.")
    out = run_mission(img, enqueue(img, "hermes", "Tell me the history of Paris"), svc)
    assert out["routed_to"] is None and out["speaker"] == "hermes"


def test_owner_can_address_orai_directly(psm):
    img, svc, answers, _ = psm
    answers["orai"].append("Hello.")
    out = run_mission(img, enqueue(img, "orai", "Say hello"), svc)
    assert out["answer"] == "Hello." and out["routed_to"] is None


def test_task_plan_runs_each_step_and_synthesizes(psm):
    img, svc, answers, models = psm
    plan = ('Sure! ```json\n[{"action": "answer", "query": "list two colours"}, '
            '{"do": "ask", "input": "pick one"}, {"do": "tool", "tool": "now"}]\n```')
    answers["hermes"] += [plan, "red, blue", "Red and blue; Orai picks blue."]
    answers["orai"].append("blue")
    mid = enqueue(img, "hermes", "Name colours", kind="task")
    out = run_mission(img, mid, svc)
    assert out["answer"] == "Red and blue; Orai picks blue."
    with img.view() as root:
        m = root["missions"][mid]
        assert [s["do"] for s in m.results] == ["answer", "ask", "tool"]
        assert m.plan_note == "planned by hermes"
        assert len(root["hermes"].ledger) == 2 and len(root["orai"].ledger) == 1
    synthesis = models["hermes"].calls[-1]
    assert "red, blue" in synthesis and "blue" in synthesis and "Request: Name colours" in synthesis


def test_unreadable_plan_falls_back_to_one_step(psm):
    img, svc, answers, _ = psm
    answers["hermes"] += ["I would first think, then answer.", "42"]
    mid = enqueue(img, "hermes", "What is six times seven?", kind="task")
    assert run_mission(img, mid, svc)["answer"] == "42"
    with img.view() as root:
        assert root["missions"][mid].plan_note == "no JSON plan in the answer"


def test_state_prompts_are_slots_changed_at_runtime(psm):
    img, svc, answers, models = psm
    with img.transaction() as conn:
        conn.root()["states"]["DECOMPOSING"].prompt = "PLAN THIS: {request}"
    answers["hermes"] += ["[]", "ok"]
    run_mission(img, enqueue(img, "hermes", "do it", kind="task"), svc)
    assert "PLAN THIS: do it" in models["hermes"].calls[0]
    with img.view() as root:         # the mission delegates to its state for the prompt
        m = root["missions"][queued(root) or list(root["missions"])[-1]]
        assert m.state == "COMPLETE" and m.prompt == root["states"]["COMPLETE"].prompt


def test_failure_in_synthesizing_leaves_only_a_failure_record(psm):
    img, svc, answers, _ = psm

    def boom(text):
        raise RuntimeError("forced failure")
    answers["hermes"] += ['["first", "second"]', "one", "two", boom]
    mid = enqueue(img, "hermes", "Two things", kind="task")
    before_tid = img.last_transaction()
    before = dump(img.storage)
    with pytest.raises(CycleFailed) as e:
        run_mission(img, mid, svc)
    assert e.value.state == "SYNTHESIZING" and "forced failure" in str(e.value)
    txns = list(img.storage.iterator(start=before_tid))[1:]
    assert [t.description for t in txns] == [f"failure record: mission {mid}".encode()]
    with img.view() as root:
        assert len(root["hermes"].ledger) == 0 and len(root["orai"].ledger) == 0
        (f,) = root["failures"].values()
        assert f["mission"] == mid and f["state"] == "SYNTHESIZING"
        m = root["missions"][mid]
        assert m.state == "FAILED" and m.results == [] and m.exchanges == [] and not queued(root)
        # what differs from the dump before the cycle is only the failure record's doing
        from ZODB.utils import oid_repr
        allowed = {oid_repr(o._p_oid) for o in (m, m._slots, m.trail, root["queue"],
                                                 root["failures"], f)}
    changed = {oid for oid, v in dump(img.storage).items() if before.get(oid) != v}
    assert changed and changed <= allowed, changed - allowed


def test_cancel_abandons_the_cycle_and_keeps_the_mission_queued(psm):
    img, svc, answers, _ = psm

    def stop(text):
        svc.cancel.set()
        return "a long answer that is cut"
    answers["hermes"].append(stop)
    mid = enqueue(img, "hermes", "Hello")
    tid = img.last_transaction()
    with pytest.raises(Cancelled):
        run_mission(img, mid, svc)
    assert img.last_transaction() == tid
    with img.view() as root:
        assert queued(root) == [mid] and root["missions"][mid].state == "IDLE"


def test_conflict_at_commit_is_retried_without_generating_again(psm):
    img, svc, answers, models = psm
    mid = enqueue(img, "hermes", "Hello")

    def meddle(text):                # another writer touches the mission mid-cycle
        with img.transaction() as conn:
            conn.root()["missions"][mid].options = {"touched": True}
        return "Hi there."
    answers["hermes"].append(meddle)
    out = run_mission(img, mid, svc)
    assert out["answer"] == "Hi there." and len(models["hermes"].calls) == 1
    with img.view() as root:
        assert root["missions"][mid].options == {"touched": True}
        assert len(root["hermes"].ledger) == 1


def test_a_mission_whose_every_commit_conflicts_stays_queued_not_failed(psm, monkeypatch):
    """Contention is not the mission's fault: no failure record, nothing written, queued."""
    from transaction.interfaces import TransientError

    from kernel import psm as psm_mod
    img, svc, answers, models = psm
    monkeypatch.setattr(psm_mod, "COMMIT_TRIES", 3)
    mid = enqueue(img, "hermes", "Hello")
    answers["hermes"].append("Hi there.")

    def meddle(kind, data):          # another writer touches the mission in every try
        if kind == "state" and data == "COMPLETE":
            with img.transaction() as conn:
                m = conn.root()["missions"][mid]
                m.options = {"touched": m.options.get("touched", 0) + 1}
    with pytest.raises(TransientError):
        run_mission(img, mid, svc, on_event=meddle)
    assert len(models["hermes"].calls) == 1              # generated once, committed never
    with img.view() as root:
        m = root["missions"][mid]
        assert m.options == {"touched": 3} and m.state == "IDLE" and m.answer is None
        assert queued(root) == [mid] and len(root["failures"]) == 0
        assert len(root["hermes"].ledger) == 0


def test_audit_mission_stores_its_report(psm):
    img, svc, _, _ = psm
    mid = enqueue(img, "hermes", "self-audit", kind="audit", source="heartbeat")
    out = run_mission(img, mid, svc)
    assert "queued" in out["answer"] and "MiB resident" in out["answer"]
    with img.view() as root:
        (report,) = root["audits"].values()
        assert report["missions"] == 0 and report["rss_bytes"] > 0
        assert json.dumps(dict(report))


def test_plan_parser_is_forgiving():
    from kernel.plans import parse_plan
    steps, note = parse_plan('{"steps": ["a", {"do": "search", "text": "b"}]}', "r", "orai")
    assert note is None and [s["do"] for s in steps] == ["answer", "search"]
    assert parse_plan('[{"do": "fly", "input": "x"}]', "r", "orai")[0][0]["input"] == "r"
    assert parse_plan("[]", "r", "orai")[1] == "the plan is not a non-empty list of steps"
    steps, _ = parse_plan('[{"do": "ask", "input": "q"}]', "r", "hermes")
    assert steps[0]["mind"] == "orai"


def test_concurrent_enqueues_and_completions_do_not_conflict(folder_image):
    """The queue's head key lets BTrees resolve what writers do to it at once."""
    img = folder_image
    a, b = enqueue(img, "hermes", "one"), enqueue(img, "hermes", "two")
    c1, c2 = img.open(), img.open()
    c1.transaction_manager.begin()
    c2.transaction_manager.begin()
    c1.root()["queue"].pop(a)               # two completions that empty the queue ...
    c2.root()["queue"].pop(b)
    new_mission(c2.root(), "orai", "three")  # ... while a third mission arrives
    c1.transaction_manager.commit()
    c2.transaction_manager.commit()          # resolved, not a ConflictError
    c1.close()
    c2.close()
    with img.view() as root:
        assert [root["missions"][m].request for m in queued(root)] == ["three"]


def test_console_send_missions_and_rate_without_a_kernel(psm):
    import io

    from rich.console import Console as Rich

    from batos.console import Console
    img, svc, answers, models = psm
    answers["hermes"] += ["Paris.", "Lyon, probably."]
    out = io.StringIO()
    c = Console(img, out=Rich(file=out, width=200))
    c.missions.services = svc            # the scripted models instead of the image's own
    first = c.execute(":send hermes What is the capital of France?")
    assert first["answer"] == "Paris." and "Paris." in out.getvalue()
    c.execute(":send hermes And the second city?")
    assert "What is the capital of France?" in models["hermes"].calls[-1]   # the conversation
    rows = c.execute(":missions")
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    assert c.execute(":rate 2 bad it is Marseille") is True
    assert c.execute(":rate 7 good") is False and c.execute(":rate 1 meh") is False
    with img.view() as root:
        ex = [root["hermes"].ledger[k] for k in root["hermes"].ledger]
        assert ex[1].signals["rating"] == "bad" and ex[1].signals["note"] == "it is Marseille"
        assert "rating" not in ex[0].signals
    c.close()


def test_api_token_is_private_and_refused_when_others_can_read_it(tmp_path):
    from conftest import batos_env, run_batos

    from image import resolve
    from kernel.api_token import TokenError, ensure_token, read_token
    env = batos_env(tmp_path, BATOS_IMAGE=str(tmp_path / "image"))
    run_batos("init", "--no-models", env=env, check=True)
    loc = resolve(tmp_path / "image")
    path = tmp_path / "image" / "api-token"
    assert path.stat().st_mode & 0o777 == 0o600
    printed = run_batos("api-token", env=env, check=True).stdout.strip()
    assert printed == read_token(loc) and printed.startswith("batos-")
    assert ensure_token(loc, rotate=True) != printed
    path.chmod(0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        read_token(loc)
    p = run_batos("api-token", env=env)
    assert p.returncode == 2 and "chmod 600" in p.stderr


def test_scheduled_jobs_run_every_n_seconds_or_daily_at_a_time():
    import time as _time

    from kernel.scheduling import Job
    every = Job("beat", print, every=5)
    now = _time.time()
    assert not every.due(now) and every.due(now + 5) and not every.due(now + 6)
    at = Job("night", print, at="02:00")
    due = _time.localtime(at.next)
    assert (due.tm_hour, due.tm_min) == (2, 0) and 0 < at.next - now <= 86400 + 3600
    with pytest.raises(ValueError):
        Job("both", print, every=1, at="02:00")
