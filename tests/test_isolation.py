"""Untrusted methods in isolated workers: benign code runs as written, and the host holds.

The attacks are in test_red_team.py (each in its own subprocess); here: the
benign corpora (hand-written in models' style, and the bundled model's own
answers), the transactional semantics of an isolated call, grants, tracked
slots in old images, and the worker pool.
"""
import __future__

import json
import pathlib
import types

import pytest
from benign_methods import BENIGN
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from guardians import limits, vet, workers
from image import open_image
from image.dump import dump
from kernel.schema import bootstrap
from prototypes import UvmObject
from prototypes.capabilities import CapabilityError, grant
from prototypes.method import install
from prototypes.persist import PersistentSet

MODEL_ANSWERS = pathlib.Path(__file__).with_name("data") / "model_methods.json"


def plain(v):
    if isinstance(v, (list, PersistentList)):
        return [plain(x) for x in v]
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    if isinstance(v, (dict, PersistentMapping)):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (set, PersistentSet)):
        return {plain(x) for x in v}
    return v


def _receiver(root, name, slots, author):
    methods = slots.get("methods", {})
    obj = UvmObject(**{"name": name, "parent*": root["traits"],
                       **{k: v for k, v in slots.items() if k != "methods"}})
    for mname, src in methods.items():
        install(obj, mname, src, {"author": author})
    root[name] = obj
    return obj


@pytest.mark.parametrize("author", ["mind", "console"], ids=["isolated", "in-process"])
@pytest.mark.parametrize("case", BENIGN, ids=[b[0] for b in BENIGN])
def test_benign_method_is_accepted_and_returns_the_right_value(case, author, tmp_path):
    cid, source, slots, args, expected, after = case
    verdict = vet(source, name=_method_name(source))
    assert verdict.accepted, verdict.reasons
    img = open_image(tmp_path / "image", create=True)
    bootstrap(img)
    with img.transaction() as conn:
        obj = _receiver(conn.root(), "probe", slots, author)
        install(obj, verdict.function, source, {"author": author})
        assert obj.lookup(verdict.function).isolated is (author == "mind")
        assert vet(source, receiver=obj, name=verdict.function).accepted
    with img.transaction() as conn:
        if verdict.function == "doesNotUnderstand":     # it answers the read of a missing slot
            result = conn.root()["probe"].size
        else:
            result = getattr(conn.root()["probe"], verdict.function)(*args)
        assert plain(result) == expected
    img.close()
    img = open_image(tmp_path / "image")
    with img.view() as root:
        for slot, value in after.items():
            assert plain(root["probe"].lookup(slot)) == plain(value), slot
    img.close()


def _method_name(source):
    """The method among the defs: the first whose first parameter is self."""
    import ast
    return next(d.name for d in ast.parse(source).body
                if d.args.args and d.args.args[0].arg == "self")


def test_the_benign_corpus_is_big_enough():
    answers = json.loads(MODEL_ANSWERS.read_text())["answers"]
    with_method = [a for a in answers if a["source"]]
    assert len(BENIGN) >= 50 and len(with_method) >= 50


# -- the bundled model's own answers ----------------------------------------------------
class PlainObject:
    """The receiver as ordinary Python: what the method would do with no guardians."""

    def __init__(self, name, slots):
        self.__dict__.update(slots, name=name)

    def slot_names(self):
        return list(self.__dict__)

    def short_name(self):
        return self.name

    def lookup(self, name, *default):
        return self.__dict__.get(name, *default) if default else self.__dict__[name]


def _outcome(call):
    try:
        return ("value", plain(call()))
    except Exception as e:      # noqa: BLE001 - the kind of failure is what is compared
        kind = type(e).__name__
        return ("error", {"DoesNotUnderstand": "AttributeError", "SlotError": "KeyError",
                          "IsolatedError": e.kind if hasattr(e, "kind") else kind}.get(kind, kind))


