import json

import pytest
from conftest import run_batos
from guard_corpus import BENIGN, HOSTILE
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from guardians import GuardianRejection, vet
from guardians.sandbox import SandboxError, compile_method
from prototypes import UvmObject


def test_corpus_sizes():
    assert len(HOSTILE) >= 40 and len(BENIGN) >= 20
    assert len({h[0] for h in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize("case", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_rejected_with_expected_rule(case):
    _, source, rule = case
    verdict = vet(source)
    assert not verdict.accepted
    assert rule in {r.rule for r in verdict.reasons}, verdict.reasons
    if rule != "persistence-covenant":     # the covenant is judged at install time
        with pytest.raises(GuardianRejection):
            compile_method(source, "f")


@pytest.mark.parametrize("case", BENIGN, ids=[b[0] for b in BENIGN])
def test_benign_accepted_and_runs_on_live_prototype(case, folder_image):
    cid, source, slots, args, expected, after = case
    verdict = vet(source)
    assert verdict.accepted, verdict.reasons
    methods = slots.get("methods", {})
    plain = {k: v for k, v in slots.items() if k != "methods"}
    with folder_image.transaction() as conn:
        proto = UvmObject(**{"parent*": conn.root()["traits"], "name": cid, **plain})
        for name, src in methods.items():
            proto.define(name, src)
        proto.define(verdict.function, source)
        conn.root()["probe"] = proto
        assert getattr(proto, verdict.function)(*args) == expected
    # committed: the effects and the method survive a fresh connection
    with folder_image.transaction() as conn:
        proto = conn.root()["probe"]
        for slot, value in after.items():
            assert proto.lookup(slot) == value
        assert "_v_function" not in proto.lookup(verdict.function).__getstate__()


def test_cli_rejects_every_hostile_file_and_accepts_every_benign(tmp_path):
    hostile, benign = [], []
    for cid, source, _ in HOSTILE:
        p = tmp_path / f"hostile-{cid}.py"
        p.write_text(source)
        hostile.append(p)
    for cid, source, *_ in BENIGN:
        p = tmp_path / f"benign-{cid}.py"
        p.write_text(source)
        benign.append(p)
    proc = run_batos("guard", "check", "--json", *hostile)
    assert proc.returncode == 1, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(HOSTILE)
    for r, (cid, _, rule) in zip(results, HOSTILE):
        assert r["accepted"] is False, cid
        assert all(x["rule"] and x["message"] for x in r["reasons"])
        assert rule in {x["rule"] for x in r["reasons"]}, (cid, r["reasons"])
    proc = run_batos("guard", "check", "--json", *benign)
    assert proc.returncode == 0, proc.stdout
    assert all(r["accepted"] for r in json.loads(proc.stdout))


def test_cli_text_output_names_rule_and_line(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f(self, x):\n    y = 1\n    import os\n")
    proc = run_batos("guard", "check", p)
    assert proc.returncode == 1
    assert "rejected" in proc.stdout and "line 3" in proc.stdout
    assert "'os'" in proc.stdout or "os" in proc.stdout
    assert "[import]" in proc.stdout


def test_cli_binary_and_missing_files_are_rejections_not_crashes(tmp_path):
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    proc = run_batos("guard", "check", "--json", binary, tmp_path / "nope.py")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = json.loads(proc.stdout)
    assert rows[0]["reasons"][0]["rule"] == "syntax" and "UTF-8" in rows[0]["reasons"][0]["message"]
    assert rows[1]["reasons"][0]["rule"] == "unreadable"


def test_covenant_refuses_in_place_change_only_to_a_slot_still_holding_a_plain_container():
    legacy = UvmObject(name="old")
    legacy._slots.data["cfg"] = {"a": 1}        # as an image from before tracked slots holds it
    src = "def f(self, k):\n    x = 1\n    del self.cfg[k]\n"
    (reason,) = vet(src, receiver=legacy).reasons
    assert reason.line == 3 and "'cfg'" in reason.message and "batos init" in reason.message
    assert vet(src).accepted                              # no receiver: the slot will be tracked
    assert vet(src, receiver=UvmObject(cfg={"a": 1})).accepted    # stored now: tracked


def test_slots_store_tracked_containers_so_in_place_changes_persist():
    proto = UvmObject(items=[1], cfg={"a": [1]}, tags={"x"}, pair=([1], 2))
    assert type(proto.items) is PersistentList and type(proto.cfg) is PersistentMapping
    assert type(proto.cfg["a"]) is PersistentList and type(proto.pair[0]) is PersistentList
    from prototypes.persist import PersistentSet, Unstorable
    assert type(proto.tags) is PersistentSet
    src = "def f(self, x):\n    self.items.append(x)\n"
    proto.define("f", src)
    proto.f(2)
    assert list(proto.items) == [1, 2]
    with pytest.raises(Unstorable, match="slot 'cb'"):
        proto.cb = lambda: 1


def test_marker_marks_the_slot_holder_even_through_inheritance(mem_image):
    with mem_image.transaction() as conn:
        root = conn.root()
        root["base"] = base = UvmObject(name="base", shared=[])
        root["kid"] = kid = UvmObject(**{"name": "kid", "parent*": base})
    with mem_image.transaction() as conn:
        kid = conn.root()["kid"]
        kid.define("add", "def add(self, x):\n    self.shared.append(x)\n    self._p_changed = True\n")
        kid.add(5)
    with mem_image.transaction() as conn:
        assert conn.root()["base"].shared == [5]


@pytest.mark.parametrize("name", ["_p_jar", "__class__", "gi_frame", "f_globals"])
def test_runtime_guard_refuses_computed_private_names(name):
    proto = UvmObject(name="p")
    proto.define("peek", "def peek(self, n):\n    return getattr(self, n)\n")
    with pytest.raises(SandboxError):
        proto.peek(name)


def test_runtime_guard_refuses_format_reaching_private_attributes():
    proto = UvmObject(name="p")
    proto.define("fmt", "def fmt(self, spec):\n    return '{}'.format(spec)\n")
    assert proto.fmt("ok") == "ok"
    # a computed template is refused statically; at run time the safe formatter refuses too
    from guardians.sandbox import guarded_getattr
    with pytest.raises(SandboxError):
        guarded_getattr("{0.__class__}", "format")(proto)


def test_writes_into_foreign_objects_are_refused():
    proto = UvmObject(name="p")
    proto.define("poke", "def poke(self, obj):\n    obj.x = 1\n")
    with pytest.raises(SandboxError):
        proto.poke(ValueError("x"))


def test_rejected_method_is_not_installed(mem_image):
    with mem_image.transaction() as conn:
        orai = conn.root()["orai"]
        with pytest.raises(GuardianRejection):
            orai.define("evil", "def evil(self):\n    return open('/etc/passwd').read()\n")
        assert "evil" not in orai.slot_names()


def test_every_rejection_is_logged(caplog):
    with caplog.at_level("WARNING", logger="guardians"):
        vet("def f(self):\n    import os\n")
    assert any("rejected" in r.message and "import" in r.message for r in caplog.records)


# -- regressions from the adversarial review -------------------------------------------

def _installed(source, **slots):
    proto = UvmObject(name="p", **slots)
    proto.define("f", source)
    return proto


@pytest.mark.parametrize("name", ["format", "format_map"])
def test_unbound_str_format_is_refused_at_run_time(name):
    proto = _installed("def f(self, n, field):\n    return getattr(str, n)(field, self)\n")
    with pytest.raises(SandboxError):
        proto.f(name, "{0.clone.im_func}")


def test_safe_formatter_walks_fields_through_the_guards():
    from guardians.sandbox import guarded_getattr
    with pytest.raises(SandboxError):
        guarded_getattr("{0[_slots]}", "format")(UvmObject(name="x"))
    with pytest.raises(SandboxError):
        guarded_getattr("{0.clone.im_func}", "format")(UvmObject(name="x"))


def test_attribute_error_obj_is_refused():
    proto = _installed("def f(self, n):\n    try:\n        getattr(self.name, n)\n"
                       "    except AttributeError as e:\n        return getattr(e, 'obj')\n")
    with pytest.raises(SandboxError, match="obj"):
        proto.f("nope")


def test_installing_runs_no_method_code():
    v = vet("def f(self, x=[print('side effect')]):\n    return 1\n")
    assert [r.rule for r in v.reasons] == ["definition-time"]
    ok = _installed("def f(self, x: int = 2, *, y: str = 'a') -> int:\n    return x\n")
    assert ok.f() == 2


@pytest.mark.parametrize("source", [
    "def f(self):\n    return " + "lambda: " * 400 + "1\n",
    "def f(self):\n    return 1" + " if self else 1" * 500 + "\n",
    "def f(self, x):\n    if x == 0:\n        return 0\n" + "".join(
        f"    elif x == {i}:\n        return {i}\n" for i in range(1, 500)),
])
def test_deep_code_is_a_rejection_not_a_crash(source):
    v = vet(source)
    assert not v.accepted and v.reasons[0].rule in ("too-complex", "syntax")


def test_methods_cannot_stop_their_host():
    proto = _installed("def f(self):\n    raise SystemExit(3)\n")
    with pytest.raises(NameError):
        proto.f()


def test_note_changed_is_only_for_the_rewrite():
    from guardians.sandbox import note_changed
    assert not vet("def f(self):\n    note_changed(self)\n").accepted
    with pytest.raises(SandboxError):
        note_changed(len)


def test_containers_take_item_writes_only():
    proto = _installed("def f(self):\n    self.cfg['k'] = 1\n    self.cfg.data = 'x'\n",
                       cfg=PersistentMapping())
    with pytest.raises(SandboxError, match="attribute 'data'"):
        proto.f()
    assert dict(proto.cfg) == {}        # the call failed: all or nothing, stored or not
    proto.define("g", "def g(self):\n    setattr(self.cfg, 'get', len)\n")
    with pytest.raises(SandboxError):
        proto.g()


def test_methods_cannot_install_methods():
    proto = _installed("def f(self, src):\n    d = self.define\n    return d('g', src)\n")
    with pytest.raises(SandboxError, match="define"):
        proto.f("def g(self):\n    return 1\n")
    assert "g" not in proto.slot_names()


def test_provenance_is_read_only_to_methods():
    proto = _installed("def f(self):\n    dict.update(self.f.method.provenance, author='admin')\n")
    with pytest.raises((TypeError, SandboxError)):
        proto.f()
    assert "author" not in proto.lookup("f").provenance
