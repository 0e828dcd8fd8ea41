"""Missions and their queue, rule by rule, on a memory image (the claim protocol between
processes: test_runners.py and test_chaos.py)."""
import time

import pytest

from kernel import missions as ms
from kernel import runners


def _mission(img, request="hello", **kw):
    with img.transaction() as conn:
        return ms.new_mission(conn.root(), "hermes", request, **kw).id


def _me(img, rid="me:1:1:a"):
    def beat(root):
        runners.beat(root, rid, role="runner")["machine"] = "elsewhere"
    img.run(beat)
    return rid


def test_a_new_mission_is_idle_queued_and_owns_copies_of_what_it_was_given(mem_image):
    history, options = [{"role": "user", "content": "hi"}], {"max_tokens": 5}
    before = time.time()
    mid = _mission(mem_image, history=history, options=options, kind="task", source="cli")
    history[0]["content"], options["max_tokens"] = "changed", 99
    with mem_image.view() as root:
        m = root["missions"][mid]
        assert (m.state, m.kind, m.source, m.mind, m.request) == (
            "IDLE", "task", "cli", "hermes", "hello")
        assert m.history == [{"role": "user", "content": "hi"}] and m.options == {"max_tokens": 5}
        assert (m.attempts, m.epoch, m.lapses, m.runner, m.answer) == (0, 0, 0, None, None)
        assert [s for s, _ in m.trail] == ["IDLE"] and before <= m.created <= time.time()
        assert m.lookup("parent*", None) is root["states"]["IDLE"]
        assert ms.queued(root) == [mid] and ms.queue_length(root) == 1


def test_a_mission_for_no_mind_or_of_no_kind_is_refused(mem_image):
    with mem_image.transaction() as conn:
        with pytest.raises(ValueError, match="goes to orai or hermes, not 'bob'"):
            ms.new_mission(conn.root(), "bob", "hi")
        with pytest.raises(ValueError, match=r"one of chat, task, audit, extend, not 'dance'"):
            ms.new_mission(conn.root(), "hermes", "hi", kind="dance")
        assert ms.queue_length(conn.root()) == 0


def test_entering_a_state_delegates_to_it_and_extends_the_trail(mem_image):
    mid = _mission(mem_image)
    with mem_image.transaction() as conn:
        root = conn.root()
        m = root["missions"][mid]
        ms.enter(root, m, "DELEGATING")
        assert m.state == "DELEGATING" and m.lookup("parent*", None) is root["states"]["DELEGATING"]
        assert [s for s, _ in m.trail] == ["IDLE", "DELEGATING"]


def test_the_queue_is_oldest_first_and_limited(mem_image):
    ids = [_mission(mem_image, f"q{i}") for i in range(5)]
    with mem_image.view() as root:
        assert ms.queued(root) == ids and ms.queued(root, 2) == ids[:2]
        assert ms.queued(root, None) == ids and ms.queue_length(root) == 5
        assert [m.id for m in ms.recent(root, 2)] == ids[-2:]
        assert ms.recent(root, 0) == []
    with mem_image.transaction() as conn:
        for mid in ids:
            ms.dequeue(conn.root(), conn.root()["missions"][mid])
    with mem_image.view() as root:
        assert ms.queued(root) == [] and ms.queue_length(root) == 0


def test_claims_count_attempts_and_epochs_and_refuse_what_is_not_queued(mem_image):
    me = _me(mem_image)
    assert mem_image.run(ms.claim, "no-such-mission", me) is None
    mid = _mission(mem_image)
    before = time.time()
    assert mem_image.run(ms.claim, mid, me) == (me, 1)
    assert mem_image.run(ms.claim, mid, me) == (me, 2)         # its own claim, again: no lapse
    with mem_image.view() as root:
        m = root["missions"][mid]
        assert (m.attempts, m.lapses, m.runner) == (2, 0, me) and m.started >= before
    with mem_image.transaction() as conn:
        ms.dequeue(conn.root(), conn.root()["missions"][mid])
    assert mem_image.run(ms.claim, mid, me) is None             # left the queue
    done = _mission(mem_image)
    with mem_image.transaction() as conn:
        ms.enter(conn.root(), conn.root()["missions"][done], "COMPLETE")
    assert mem_image.run(ms.claim, done, me) is None            # terminal, though queued


def test_a_claim_for_other_minds_is_refused(mem_image):
    me = _me(mem_image)
    mid = _mission(mem_image)
    assert mem_image.run(ms.claim, mid, me, ("orai",)) is None
    assert mem_image.run(ms.claim, mid, me, ("hermes",)) == (me, 1)