def _model_answers():
    if not MODEL_ANSWERS.exists():
        return []
    return [a for a in json.loads(MODEL_ANSWERS.read_text())["answers"] if a["source"]]


# What only the guardians may refuse in a model's answer: real rule breaks.
REAL_RULES = {"private-attribute", "private-name", "forbidden-name", "frame-attribute",
              "one-function", "syntax", "global", "class", "import", "definition-time"}


@pytest.mark.parametrize("answer", _model_answers(),
                         ids=lambda a: f"{a['selector']}-t{a['temperature']}")
def test_the_bundled_models_answer_runs_as_plain_python_would(answer, mem_image):
    """Refused only for a real rule break; otherwise the same value or the same error kind."""
    source = answer["source"]
    verdict = vet(source, name=answer["selector"])
    if not verdict.accepted:
        assert {r.rule for r in verdict.reasons} <= REAL_RULES, verdict.reasons
        return
    ns = {}          # annotations unevaluated, as the guardians drop them
    exec(compile(source, "<model answer>", "exec", __future__.annotations.compiler_flag), ns)
    fn = ns[verdict.function]          # the last def of that name, as in the guardians
    obj = PlainObject(answer["object"], json.loads(json.dumps(answer["slots"])))
    obj.__dict__[verdict.function] = types.MethodType(fn, obj)     # a slot in the image too
    expected = _outcome(lambda: fn(obj, *json.loads(json.dumps(answer["args"]))))
    with mem_image.transaction() as conn:
        target = _receiver(conn.root(), answer["object"], answer["slots"], "mind")
        install(target, verdict.function, source, {"author": "mind"})
        got = _outcome(lambda: getattr(target, verdict.function)(*answer["args"]))
    if expected[0] == "error" and expected[1] == "RecursionError":
        assert got[0] == "error"             # the worker's stack is smaller than this process's
    else:
        assert got == expected, source


# -- transactional semantics ---------------------------------------------------------
def _target(conn, **slots):
    root = conn.root()
    obj = UvmObject(**{"name": "target", "parent*": root["traits"], "items": [1], **slots})
    root["target"] = obj
    return obj


def test_writes_land_in_the_callers_transaction_and_only_commit_with_it(mem_image):
    src = "def f(self, x):\n    self.items.append(x)\n    self.last = x\n    return len(self.items)\n"
    with mem_image.transaction() as conn:
        install(_target(conn), "f", src, {"author": "mind"})
    before = dump(mem_image.storage)
    conn = mem_image.db.open()
    try:
        t = conn.root()["target"]
        assert t.f(5) == 2 and t.last == 5 and list(t.items) == [1, 5]    # seen at once
        conn.transaction_manager.abort()
    finally:
        conn.close()
    assert dump(mem_image.storage) == before             # the caller aborted: nothing landed
    with mem_image.transaction() as conn:
        conn.root()["target"].f(6)
    with mem_image.view() as root:
        assert list(root["target"].items) == [1, 6] and root["target"].last == 6


def test_a_receiver_added_in_the_same_transaction_is_undone_without_a_savepoint(mem_image):
    src = "def f(self):\n    self.items.append(2)\n    self.n = 3\n    return 1 / 0\n"
    with mem_image.transaction() as conn:
        t = UvmObject(name="fresh", items=[1])       # not in any connection yet
        install(t, "f", src, {"author": "mind"})
        with pytest.raises(ZeroDivisionError):
            t.f()
        assert list(t.items) == [1] and "n" not in t.slot_names()
        conn.root()["fresh"] = t
    with mem_image.view() as root:
        assert list(root["fresh"].items) == [1]


def test_an_owner_method_calling_an_untrusted_one_still_isolates_it(mem_image):
    with mem_image.transaction() as conn:
        t = _target(conn)
        install(t, "evil", "def evil(self):\n    self.friend_write = 1\n"
                "    self.lookup_chain()[-1].x = 1\n", {"author": "mind"})
        install(t, "outer", "def outer(self):\n    return self.evil()\n", {"author": "console"})
    before = dump(mem_image.storage)
    with pytest.raises(CapabilityError):
        with mem_image.transaction() as conn:
            conn.root()["target"].outer()
    assert dump(mem_image.storage) == before


