"""Tracked containers rule by rule: what `tracked` converts, keeps and refuses, what
`plain`, `untracked` and `jsonable` give back, and PersistentSet's operators."""
import collections
import json

import pytest
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from prototypes import UvmObject
from prototypes.persist import (
    PersistentSet,
    Unstorable,
    jsonable,
    plain,
    tracked,
    untracked,
)


def test_a_persistent_set_compares_and_operates_like_a_set():
    s = PersistentSet({1, 2, 3})
    assert s == {1, 2, 3} and s == PersistentSet({3, 2, 1}) and not s == {1, 2}
    assert s != {1} and not PersistentSet({1}) == {1, 2}       # equal, not a subset
    with pytest.raises(TypeError):                            # unhashable, like a set
        hash(s)
    assert (s | [4]) == {1, 2, 3, 4} and (s & [2, 3, 9]) == {2, 3}
    assert (s - [1]) == {2, 3} and (s ^ [3, 4]) == {1, 2, 4}
    for result in (s | [4], s & [2], s - [1], s ^ [4]):
        assert type(result) is set                             # results are plain
    assert s.union([5]) == {1, 2, 3, 5} and s.issubset({1, 2, 3, 4})
    assert repr(PersistentSet({"b", "a"})) == "PersistentSet(['a', 'b'])"
    assert type(s.copy()) is set and s.copy() == {1, 2, 3}
    with pytest.raises(AttributeError):
        s.no_such_method


def test_a_persistent_sets_writes_change_it_and_mark_it(mem_image):
    conn = mem_image.open()                 # in a connection: a change marks it
    conn.transaction_manager.begin()
    s = conn.root()["s"] = PersistentSet({1})
    conn.transaction_manager.commit()
    conn.transaction_manager.begin()
    for change, want in ((lambda: s.add(2), {1, 2}), (lambda: s.discard(1), {2}),
                         (lambda: s.update([5, 6]), {2, 5, 6}),
                         (lambda: s.difference_update([5]), {2, 6}),
                         (lambda: s.intersection_update([2, 6, 7]), {2, 6}),
                         (lambda: s.symmetric_difference_update([6, 8]), {2, 8}),
                         (lambda: s.remove(8), {2})):
        s._p_changed = False
        change()
        assert s == want and s._p_changed
    s._p_changed = False
    assert s.pop() == 2 and s._p_changed and len(s) == 0
    s.add(1)
    s._p_changed = False
    s.clear()
    assert len(s) == 0 and s._p_changed
    conn.transaction_manager.abort()
    conn.close()


def test_popitem_gives_the_last_key_set_and_refuses_an_empty_mapping():
    m = PersistentMapping()
    m["a"], m["b"] = 1, 2
    assert m.popitem() == ("b", 2) and dict(m) == {"a": 1}
    m.popitem()
    with pytest.raises(KeyError, match="dictionary is empty"):
        m.popitem()


def test_tracked_converts_plain_containers_all_the_way_down():
    shared = [1]
    value = {"l": [shared, shared], "s": {1, 2}, "t": (1, [2]), "plain_t": (1, "x"),
             "c": collections.Counter(a=2), "n": None}
    out = tracked(value)
    assert type(out) is PersistentMapping and type(out["l"]) is PersistentList
    assert out["l"][0] is out["l"][1]                  # one copy for one list (the memo)
    assert type(out["s"]) is PersistentSet and out["s"] == {1, 2}
    assert type(out["t"]) is tuple and type(out["t"][1]) is PersistentList
    assert out["plain_t"] is value["plain_t"]          # a tuple of atoms is kept as it is
    assert type(out["c"]) is PersistentMapping and dict(out["c"]) == {"a": 2}
    assert not untracked(out)


def test_tracked_converts_plain_containers_inside_tracked_ones_in_place():
    pl = PersistentList([[1], 2])
    pm = PersistentMapping(a={"b": 1}, c=3)
    assert tracked(pl) is pl and type(pl[0]) is PersistentList and pl[1] == 2
    assert tracked(pm) is pm and type(pm["a"]) is PersistentMapping and pm["c"] == 3
    kept = PersistentList([PersistentList([1])])
    inner = kept[0]
    assert tracked(kept)[0] is inner                    # a tracked item is not copied


