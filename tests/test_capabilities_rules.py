"""What one call's rights ask of each write, checked directly (the calls themselves, in
workers: test_isolation.py)."""
import pytest

from prototypes import UvmObject
from prototypes.capabilities import CapabilityError, Rights, grant
from prototypes.method import install


def _rights(receiver, name="f", *kinds):
    install(receiver, name, f"def {name}(self):\n    return 1\n", {"author": "mind"})
    for kind in kinds:
        grant(receiver, name, kind, by="test")
    return Rights(receiver, receiver._slots.data[name])


def _granted(r, *kinds):
    r.granted = r.granted | set(kinds)
    return r


def test_an_object_made_in_the_call_is_free_to_write_except_its_limits():
    r = _rights(UvmObject(name="t"))
    made = UvmObject(name="made")
    r.created_now(made)
    for slot in ("abc", "zed", "limits", "parent*"):      # names either side of method_limits
        assert r.needed(made, slot, None, 1) == []
    assert r.needed(made, "method_limits", None, {}) == ["limits"]
    assert _granted(r, "limits").needed(made, "method_limits", None, {}) == []


def test_replacing_adding_or_shadowing_a_method_needs_the_methods_grant():
    from prototypes.method import Method
    parent = UvmObject(name="parent")
    install(parent, "greet", "def greet(self):\n    return 'hi'\n", {"author": "mind"})
    t = UvmObject(**{"name": "t", "parent*": parent})
    r = _rights(t)
    method = t._slots.data["f"]
    assert isinstance(method, Method)
    assert r.needed(t, "f", method, 1) == ["methods"]          # replaced by data
    assert r.needed(t, "g", None, method) == ["methods"]       # a method written in
    assert r.needed(t, "greet", None, 1) == ["methods"]        # shadows the parent's
    assert r.needed(t, "plain", None, 1) == []


def test_each_kind_of_write_asks_for_its_own_grant():
    t = UvmObject(name="t")
    other = UvmObject(name="other")
    r = _rights(t)
    assert r.needed(other, "x", None, 1) == ["others"]
    assert r.needed(t, "parent*", None, other) == ["parents"]
    assert r.needed(t, "method_limits", None, {}) == ["limits"]
    assert r.needed(other, "method_limits", None, {}) == ["others", "limits"]


def test_a_refusal_names_every_missing_grant_and_how_to_give_the_first():
    t = UvmObject(name="t")
    other = UvmObject(name="other")
    r = _rights(t)
    with pytest.raises(CapabilityError) as one:
        r.check(other, "x", None, 1)
    assert str(one.value) == (
        "t.f may not write other.x: that needs the 'others' grant. If it should, the owner "
        "can grant it: :grant t f others")
    with pytest.raises(CapabilityError) as two:
        r.check(other, "method_limits", None, {})
    assert "the 'others' and 'limits' grants. If" in str(two.value)
    assert str(two.value).endswith(":grant t f others")
    assert r.refused is one.value                             # the first refusal is kept


def test_a_nested_call_has_only_what_both_methods_were_granted():
    t = UvmObject(name="t")
    other = UvmObject(name="other")
    r = _rights(t, "f", "others")
    r.check(other, "x", None, 1)                               # granted: no error
    install(t, "inner", "def inner(self):\n    return 1\n", {"author": "mind"})
    with pytest.raises(CapabilityError, match="'others' grant"):
        r.check(other, "x", None, 1, by=[t._slots.data["inner"]])
    assert r.granted == {"others"}                             # restored after the check


def test_a_revoke_removes_one_kind_and_is_a_no_op_on_a_method_never_granted():
    from prototypes.capabilities import grants, revoke
    t = UvmObject(name="t")
    install(t, "f", "def f(self):\n    return 1\n", {"author": "mind"})
    assert grants(revoke(t, "f", "others")) == {}              # never granted: nothing to do
    grant(t, "f", "others", by="test")
    grant(t, "f", "limits", by="test")
    assert set(grants(revoke(t, "f", "others"))) == {"limits"}
    with pytest.raises(ValueError, match="not 'everything'"):
        grant(t, "f", "everything")