def test_a_fence_holds_only_for_its_runner_and_epoch(mem_image):
    me = _me(mem_image)
    mid = _mission(mem_image)
    fence = mem_image.run(ms.claim, mid, me)
    with mem_image.view() as root:
        assert ms.holds(root, mid, fence) and not ms.holds(root, "nope", fence)
        assert not ms.holds(root, mid, (me, 2)) and not ms.holds(root, mid, ("you", 1))
        ms.check_fence(root, mid, None, "anything")               # an unclaimed run
        with pytest.raises(ms.StaleClaim, match=r"runner me:1:1:a \(epoch 7\) no longer holds "
                                                r"it \(now \('me:1:1:a', 1\)\)"):
            ms.check_fence(root, mid, (me, 7), "answer")


def test_a_release_needs_the_fence_and_keeps_a_finished_missions_runner(mem_image):
    me = _me(mem_image)
    mid = _mission(mem_image)
    fence = mem_image.run(ms.claim, mid, me)
    assert mem_image.run(ms.release, mid, (me, 9)) is False
    with mem_image.view() as root:
        assert root["missions"][mid].runner == me
    with mem_image.transaction() as conn:
        ms.enter(conn.root(), conn.root()["missions"][mid], "COMPLETE")
    assert mem_image.run(ms.release, mid, fence) is True
    with mem_image.view() as root:
        assert root["missions"][mid].runner == me               # who finished it stays


def test_a_failure_record_marks_the_mission_and_says_why(mem_image):
    mid = _mission(mem_image)
    key = mem_image.run(ms.record_failure, mid, "DELEGATING", "no model", "k:1:1:a")
    with mem_image.view() as root:
        m, f = root["missions"][mid], root["failures"][key]
        assert (m.state, m.error) == ("FAILED", "no model") and m.finished is not None
        assert dict(f) | {"time": 0} == {"mission": mid, "state": "DELEGATING",
                                         "reason": "no model", "kernel": "k:1:1:a",
                                         "request": "hello", "time": 0}
        assert ms.queued(root) == []
    gone = mem_image.run(ms.record_failure, "vanished", "IDLE", "lost", None)
    with mem_image.view() as root:
        assert root["failures"][gone]["mission"] == "vanished"
        assert root["failures"][gone]["request"] is None


def test_a_summary_is_plain_data(mem_image):
    import json
    mid = _mission(mem_image)
    with mem_image.transaction() as conn:
        m = conn.root()["missions"][mid]
        s = ms.summary(m)
        assert s["running"] is False and s["usage"] is None and s["lapses"] == 0
        m.started, m.usage = time.time(), {"completion_tokens": 3}
        s = ms.summary(m)
        assert s["running"] is True and s["usage"] == {"completion_tokens": 3}
        ms.enter(conn.root(), m, "FAILED")
        assert ms.summary(m)["running"] is False
        assert json.loads(json.dumps(ms.summary(m))) == ms.summary(m)


def test_an_older_epoch_never_holds_a_newer_claim(mem_image):
    me = _me(mem_image)
    mid = _mission(mem_image)
    first = mem_image.run(ms.claim, mid, me)
    second = mem_image.run(ms.claim, mid, me)
    with mem_image.view() as root:
        assert ms.holds(root, mid, second) and not ms.holds(root, mid, first)


def test_the_third_lapse_fails_the_mission_as_the_docs_say(mem_image, monkeypatch):
    holders = [f"dies:{i}:1:a" for i in range(4)]
    for rid in holders:
        _me(mem_image, rid)
    mid = _mission(mem_image, "poison")
    alive = set(holders)
    monkeypatch.setattr(runners.Judge, "alive", lambda self, rid: rid in alive)
    for i, rid in enumerate(holders[:3]):
        assert mem_image.run(ms.claim, mid, rid) == (rid, i + 1)
        alive.discard(rid)                                    # and it dies holding it
    assert mem_image.run(ms.claim, mid, holders[3]) is None
    with mem_image.view() as root:
        m = root["missions"][mid]
        assert m.state == "FAILED" and m.lapses == 3 and "lapsed 3 times" in m.error


def test_a_mission_from_before_claims_had_epochs_is_claimed_from_zero(mem_image):
    me = _me(mem_image)
    mid = _mission(mem_image)
    with mem_image.transaction() as conn:           # as an older image stored it
        m = conn.root()["missions"][mid]
        m.remove_slot("epoch")
        m.remove_slot("lapses")
    with mem_image.view() as root:
        m = root["missions"][mid]
        assert ms.holds(root, mid, (None, 0)) and ms.summary(m)["lapses"] == 0
        with pytest.raises(ms.StaleClaim, match=r"\(now \(None, 0\)\)"):
            ms.check_fence(root, mid, (me, 1), "answer")
    assert mem_image.run(ms.claim, mid, me) == (me, 1)


def test_the_queue_shows_a_hundred_by_default(mem_image):
    with mem_image.transaction() as conn:
        for i in range(101):
            ms.new_mission(conn.root(), "hermes", f"q{i}")
    with mem_image.view() as root:
        assert len(ms.queued(root)) == 100 and ms.queue_length(root) == 101
        assert len(ms.recent(root)) == 10           # the last ten, by default