def test_tracked_refuses_what_an_image_cannot_store_or_see_change():
    Point = collections.namedtuple("Point", "x y")
    for bad, said in ((lambda: 1, "function"), ((x for x in []), "generator"),
                      (json, "module"), (Point(1, 2), "tuple subclass"),
                      (bytearray(b"x"), "store bytes"), (collections.deque(), "store a list"),
                      (collections.ChainMap(), "store a dict")):
        with pytest.raises(Unstorable, match=said):
            tracked(bad)
        with pytest.raises(Unstorable):
            tracked({"inside": [bad]})
    made_in_a_method = type("Thing", (), {"__module__": "batos.method.f"})()
    with pytest.raises(Unstorable, match="defined in method code"):
        tracked(made_in_a_method)
    assert tracked(UvmObject(name="kept")).name == "kept"   # an object with identity


def test_untracked_finds_a_plain_container_anywhere():
    assert untracked([1]) and untracked({"a": 1}) and untracked({1})
    assert not untracked(1) and not untracked("text") and not untracked((1, "x"))
    assert untracked((1, [2])) and not untracked((1, (2, 3)))
    assert untracked(PersistentList([1, [2]])) and not untracked(PersistentList([1, 2]))
    assert untracked(PersistentMapping(a={"b": 1})) and not untracked(PersistentMapping(a=1))
    assert not untracked(PersistentSet({1}))


def test_plain_gives_back_plain_containers_of_the_same_shape():
    value = tracked({"l": [1, {"x": (2, [3])}], "s": {4}, "f": frozenset({5}), "n": None})
    out = plain(value)
    assert out == {"l": [1, {"x": (2, [3])}], "s": {4}, "f": {5}, "n": None}
    assert type(out) is dict and type(out["l"]) is list and type(out["l"][1]["x"]) is tuple
    assert type(out["l"][1]["x"][1]) is list and type(out["s"]) is set
    assert type(out["f"]) is set
    obj = UvmObject(name="o")
    assert plain(obj) is obj and plain([obj])[0] is obj


def _nest(n, make, inner=0):
    v = inner
    for _ in range(n):
        v = make(v)
    return v


def test_plain_goes_two_hundred_deep_and_no_deeper():
    for make, like in ((lambda v: [v], lambda v: [v]), (lambda v: (v,), lambda v: (v,)),
                       (lambda v: {"k": v}, lambda v: {"k": v}),
                       (lambda v: PersistentList([v]), lambda v: [v]),
                       (lambda v: PersistentMapping(k=v), lambda v: {"k": v})):
        assert plain(_nest(200, make)) == _nest(200, like)
        with pytest.raises(ValueError, match="more than 200 deep"):
            plain(_nest(201, make))
    assert plain(_nest(199, lambda v: [v], {0})) == _nest(199, lambda v: [v], {0})
    with pytest.raises(ValueError, match="more than 200 deep"):          # a set's items too
        plain(_nest(200, lambda v: [v], {0}))


def test_jsonable_writes_tracked_containers_as_json_and_the_rest_as_text():
    value = tracked({"l": [1, 2], "s": {"b", "a"}})
    assert json.loads(json.dumps(value, default=jsonable)) == {"l": [1, 2], "s": ["a", "b"]}
    assert jsonable({3, 1}) == [1, 3] and jsonable(frozenset({2})) == [2]
    assert jsonable(PersistentSet({2, 1})) == [1, 2]
    assert jsonable(3.5) == "3.5" and jsonable(b"x") == "b'x'"


def test_tracking_what_is_tracked_already_writes_nothing(mem_image):
    with mem_image.transaction() as conn:
        conn.root()["l"] = PersistentList([1, "a", (2, 3)])
        conn.root()["m"] = PersistentMapping(a=1, b=(2, "c"))
    with mem_image.transaction() as conn:
        for name in ("l", "m"):
            value = conn.root()[name]
            assert tracked(value) is value and not value._p_changed    # no spurious write