def test_a_grant_recorded_in_the_image_lets_a_method_write_what_it_names(mem_image):
    with mem_image.transaction() as conn:
        t = _target(conn)
        root = conn.root()
        root["other"] = UvmObject(name="other", note="")
        t.friend = root["other"]
        install(t, "f", "def f(self):\n    self.friend.note = 'hi'\n    return 1\n",
                {"author": "mind"})
    with pytest.raises(CapabilityError, match=":grant target f others"):
        with mem_image.transaction() as conn:
            conn.root()["target"].f()
    with mem_image.transaction() as conn:
        grant(conn.root()["target"], "f", "others", by="test")
    with mem_image.transaction() as conn:
        assert conn.root()["target"].f() == 1
    with mem_image.view() as root:
        assert root["other"].note == "hi"
        g = root["target"].lookup("f").grants["others"]
        assert g["by"] == "test" and g["at"] > 0


def test_nothing_of_a_call_reaches_the_next_one_on_the_same_worker(mem_image):
    """Default values are fresh per call; a stand-in kept anyway would refuse (CallOver)."""
    src = ("def f(self, keep=[]):\n    if keep:\n        old = keep[0]\n        old.n = 99\n"
           "        return 'wrote'\n    keep.append(self)\n    return 'kept'\n")
    with mem_image.transaction() as conn:
        install(_target(conn, n=1), "f", src, {"author": "mind"})
    workers.POOL.close()          # one worker, so the second call meets the first's leftovers
    workers.POOL.size = 1
    try:
        for _ in range(2):
            with mem_image.transaction() as conn:
                assert conn.root()["target"].f() == "kept"
    finally:
        workers.POOL.size = 2
    with mem_image.view() as root:
        assert root["target"].n == 1


def test_a_stale_stand_in_refuses(mem_image):
    from guardians.remote import CallOver, Remote, Session
    session = Session(chan=None, compile_method=None)
    stale = Remote(session, 1, "target")
    session.close()
    with pytest.raises(CallOver):
        stale.n = 99


def test_a_crashing_method_kills_only_its_worker_which_is_replaced(mem_image):
    crash = "def f(self):\n    t = ()\n    for i in range(300000):\n        t = (t,)\n    return hash(t)\n"
    with mem_image.transaction() as conn:
        t = _target(conn)
        install(t, "f", crash, {"author": "mind"})
        install(t, "ok", "def ok(self):\n    return 'fine'\n", {"author": "mind"})
    replaced = workers.POOL.replaced
    with pytest.raises(limits.LimitExceeded, match="segmentation fault") as e:
        with mem_image.transaction() as conn:
            conn.root()["target"].f()
    assert e.value.kind == "crash" and workers.POOL.replaced == replaced + 1
    with mem_image.transaction() as conn:
        assert conn.root()["target"].ok() == "fine"


# -- tracked slots --------------------------------------------------------------------
def test_bootstrap_tracks_plain_containers_an_older_image_holds(tmp_path):
    img = open_image(tmp_path / "old", create=True)
    bootstrap(img)
    with img.transaction() as conn:
        root = conn.root()
        o = UvmObject(name="legacy")
        o._slots.data.update(items=[1, [2]], cfg={"a": {"b": 1}}, tags={"x"})   # as stored before
        o._slots._p_changed = True
        root["legacy"] = o
        del root["meta"]["tracked_slots"]
    assert bootstrap(img) == []           # nothing new to create: the upgrade works in place
    with img.view() as root:
        assert root["meta"]["tracked_slots"] is True
        o = root["legacy"]
        assert type(o.items) is PersistentList and type(o.items[1]) is PersistentList
        assert type(o.cfg["a"]) is PersistentMapping and type(o.tags) is PersistentSet
    with img.transaction() as conn:
        conn.root()["legacy"].items.append(3)
    img.close()
    img = open_image(tmp_path / "old")
    with img.view() as root:
        assert plain(root["legacy"].items) == [1, [2], 3]
    img.close()


