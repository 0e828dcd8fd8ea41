"""The per-object read cache is never stale: local writes, other commits,
aborts, ghosting and re-parenting all make readers forget."""
import contextlib

import pytest

from prototypes import SlotError, UvmObject


def family(root):
    root["base"] = base = UvmObject(name="base", color="red", items=[1])
    root["mid"] = mid = UvmObject(**{"name": "mid", "parent*": base})
    root["kid"] = kid = UvmObject(**{"name": "kid", "parent*": mid})
    return base, mid, kid


@contextlib.contextmanager
def long_lived(img):
    """A connection kept across transactions (as the console and kernel keep one)."""
    with img.transaction() as conn:
        family(conn.root())
    conn = img.open()
    try:
        yield conn, conn.transaction_manager
    finally:
        conn.transaction_manager.abort()
        conn.close()


def test_local_write_to_an_ancestor_is_seen(mem_image):
    with mem_image.transaction() as conn:
        base, mid, kid = family(conn.root())
        assert kid.color == "red"
        assert "color" in kid.__dict__                      # cached
        base.color = "blue"
        assert kid.color == "blue"
        mid.color = "green"                                 # a nearer holder appears
        assert kid.color == "green"
        del mid.color
        assert kid.color == "blue"


def test_reparenting_is_seen(mem_image):
    with mem_image.transaction() as conn:
        base, mid, kid = family(conn.root())
        other = UvmObject(name="other", color="black")
        assert kid.color == "red"
        mid["parent*"] = other
        assert kid.color == "black"


def test_other_connections_commit_is_seen_next_transaction(mem_image):
    with long_lived(mem_image) as (reader, tm):
        tm.begin()
        kid = reader.root()["kid"]
        assert kid.color == "red"
        tm.commit()
        with mem_image.transaction() as conn:
            conn.root()["base"].color = "blue"
        tm.begin()
        assert kid.color == "blue"


def test_abort_rolls_the_cache_back(mem_image):
    with long_lived(mem_image) as (conn, tm):
        tm.begin()
        base, kid = conn.root()["base"], conn.root()["kid"]
        base.color = "blue"
        assert kid.color == "blue"
        tm.abort()
        tm.begin()
        assert kid.color == "red"


def test_ghosting_refreshes_mutable_values(mem_image):
    with long_lived(mem_image) as (conn, tm):
        tm.begin()
        kid, base = conn.root()["kid"], conn.root()["base"]
        assert kid.items == [1]
        tm.abort()
        conn.cacheMinimize()                                # everything ghosted
        tm.begin()
        assert kid.items is base.items                      # same list as the holder's


def test_cache_is_never_stored(mem_image):
    with mem_image.transaction() as conn:
        base, mid, kid = family(conn.root())
        kid.color, kid.items
        assert set(kid.__getstate__()) == {"_slots"}


def test_api_names_are_reserved():
    o = UvmObject()
    for name in ("clone", "lookup", "slot_names", "define", "parents"):
        with pytest.raises(SlotError, match="API name"):
            o.set_slot(name, 1)


def test_cycle_still_lets_the_api_cut_it():
    a, b = UvmObject(name="a"), UvmObject(name="b")
    a._slots["p*"] = b
    b._slots["p*"] = a
    a.remove_slot("p*")
    assert b.lookup_chain() == [b, a]
