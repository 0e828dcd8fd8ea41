"""The wire between a host and an isolated worker: framed JSON, never pickle.

A worker runs untrusted code, so everything it sends is untrusted input: the
host decodes plain data only (JSON plus a few tagged kinds), each message
bounded in size and nesting, and anything else is refused. Frames are a
4-byte big-endian length and that many bytes of UTF-8 JSON.

Tagged values (a JSON object with one of these keys): ``l`` list, ``t``
tuple, ``d`` dict as ``[[key, value], ...]``, ``s`` set, ``f`` frozenset,
``b`` bytes (base64), ``i`` a big int (hex), ``h`` a handle (a reference the
host gave out: a prototype, a tracked container, a method).
"""
import base64
import json
import os
import select
import sys
import time

MAX_DEPTH = 200             # nesting a decoder follows before refusing the value
FLOOD = 64                  # keys of one set or dict that may share a hash value
_STR_HEADER = sys.getsizeof("")


class WireError(Exception):
    """A malformed, oversized or forged message."""


class Closed(WireError):
    """The other end went away (a worker that died)."""


class Timeout(WireError):
    """No message before the deadline."""


class Channel:
    """One end of a pipe pair carrying frames."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.buf = bytearray()

    def send(self, message, deadline=None):
        self.send_raw(dumps(message), deadline)

    def send_raw(self, data, deadline=None):
        """Write one frame; with a ``deadline`` the write end must be non-blocking."""
        data = len(data).to_bytes(4, "big") + data
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.wfd, view)
            except BlockingIOError:         # the pipe is full: wait until it is not
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not select.select(
                        [], [self.wfd], [], left)[1]:
                    raise Timeout("the other end did not read before the deadline") from None
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise Closed("the other end closed the pipe") from None
            view = view[n:]

    def recv(self, deadline=None, limit=1 << 30, decoded=None):
        """The next message; ``deadline`` is a ``time.monotonic()`` value (None: wait).

        ``limit`` bounds the frame; ``decoded`` bounds the text it holds once decoded
        (one astral character makes a string take four bytes a character).
        """
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[:4], "big")
                if n > limit:
                    raise WireError(f"a message of {n:,} bytes (at most {limit:,})")
                if len(self.buf) >= 4 + n:
                    data = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    try:
                        msg = json.loads(data)
                    except (ValueError, RecursionError) as e:
                        raise WireError(f"a message that is not JSON: {e}") from None
                    if decoded is not None:
                        n = text_bytes(msg, decoded)
                        if n > decoded:
                            raise WireError(f"a message whose text takes more than {n:,} "
                                            f"bytes once decoded (at most {decoded:,})")
                    return msg
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("no reply before the deadline")
                ready, _, _ = select.select([self.rfd], [], [], left)
                if not ready:
                    raise Timeout("no reply before the deadline")
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise Closed("the other end closed the pipe")
            self.buf += chunk


def text_bytes(msg, stop):
    """The bytes the strings in decoded JSON ``msg`` take, counted until past ``stop``."""
    total, todo = 0, [msg]
    while todo and total <= stop:
        v = todo.pop()
        if type(v) is str:
            total += sys.getsizeof(v) - _STR_HEADER
        elif type(v) is list:
            todo.extend(v)
        elif type(v) is dict:
            todo.extend(v)
            todo.extend(v.values())
    return total


def dumps(message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()   # ASCII: lone surrogates survive


def encode(value, handle, depth=0):
    """Plain data as JSON-ready values; ``handle(v)`` describes anything else (or raises)."""
    t = type(value)
    if value is None or t is bool or t is str or t is float:
        return value
    if t is int:
        return value if -(1 << 63) <= value < (1 << 63) else {"i": hex(value)}
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} deep")
    d = depth + 1
    if t is list:
        return {"l": [encode(v, handle, d) for v in value]}
    if t is tuple:
        return {"t": [encode(v, handle, d) for v in value]}
    if t is dict:
        return {"d": [[encode(k, handle, d), encode(v, handle, d)] for k, v in value.items()]}
    if t is set:
        return {"s": [encode(v, handle, d) for v in value]}
    if t is frozenset:
        return {"f": [encode(v, handle, d) for v in value]}
    if t is bytes or t is bytearray:
        return {"b": base64.b64encode(value).decode()}
    return handle(value)


def decode(value, handle, depth=0):
    """The inverse of ``encode``; ``handle(desc)`` turns a handle description into an object."""
    if not isinstance(value, dict):
        if isinstance(value, list):
            raise WireError("a bare list on the wire")
        return value
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} deep")
    d = depth + 1
    if len(value) == 1:
        (tag, body), = value.items()
        if tag == "l":
            return [decode(v, handle, d) for v in _items(body)]
        if tag == "t":
            return tuple(decode(v, handle, d) for v in _items(body))
        if tag == "d":
            pairs = []
            for pair in _items(body):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise WireError("a dict entry that is not a pair")
                pairs.append((decode(pair[0], handle, d), decode(pair[1], handle, d)))
            _keys([k for k, _ in pairs])
            return dict(pairs)
        if tag == "s":
            return set(_keys([decode(v, handle, d) for v in _items(body)]))
        if tag == "f":
            return frozenset(_keys([decode(v, handle, d) for v in _items(body)]))
        if tag == "b":
            if not isinstance(body, str):
                raise WireError("bytes that are not base64 text")
            return base64.b64decode(body)
        if tag == "i":
            if not isinstance(body, str) or len(body) > 1 << 20:
                raise WireError("a big int that is not hex text")
            return int(body, 16)
    if "h" in value:
        return handle(value)
    raise WireError(f"an unknown value on the wire: {sorted(value)[:3]}")


def _items(body):
    if not isinstance(body, list):
        raise WireError("a tagged value without a list")
    return body


def _keys(keys):
    """``keys``, once it is sure they make a set or dict in linear time: a table of keys
    that share one hash value (ints apart by 2**61 - 1, say) costs quadratic time."""
    counts = {}
    for k in keys:
        try:
            h = hash(k)
        except TypeError:
            raise WireError(f"an unhashable {type(k).__name__} as a key") from None
        n = counts[h] = counts.get(h, 0) + 1
        if n > FLOOD:
            raise WireError(f"more than {FLOOD} keys with one hash value (a hash flood)")
    return keys