def test_module_level_defaults_are_never_shared_with_an_image():
    from mindhost.settings import RoutingSettings
    from prototypes.settings import defaults
    first = open_image("memory:")
    bootstrap(first)
    with first.transaction() as conn:
        conn.root()["hermes"].routing["keywords"].append("mine")
    second = open_image("memory:")
    bootstrap(second)
    with second.view() as root:
        assert "mine" not in root["hermes"].routing["keywords"]
    assert "mine" not in defaults(RoutingSettings)["keywords"]


def test_values_an_image_cannot_store_are_refused_when_assigned():
    from prototypes.persist import Unstorable
    o = UvmObject(name="o")
    for bad in (lambda: 1, (i for i in ()), types):
        with pytest.raises(Unstorable):
            o.x = bad
    assert "x" not in o.slot_names()


def test_no_worker_process_means_a_clear_error_and_no_change(mem_image, monkeypatch):
    with mem_image.transaction() as conn:
        install(_target(conn), "f", "def f(self):\n    self.n = 1\n", {"author": "mind"})
    before = dump(mem_image.storage)
    monkeypatch.setattr(workers.POOL, "idle", [])
    monkeypatch.setattr(workers, "sys", types.SimpleNamespace(executable="/bin/false"))
    with pytest.raises(workers.WorkerError, match="did not start"):
        with mem_image.transaction() as conn:
            conn.root()["target"].f()
    assert dump(mem_image.storage) == before


def test_a_granted_method_does_not_lend_its_grant_to_a_method_it_calls(mem_image):
    with mem_image.transaction() as conn:
        t = _target(conn)
        conn.root()["other"] = other = UvmObject(name="other", items=[1], secret="s")
        t.friend = other
        install(t, "report", "def report(self):\n    n = self.count()\n"
                "    self.friend.items.append(n)\n    return n\n", {"author": "mind"})
        install(t, "count", "def count(self):\n    self.friend.secret = 'pwned'\n    return 0\n",
                {"author": "mind"})
        grant(t, "report", "others", by="test")
    with pytest.raises(CapabilityError):
        with mem_image.transaction() as conn:
            conn.root()["target"].report()
    with mem_image.view() as root:
        assert root["other"].secret == "s" and list(root["other"].items) == [1]


def test_a_receiver_outside_any_connection_still_cannot_write_well_known_objects(mem_image):
    with mem_image.transaction() as conn:
        traits = conn.root()["traits"]
        fresh = UvmObject(**{"name": "fresh", "parent*": traits})      # not stored yet
        install(fresh, "f", "def f(self):\n    self.lookup_chain()[-1].hacked = 1\n",
                {"author": "mind"})
        grant(fresh, "f", "others", by="test")
        with pytest.raises(CapabilityError, match="well-known"):
            fresh.f()
        assert "hacked" not in traits.slot_names()


def test_a_container_passed_in_is_copied_when_a_clone_keeps_it(mem_image):
    with mem_image.transaction() as conn:
        t = _target(conn)
        conn.root()["other"] = other = UvmObject(name="other", items=[1])
        install(t, "adopt", "def adopt(self, xs):\n    self.kid = self.clone(items=xs)\n",
                {"author": "mind"})
        install(t, "grow", "def grow(self):\n    self.items.append(666)\n",
                {"author": "mind"})
        t.adopt(other.items)
        t.kid.grow()            # the clone's own slot: allowed, and it is not other's list
        assert list(other.items) == [1] and list(t.kid.items) == [1, 666]


