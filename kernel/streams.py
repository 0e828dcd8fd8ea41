"""A mission's events as a runner makes them, and following a mission from anywhere.

A runner keeps a ``Stream`` per mission it runs here (state, routed, token,
done, failed, cancelled). ``follow`` gives a reader (an API request, a
console) the events of any mission: the live stream while this runner runs it,
and the mission's stored state for its end, so the reader hears the answer
whichever runner ran it (kernel/runners.py, "Answers").
"""
import threading
import time

STREAM_KEEP = 120.0          # seconds a finished mission's event stream stays for late readers


class Stream:
    """A mission's events (state, routed, token, done, failed, cancelled), for any reader."""

    END = ("done", "failed", "cancelled")

    def __init__(self):
        self.events, self.ended = [], None
        self.cond = threading.Condition()

    def push(self, kind, data):
        with self.cond:
            self.events.append((kind, data))
            if kind in self.END:
                self.ended = time.monotonic()
            self.cond.notify_all()

    def reopen(self):
        """A new run of the mission here: its stream is live again (events are kept)."""
        with self.cond:
            self.ended = None

    def since(self, i, wait):
        """The events from index ``i`` on, waiting up to ``wait`` seconds for one."""
        with self.cond:
            if i >= len(self.events) and wait > 0:
                self.cond.wait(wait)
            return list(self.events[i:])


def follow(live_stream, stored_end, timeout, poll, stopping):
    """A mission's events: ``live_stream()`` (this runner's Stream for it, or None) while it
    runs here, and ``stored_end()`` (read every ``poll`` seconds: ``("done", summary)``,
    ``("failed", reason)`` or None) for its end. A mission another runner completes streams
    its stored answer (what was not streamed of it here) before its end. Stops at the end;
    with ``("stopped", why)`` once ``stopping`` is set and nothing runs here; or after
    ``timeout`` seconds with nothing more."""
    deadline, seen, said, next_read = time.monotonic() + timeout, 0, "", 0.0
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        live = live_stream()
        wait = max(min(next_read - now, deadline - now), 0.0)
        if live is not None:
            batch = live.since(seen, wait)
        else:                   # not (yet) run here: only the stored state can tell
            time.sleep(wait)
            batch = []
        end = None
        if time.monotonic() >= next_read:
            next_read = time.monotonic() + poll
            end = stored_end()
            if end is not None and live is not None:
                batch = live.since(seen, 0)     # its tokens came before its commit
        for kind, data in batch:
            seen += 1
            if kind in ("done", "failed"):
                yield kind, data
                return
            if kind == "token":
                said += data
            if kind != "cancelled":         # stopped here: another runner takes it over
                yield kind, data
        if end is not None:
            if end[0] == "done":
                answer = end[1]["answer"] or ""
                rest = answer[len(said):] if answer.startswith(said) else answer
                if rest:
                    yield "token", rest
            yield end
            return
        if stopping.is_set() and (live is None or live.ended is not None):
            yield "stopped", "this kernel stopped before the mission ended; ask again"
            return
