"""One table of container operations (guardians/containers.py), and a differential test.

Every container that stands for a list, dict or set defines each write of the
table itself. Then 240 generated method bodies of container operations run as
plain Python, as an owner's method (in process) and as a mind's (isolated);
the results or exception types must agree, and the state read back after
reopening the image must be plain Python's final state (or, for a call that
raised, the state before it: a call is all or nothing).
"""
import random

import pytest
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from guardians import containers
from guardians.remote import RDict, RList, RSet
from image import open_image
from kernel.schema import bootstrap
from prototypes import UvmObject
from prototypes.method import install
from prototypes.persist import PersistentSet

STANDINS = [(RList, list), (RDict, dict), (RSet, set), (PersistentList, list),
            (PersistentMapping, dict), (PersistentSet, set)]


@pytest.mark.parametrize("kind", [list, dict, set], ids=lambda k: k.__name__)
def test_the_table_classifies_everything_python_offers(kind):
    assert containers.public(kind) == set(containers.OPS[kind])


@pytest.mark.parametrize("cls,kind", STANDINS, ids=lambda c: getattr(c, "__name__", ""))
def test_every_stand_in_defines_every_write_itself(cls, kind):
    assert containers.unimplemented(cls, kind) == set()


def test_the_check_catches_a_write_left_to_the_plain_type():
    class Leaky(set):           # RSet before issue 29: ^= changed only the local copy
        def add(self, x):
            set.add(self, x)
    assert "__ixor__" in containers.unimplemented(Leaky, set)


# -- generated bodies ---------------------------------------------------------------------
LIST_OPS = [
    "self.items.append({v})", "self.items.extend([{v}, {w}])", "self.items.insert({i}, {v})",
    "out.append(self.items.pop())", "out.append(self.items.pop({i}))",
    "self.items.remove({v})", "self.items.clear()", "self.items.sort(reverse={b})",
    "self.items.reverse()", "self.items[{i}] = {v}", "del self.items[{i}]",
    "self.items += [{v}]", "L = self.items\nL *= 2", "L = self.items\nL += [{v}]",
    "self.items[{i}:{j}] = [{v}, {w}]", "del self.items[:{i}]",
    "out.append(self.items.count({v}))", "out.append(self.items.index({v}))",
    "out.append(len(self.items))",
]
DICT_OPS = [
    "self.cfg[{k!r}] = {v}", "del self.cfg[{k!r}]", "out.append(self.cfg.pop({k!r}))",
    "out.append(self.cfg.pop({k!r}, None))", "out.append(self.cfg.popitem())",
    "out.append(self.cfg.setdefault({k!r}, {v}))", "self.cfg.update({{{k!r}: {v}}})",
    "D = self.cfg\nD |= {{{k!r}: {v}}}", "self.cfg.clear()", "out.append(self.cfg.get({k!r}))",
    "out.append(sorted(self.cfg.keys()))", "self.cfg[{k!r}] += 1",
]
SET_OPS = [
    "self.tags.add({v})", "self.tags.discard({v})", "self.tags.remove({v})",
    "self.tags.clear()", "self.tags.update([{v}, {w}])", "S = self.tags\nS |= {{{v}}}",
    "S = self.tags\nS &= {{{v}, {w}}}", "S = self.tags\nS -= {{{v}}}",
    "S = self.tags\nS ^= {{{v}, {w}}}", "self.tags.difference_update([{v}])",
    "self.tags.intersection_update([{v}, {w}])",
    "self.tags.symmetric_difference_update([{v}])", "out.append(sorted(self.tags | {{{v}}}))",
    "self.tags -= {{{v}}}",
]
START = {"items": [1, 2, 3], "cfg": {"a": 1, "b": 2}, "tags": {1, 2, 3}}
N_BODIES = 240


def bodies(n=N_BODIES, seed=29):
    rng = random.Random(seed)
    ops = LIST_OPS + DICT_OPS + SET_OPS
    out = []
    for b in range(n):
        lines = ["out = []"]
        for _ in range(rng.randint(1, 4)):
            op = rng.choice(ops).format(v=rng.randint(0, 5), w=rng.randint(0, 5),
                                        i=rng.randint(-2, 4), j=rng.randint(0, 5),
                                        b=rng.random() < 0.5, k=rng.choice("abcd"))
            lines.extend(op.splitlines())
        lines.append("return out")
        out.append(f"def f{b}(self):\n" + "".join(f"    {line}\n" for line in lines))
    return out


class Plain:
    def __init__(self):
        self.items, self.cfg, self.tags = list(START["items"]), dict(START["cfg"]), set(START["tags"])


def _plain_run(src, name):
    ns = {}
    exec(compile(src, "<plain>", "exec"), ns)       # noqa: S102 - our own generated code
    obj = Plain()
    try:
        result = ("ok", _norm(ns[name](obj)))
    except Exception as e:       # noqa: BLE001 - the exception's type is the result
        result = ("raised", type(e).__name__)
        obj = Plain()            # all or nothing: a call that raised leaves the state as it was
    return result, _state(obj.items, obj.cfg, obj.tags)


def _norm(v):
    if isinstance(v, (list, tuple, PersistentList)):
        return [_norm(x) for x in v]
    if isinstance(v, (dict, PersistentMapping)):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (set, frozenset, PersistentSet)):
        return sorted(_norm(x) for x in v)
    return v


def _state(items, cfg, tags):
    return {"items": _norm(items), "cfg": _norm(cfg), "tags": _norm(tags)}


def test_generated_bodies_agree_on_every_path(tmp_path):
    srcs = bodies()
    assert len(srcs) >= 200
    img = open_image(tmp_path / "image", create=True)
    bootstrap(img)
    with img.transaction() as conn:
        root, traits = conn.root(), conn.root()["traits"]
        for b, src in enumerate(srcs):
            for author in ("console", "mind"):
                o = UvmObject(**{"name": f"{author}{b}", "parent*": traits,
                                 **{k: type(v)(v) for k, v in START.items()}})
                install(o, f"f{b}", src, {"author": author})
                root[f"{author}{b}"] = o
    got = {}
    for b in range(len(srcs)):
        for author in ("console", "mind"):
            try:
                with img.transaction() as conn:
                    got[author, b] = ("ok", _norm(getattr(conn.root()[f"{author}{b}"], f"f{b}")()))
            except Exception as e:       # noqa: BLE001 - the exception's type is the result
                got[author, b] = ("raised", type(e).__name__)
    img.close()
    img = open_image(tmp_path / "image")
    differ = []
    with img.view() as root:
        for b, src in enumerate(srcs):
            want, state = _plain_run(src, f"f{b}")
            for author in ("console", "mind"):
                o = root[f"{author}{b}"]
                seen = (got[author, b], _state(o.items, o.cfg, o.tags))
                if seen != (want, state):
                    differ.append((author, src, seen, (want, state)))
    img.close()
    assert not differ, f"{len(differ)} differ; first: {differ[0]}"
