"""Self-extension: doesNotUnderstand asks a mind, the guardians vet, the method is installed
and the message re-sent; limits, provenance, revert, the off switches, mission mode.

The mind is the scripted engine (the test double) unless marked slow: then it
is the bundled SmolLM2.
"""
import io
import threading

import pytest
from guard_corpus import HOSTILE
from rich.console import Console as RichConsole
from scripted_engine import ScriptedEngine

from guardians import limits
from image.dump import dump
from kernel import extend
from mindhost.pool import ModelPool
from prototypes import DoesNotUnderstand, ExtensionFailed, Method, UvmObject, extension

DOUBLE = ("Here is the method you asked for:\n\n```python\ndef double(self, arg1):\n"
          "    \"\"\"Twice the argument.\"\"\"\n    return arg1 * 2\n```\n\nIt doubles the number.")
HOSTILE_DOUBLE = "```python\ndef double(self, arg1):\n    import os\n    return os.getcwd()\n```"


def scripted(answers):
    return ScriptedEngine(answers).load()


def make_calc(img):
    with img.transaction() as conn:
        root = conn.root()
        root["calc"] = UvmObject(**{"name": "calc", "parent*": root["traits"], "base": 10})


def extender_for(model, events=None):
    progress = (lambda e, **d: events.append((e, d))) if events is not None else None
    return extend.Extender(extend.pool_asker(ModelPool({"hermes": model})), progress=progress)


def test_a_missing_method_is_written_installed_and_answers_the_resent_call(mem_image):
    make_calc(mem_image)
    model, events = scripted([DOUBLE]), []
    with mem_image.transaction() as conn, extension.using(extender_for(model, events)):
        calc = conn.root()["calc"]
        assert calc.double(21) == 42
        assert calc.double(5) == 10            # installed: the mind is not asked again
    assert len(model.calls) == 1
    prompt = model.calls[0]
    assert "calc.double(21)" in prompt and "base = 10" in prompt      # the call and the slots
    assert "def describe(self)" in prompt                            # inherited methods
    assert "You may import math" in prompt and "def add_item" in prompt   # rules, examples
    assert "test_extend.py" in prompt                                # the call site
    assert [e for e, _ in events] == ["asking", "accepted", "installed"]
    with mem_image.view() as root:
        m = root["calc"].lookup("double")
        assert isinstance(m, Method) and m.previous is None
        p = m.provenance
        assert p["author"] == "mind" and p["mind"] == "hermes" and p["generation"] == 0
        assert p["prompt"] in prompt and p["answer"] == DOUBLE
        assert p["attempts"] == [{"answer": DOUBLE, "source": m.source, "accepted": True,
                                  "reasons": []}]
        assert m.source.startswith("def double(self, arg1):") and "It doubles" not in m.source
        assert p["call"] == "calc.double(21)" and p["installed"] > 0
        assert root["calc"].double(4) == 8


def test_a_hostile_answer_is_retried_with_the_reasons_then_fails_leaving_the_image_unchanged(
        mem_image, monkeypatch):
    make_calc(mem_image)
    compiled = []
    real = extend.Method.function
    monkeypatch.setattr(extend.Method, "function", lambda self: compiled.append(self) or real(self))
    model = scripted([HOSTILE_DOUBLE, "I cannot do that.", HOSTILE_DOUBLE])
    before = dump(mem_image.storage)
    with pytest.raises(ExtensionFailed) as e:
        with mem_image.transaction() as conn, extension.using(extender_for(model)):
            conn.root()["calc"].double(21)
    assert len(model.calls) == 3                                   # one answer and 2 retries
    assert "[import]" in model.calls[1] and "rejected your method" in model.calls[1]
    assert "has no `def double" in model.calls[2]
    assert len(e.value.attempts) == 3 and not any(a["accepted"] for a in e.value.attempts)
    assert any("import" in r for r in e.value.reasons) and "image is unchanged" in str(e.value)
    assert compiled == []                                          # nothing was compiled
    assert dump(mem_image.storage) == before


def test_a_rejected_answer_then_a_good_one_is_installed_with_both_verdicts(mem_image):
    make_calc(mem_image)
    model = scripted([HOSTILE_DOUBLE, DOUBLE])
    with mem_image.transaction() as conn, extension.using(extender_for(model)):
        assert conn.root()["calc"].double(3) == 6
    with mem_image.view() as root:
        attempts = root["calc"].lookup("double").provenance["attempts"]
        assert [a["accepted"] for a in attempts] == [False, True]
        assert any("import" in r for r in attempts[0]["reasons"])