def test_a_worker_that_runs_out_of_memory_mid_message_is_replaced_not_reused(mem_image):
    src = ("def f(self):\n    keep = []\n    try:\n        while True:\n"
           "            keep.append(bytearray(1000000))\n    except MemoryError:\n        pass\n"
           "    for i in range(4):\n        keep.pop()\n    try:\n        v = self.big\n"
           "    except MemoryError:\n        pass\n    keep.clear()\n    return 'caught'\n")
    with mem_image.transaction() as conn:
        t = _target(conn, big="x" * 20_000_000)
        install(t, "f", src, {"author": "mind"})
        install(t, "ok", "def ok(self):\n    return 2\n", {"author": "mind"})
    with pytest.raises(limits.LimitExceeded) as e:
        with mem_image.transaction() as conn:
            conn.root()["target"].f()
    assert e.value.kind == "crash"
    with mem_image.transaction() as conn:
        assert conn.root()["target"].ok() == 2


def test_a_failing_call_undoes_its_write_to_an_object_of_another_connection(mem_image):
    """The savepoint covers the receiver's connection; the undo record covers the rest."""
    with mem_image.transaction() as conn:
        t = _target(conn)
        conn.root()["other"] = UvmObject(name="other", note="old")
        install(t, "f", "def f(self, o):\n    o.note = 'new'\n    return 1 / 0\n",
                {"author": "mind"})
        grant(t, "f", "others", by="test")
    with mem_image.transaction() as a, mem_image.transaction() as b:
        other = b.root()["other"]
        with pytest.raises(ZeroDivisionError):
            a.root()["target"].f(other)
        assert other.note == "old"
    with mem_image.view() as root:
        assert root["other"].note == "old"


DEFERRED = {
    "generator": ("def gen(self):\n    self.friend.secret = 'pwned'\n    yield 1\n",
                  "def report(self):\n    for _ in self.gen():\n        pass\n    return 1\n"),
    "closure": ("def gen(self):\n    def w():\n        self.friend.secret = 'pwned'\n"
                "    return w\n",
                "def report(self):\n    self.gen()()\n    return 1\n"),
    "generator-expression": ("def gen(self):\n    return (self.friend.set_slot('secret', 'pwned')"
                             " for _ in [1])\n",
                             "def report(self):\n    return list(self.gen())\n"),
}


@pytest.mark.parametrize("shape", DEFERRED)
def test_a_grant_holds_for_its_own_code_not_for_code_it_runs_from_elsewhere(mem_image, shape):
    """A generator or closure an ungranted method returns writes with that method's rights,
    even when a granted method runs it (issue 29: grants bound to frames)."""
    gen, report = DEFERRED[shape]
    with mem_image.transaction() as conn:
        t = _target(conn)
        conn.root()["other"] = other = UvmObject(name="other", secret="s")
        t.friend = other
        install(t, "gen", gen, {"author": "mind"})
        install(t, "report", report, {"author": "mind"})
        grant(t, "report", "others", by="test")
    with pytest.raises(CapabilityError):
        with mem_image.transaction() as conn:
            conn.root()["target"].report()
    with mem_image.view() as root:
        assert root["other"].secret == "s"


def test_a_container_aliased_into_an_own_slot_is_a_copy_not_a_way_into_the_original(mem_image):
    """Ownership is where a container is stored: an owner's alias of traits.method_limits in
    the receiver's own slot must not let a mind's method raise the limits of everything."""
    with mem_image.transaction() as conn:
        t = _target(conn)
        traits = conn.root()["traits"]
        traits.method_limits = {"seconds": 2.0, "memory_mb": 64.0, "output_kb": 256.0}
    with mem_image.transaction() as conn:
        t = conn.root()["target"]
        t.lim = conn.root()["traits"].method_limits          # the owner, in process
        install(t, "f", "def f(self):\n    self.lim['seconds'] = 1000.0\n    return 1\n",
                {"author": "mind"})
    with mem_image.transaction() as conn:
        conn.root()["target"].f()
    with mem_image.view() as root:
        assert root["traits"].method_limits["seconds"] == 2.0
        assert root["target"].lim["seconds"] == 1000.0


