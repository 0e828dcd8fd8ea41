"""The wire decodes what a worker sends at bounded cost (guardians/wire.py, issue 29).

A worker may be running code that escaped RestrictedPython, so these are its
messages as raw JSON, not what a method could build: keys that share one hash
value (quadratic to put in a set), and text that grows fourfold once decoded.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from guardians import wire

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P = 2 ** 61 - 1             # ints i * P all hash to 0


def _decode_in_child(message, seconds=20):
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {ROOT!r})
        from guardians import wire
        try:
            wire.decode(json.loads(sys.stdin.read()), None)
            print("decoded")
        except wire.WireError as e:
            print("refused:", e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(message),
                          capture_output=True, text=True, timeout=seconds)
    return proc.stdout.strip()


@pytest.mark.parametrize("shape", ["set", "frozenset", "dict", "tuple-keys"])
def test_keys_that_share_a_hash_are_refused_in_linear_time(shape):
    keys = [{"i": hex(i * P)} for i in range(1, 50_001)]
    message = {"set": {"s": keys}, "frozenset": {"f": keys},
               "dict": {"d": [[k, 0] for k in keys]},
               "tuple-keys": {"s": [{"t": [k]} for k in keys]}}[shape]
    out = _decode_in_child(message)     # quadratic: many minutes; the hard timeout fails it
    assert out.startswith("refused") and "hash flood" in out, out


def test_honest_sets_and_dicts_still_decode():
    big = list(range(100_000))
    assert wire.decode({"s": big}, None) == set(big)
    assert wire.decode({"d": [[i, i] for i in range(1000)]}, None)[999] == 999
    few = [{"i": hex(i * P)} for i in range(1, wire.FLOOD + 1)]
    assert len(wire.decode({"s": few}, None)) == wire.FLOOD


def test_text_is_counted_in_bytes_once_decoded():
    ascii_text = "a" * 100_000
    astral = "a" * 100_000 + "\U0001F600"
    assert 99_000 < wire.text_bytes({"v": ascii_text}, 10**9) <= 100_100
    assert wire.text_bytes({"v": astral}, 10**9) > 400_000
    assert wire.text_bytes({"l": [ascii_text] * 50}, 1_000) <= 200_000   # stops early


def test_a_frame_whose_text_grows_past_the_limit_is_refused():
    r, w = os.pipe()
    try:
        out, inp = wire.Channel(None, w), wire.Channel(r, None)
        out.send({"op": "set", "v": "a" * 60_000 + "\U0001F600"})
        with pytest.raises(wire.WireError, match="once decoded"):
            inp.recv(limit=1 << 20, decoded=100_000)
        out.send({"op": "set", "v": "a" * 60_000})
        assert len(inp.recv(limit=1 << 20, decoded=100_000)["v"]) == 60_000
    finally:
        os.close(r)
        os.close(w)