@pytest.mark.parametrize("case", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_every_hostile_corpus_answer_is_rejected_and_never_executed(mem_image, monkeypatch, case):
    _, source, rule = case
    make_calc(mem_image)
    ran = []
    real_compile = limits.call
    monkeypatch.setattr(limits, "call", lambda *a, **k: ran.append(a) or real_compile(*a, **k))
    model = scripted([source] * 3)
    with mem_image.transaction() as conn:      # the double's tokens are words: no cut-off
        conn.root()["extension"].max_tokens = 100_000
    before = dump(mem_image.storage)
    with pytest.raises(ExtensionFailed) as e:
        with mem_image.transaction() as conn, extension.using(extender_for(model)):
            conn.root()["calc"].f()
    if "def f(" not in source:                  # not a method at all: nothing to vet
        rule = "no-method"
    assert any(f"[{rule}]" in r for r in e.value.reasons), e.value.reasons
    assert ran == [] and dump(mem_image.storage) == before


@pytest.mark.parametrize("answer,kind", [
    ("def spin(self):\n    self.base = 99\n    while True:\n        pass\n", "time"),
    ("def spin(self):\n    self.base = 99\n    return 'x' * 10 ** 10\n", "memory"),
    ("def spin(self):\n    self.base = 99\n    out = []\n    while True:\n"
     "        out.append('y' * 10 ** 6)\n", "memory"),
    ("def spin(self):\n    return 'z' * 2000000\n", "output"),
])
def test_limits_stop_a_loop_and_a_huge_allocation_and_nothing_is_kept(mem_image, answer, kind):
    make_calc(mem_image)
    with mem_image.transaction() as conn:
        conn.root()["traits"].method_limits["seconds"] = 0.3
        conn.root()["extension"].retries = 0
    before = dump(mem_image.storage)
    with pytest.raises(ExtensionFailed) as e:
        with mem_image.transaction() as conn, extension.using(extender_for(scripted([answer]))):
            conn.root()["calc"].spin()
    assert isinstance(e.value.__cause__, limits.LimitExceeded)
    assert e.value.__cause__.kind == kind and "nothing was kept" in str(e.value)
    assert dump(mem_image.storage) == before                    # install and write undone


def test_a_method_that_fails_on_the_resent_call_is_undone_and_the_mind_told_why(mem_image):
    make_calc(mem_image)
    broken = "```python\ndef double(self, arg1):\n    self.base = 0\n    return arg1 / self.base\n```"
    model = scripted([broken, DOUBLE])
    with mem_image.transaction() as conn, extension.using(extender_for(model)):
        assert conn.root()["calc"].double(4) == 8
    assert "ZeroDivisionError" in model.calls[1] and "calc.double(4) raised" in model.calls[1]
    with mem_image.view() as root:
        calc = root["calc"]
        assert calc.base == 10 and calc.lookup("double").previous is None    # the broken one left nothing
        attempts = calc.lookup("double").provenance["attempts"]
        assert attempts[0]["accepted"] and "ZeroDivisionError" in attempts[0]["failure"][0]
    model = scripted([broken] * 3)          # never fixed: the caller gets the last failure
    with mem_image.transaction() as conn:
        conn.root()["calc"].remove_slot("double")
    before = dump(mem_image.storage)
    with pytest.raises(ExtensionFailed, match="no answers are left") as e:
        with mem_image.transaction() as conn, extension.using(extender_for(model)):
            conn.root()["calc"].double(4)
    assert len(model.calls) == 3 and "ZeroDivisionError" in e.value.reasons[0]
    assert dump(mem_image.storage) == before


def test_a_failing_method_rolls_back_its_writes_but_not_the_callers(mem_image):
    with mem_image.transaction() as conn:
        root = conn.root()
        root["calc"] = UvmObject(**{"name": "calc", "parent*": root["traits"], "base": 10})
        root["calc"].define("bad", "def bad(self):\n    self.base = 11\n    return 1 / 0\n")
    with mem_image.transaction() as conn:
        calc = conn.root()["calc"]
        calc.note = "kept"
        with pytest.raises(ZeroDivisionError):
            calc.bad()
        assert calc.base == 10
    with mem_image.view() as root:
        assert root["calc"].note == "kept" and root["calc"].base == 10


def test_system_exit_and_keyboard_interrupt_in_a_method_do_not_stop_the_host():
    import sys

    def interrupt():        # what Ctrl-C raises (a real SIGINT is ignored in background jobs)
        raise KeyboardInterrupt

    obj = UvmObject(name="o")
    obj.define("run", "def run(self, fn):\n    return fn()\n")
    for fn, name in ((sys.exit, "SystemExit"), (interrupt, "KeyboardInterrupt")):
        with pytest.raises(limits.LimitExceeded) as e:
            obj.run(fn)
        assert e.value.kind == "interrupt" and name in str(e.value)


def test_self_extension_can_be_turned_off_globally_and_per_object(mem_image):
    make_calc(mem_image)
    model = scripted([])
    with mem_image.transaction() as conn, extension.using(extender_for(model)):
        root = conn.root()
        root["extension"].enabled = False
        with pytest.raises(DoesNotUnderstand):
            root["calc"].double(2)
        assert not hasattr(root["calc"], "double")
        root["extension"].enabled = True
        root["calc"].extensible = False
        with pytest.raises(DoesNotUnderstand):
            root["calc"].double(2)
        kid = root["calc"].clone(name="kid")      # inherited: off for its clones too
        with pytest.raises(DoesNotUnderstand):
            kid.double(2)
        root["calc"].extensible = True
        assert callable(root["calc"].double)      # on again: the read is a pending message
    assert model.calls == []


def test_bad_settings_in_the_image_get_a_clear_error_and_change_nothing(mem_image):
    make_calc(mem_image)
    for slot, value, said in (("retries", "two", "retries must be a whole number, not 'two'"),
                              ("mind", "zorg", "mind is 'zorg'"),
                              ("prompt", "Write {nonsense}", "prompt cannot be filled in")):
        with mem_image.transaction() as conn:
            conn.root()["extension"].set_slot(slot, value)
        before = dump(mem_image.storage)
        with pytest.raises(ValueError, match=said), mem_image.transaction() as conn, \
                extension.using(extender_for(scripted([DOUBLE]))):
            conn.root()["calc"].double(1)
        assert dump(mem_image.storage) == before
        with mem_image.transaction() as conn:
            conn.root()["extension"].remove_slot(slot)          # back to the defaults


def test_no_extender_means_the_plain_error(mem_image):
    make_calc(mem_image)
    with mem_image.view() as root, pytest.raises(DoesNotUnderstand):
        root["calc"].double(2)


def test_revert_restores_the_previous_version_and_then_removes_it(mem_image):
    from prototypes.method import revert
    make_calc(mem_image)
    with mem_image.transaction() as conn, extension.using(extender_for(scripted([DOUBLE]))):
        calc = conn.root()["calc"]
        calc.double(1)
        calc.define("double", "def double(self, arg1):\n    return arg1 + arg1 + 1\n",
                    provenance={"author": "console"})
        assert calc.double(2) == 5
        assert [v.provenance["author"] for v in calc.lookup("double").versions()] == ["console", "mind"]
        revert(calc, "double")
        assert calc.double(2) == 4
        assert revert(calc, "double") is None and "double" not in calc.slot_names()


def run_queued_missions(img, services, stop):
    from kernel.missions import queued
    from kernel.psm import CycleFailed, run_mission
    while not stop.is_set():
        with img.view() as root:
            ids = queued(root)
        for mid in ids:
            try:
                run_mission(img, mid, services)
            except CycleFailed:
                pass
        stop.wait(0.05)


def test_as_a_kernel_mission_the_caller_gets_the_id_then_the_result(mem_image):
    from kernel.psm import Services
    make_calc(mem_image)
    model = scripted([DOUBLE] + [HOSTILE_DOUBLE] * 3)
    services = Services(ModelPool({"hermes": model}), None)
    stop = threading.Event()
    kernel = threading.Thread(target=run_queued_missions, args=(mem_image, services, stop))
    kernel.start()
    submitted = []
    try:
        ext = extend.MissionExtender(mem_image, on_submitted=lambda mid, msg: submitted.append(mid))
        with mem_image.transaction() as conn, extension.using(ext):
            assert conn.root()["calc"].double(21) == 42
        with mem_image.view() as root:
            m = root["missions"][submitted[0]]
            assert m.kind == "extend" and m.state == "COMPLETE" and m.answer == "42"
            method = root["calc"].lookup("double")
            assert method.provenance["mission"] == m.id
        # a failure: the mission fails, the caller gets the reasons, calc is unchanged
        with mem_image.transaction() as conn:
            conn.root()["calc"].remove_slot("double")
        with pytest.raises(ExtensionFailed) as e:
            with mem_image.transaction() as conn, extension.using(ext):
                conn.root()["calc"].double(21)
        assert "import" in str(e.value) and len(submitted) == 2
        with mem_image.view() as root:
            assert root["missions"][submitted[1]].state == "FAILED"
            assert "double" not in root["calc"].slot_names()
        # not in the image yet / not plain data: said before anything is queued
        with mem_image.transaction() as conn, extension.using(ext):
            with pytest.raises(ExtensionFailed, match="not in the image yet"):
                UvmObject(**{"name": "fresh", "parent*": conn.root()["traits"]}).double(1)
            with pytest.raises(ExtensionFailed, match="plain-data"):
                conn.root()["calc"].double(object())
    finally:
        stop.set()
        kernel.join()


def console_with(img, model):
    from batos.console import Console
    from kernel.psm import Services
    out = RichConsole(file=io.StringIO(), width=200)
    con = Console(img, out=out)
    con.missions.services = Services(ModelPool({"hermes": model}), None)
    return con, out.file


def test_the_console_writes_shows_provenance_and_reverts(mem_image):
    con, text = console_with(mem_image, scripted([DOUBLE]))
    con.execute("root['calc'] = traits.clone(name='calc')")
    assert con.execute("root['calc'].double(21)") == 42
    shown = text.getvalue()
    assert "is not understood: asking hermes" in shown and "installed" in shown
    con.execute(":methods root['calc']")
    table = text.getvalue()[len(shown):]
    assert "double" in table and "hermes (generation 0)" in table and "describe" in table
    con.execute(":methods root['calc'] double")
    assert "answer 1: accepted" in text.getvalue() and "return arg1 * 2" in text.getvalue()
    con.execute(":revert root['calc'] double")
    assert "removed" in text.getvalue()
    with mem_image.view() as root:
        assert "double" not in root["calc"].slot_names()
    con.close()


def test_the_console_grants_and_untrusts_and_methods_shows_it(mem_image):
    con, text = console_with(mem_image, scripted([]))
    con.execute("root['calc'] = traits.clone(name='calc', n=1)")
    con.execute("root['other'] = traits.clone(name='other', n=1)")
    con.define("root['calc']", "poke", "def poke(self, o):\n    o.n = 2\n    return o.n\n")
    con.execute(":untrust root['calc'] poke")
    assert "marked untrusted" in text.getvalue()
    assert con.execute("root['calc'].poke(root['other'])") is None
    assert "needs the 'others' grant" in text.getvalue()
    con.execute(":grant root['calc'] poke others")
    assert con.execute("root['calc'].poke(root['other'])") == 2
    start = len(text.getvalue())
    con.execute(":methods root['calc']")
    table = text.getvalue()[start:]
    assert "isolated, grants: others (by owner (console))" in table.replace("\n", " ")
    con.execute(":grant root['calc'] poke -others")
    con.execute(":grant root['calc'] poke everything")
    assert "a grant is one of" in text.getvalue()
    with mem_image.view() as root:
        m = root["calc"].lookup("poke")
        assert m.isolated and not m.grants and root["other"].n == 2
    con.close()


def test_the_console_survives_a_method_that_raises_system_exit(mem_image):
    import sys
    con, text = console_with(mem_image, scripted([]))
    con.namespace["sys"] = sys
    con.define("traits", "run", "def run(self, fn):\n    return fn()\n")
    assert con.execute("traits.run(sys.exit)") is None
    assert "LimitExceeded" in text.getvalue() and "cannot stop its host" in text.getvalue()
    con.close()


@pytest.mark.slow
def test_the_bundled_model_writes_a_simple_method_or_fails_cleanly(mem_image, smol_master):
    """Either outcome is allowed; whichever happened is checked in full."""
    from mindhost.engines import get_engine
    make_calc(mem_image)
    model = get_engine("torch").load(smol_master["path"])
    before = dump(mem_image.storage)
    try:
        with mem_image.transaction() as conn, extension.using(extender_for(model)):
            result = conn.root()["calc"].double(21)
    except ExtensionFailed as e:
        assert e.attempts and e.reasons
        assert dump(mem_image.storage) == before
        return
    assert result == 42
    with mem_image.view() as root:
        m = root["calc"].lookup("double")
        assert m.provenance["attempts"][-1]["accepted"]
        from guardians import vet
        assert vet(m.source, receiver=root["calc"], name="double").accepted
        for x in (0, 5, -3):
            assert root["calc"].double(x) == 2 * x