@pytest.mark.parametrize("how", ["override", "set-after"])
def test_a_clone_gets_no_larger_limits_from_a_parent_it_is_given(mem_image, how):
    body = {"override": "    c = self.clone(**{'parent*': self.boss})\n",
            "set-after": "    c = self.clone()\n    c.set_slot('parent*', self.boss)\n"}[how]
    with mem_image.transaction() as conn:
        root = conn.root()
        root["traits"].method_limits = {"seconds": 2.0, "memory_mb": 64.0, "output_kb": 256.0}
        boss = UvmObject(**{"name": "boss", "parent*": root["traits"],
                            "method_limits": {"seconds": 600.0, "memory_mb": 4096.0,
                                              "output_kb": 4096.0}})
        root["boss"] = boss
        t = _target(conn, boss=boss)
        install(t, "f", "def f(self):\n" + body + "    self.kid = c\n    return 1\n",
                {"author": "mind"})
    with pytest.raises(CapabilityError, match="limits"):
        with mem_image.transaction() as conn:
            conn.root()["target"].f()
    with mem_image.view() as root:
        assert "kid" not in root["target"].slot_names()


def test_a_clone_does_not_share_its_originals_grants(mem_image):
    with mem_image.transaction() as conn:
        t = _target(conn)
        install(t, "f", "def f(self):\n    return 1\n", {"author": "mind"})
        grant(t, "f", "others", by="test")
        kid = t.clone(name="kid")
        conn.root()["kid"] = kid
        assert kid.lookup("f").source == t.lookup("f").source
        assert not (getattr(kid.lookup("f"), "grants", None) or {})
        grant(kid, "f", "parents", by="test")
        assert set(t.lookup("f").grants) == {"others"}


def test_an_owner_method_on_a_receiver_not_stored_yet_is_all_or_nothing(mem_image):
    """No savepoint covers it: the call keeps a record of the receiver's own data instead."""
    src = ("def f(self):\n    self.items.append(2)\n    self.cfg['k'].append(1)\n"
           "    self.n = 3\n    self.extra = 1\n    return 1 / 0\n")
    t = UvmObject(name="fresh", items=[1], cfg={"k": []}, n=1)
    install(t, "f", src, {"author": "console"})
    items = t.items
    with pytest.raises(ZeroDivisionError):
        t.f()
    assert list(t.items) == [1] and t.items is items and list(t.cfg["k"]) == []
    assert t.n == 1 and "extra" not in t.slot_names()


def test_a_generator_left_suspended_never_runs_after_its_call(mem_image):
    """Its ``finally`` (300 MB, then a busy loop) would run once a collection found it: in
    the call's own process, which exits without collecting, it never runs, so the worker
    is not held up and the next call is not slowed."""
    src = ("def f(self):\n    def g(box):\n        try:\n            yield 1\n"
           "        finally:\n            x = 'a' * (300 * 2 ** 20)\n"
           "            while len(x):\n                pass\n"
           "    box = []\n    it = g(box)\n    next(it)\n    box.append(it)\n    return 1\n")
    with mem_image.transaction() as conn:
        t = _target(conn, n=1)
        t.method_limits = {"seconds": 5.0, "memory_mb": 400.0, "output_kb": 256.0}
        install(t, "f", src, {"author": "mind"})
        install(t, "g2", "def g2(self):\n    return self.n\n", {"author": "mind"})
    workers.POOL.close()
    workers.POOL.size = 1
    try:
        with mem_image.transaction() as conn:
            assert conn.root()["target"].f() == 1
        replaced = workers.POOL.replaced
        with mem_image.transaction() as conn:
            assert conn.root()["target"].g2() == 1
        assert workers.POOL.replaced == replaced        # no worker was stuck in a finally
    finally:
        workers.POOL.size = 2
