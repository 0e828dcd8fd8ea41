"""Where and when a kernel's work runs: model work on the main thread, scheduled jobs."""
import concurrent.futures
import queue
import threading
import time


class MainThread:
    """Runs model work on the main thread for the mission threads.

    Measured on the bundled model: a model loaded or run on another thread
    generates up to 1.9x slower than on the main thread (torch's int8 matmul
    above all), so loading and inference both go here.
    """

    def __init__(self):
        self.calls = queue.Queue()

    def call(self, fn):
        if threading.current_thread() is threading.main_thread():
            return fn()
        fut = concurrent.futures.Future()
        self.calls.put((fn, fut))
        return fut.result()

    def serve(self, until, tick=0.2):
        """Run calls until ``until()`` is true (checked at least every ``tick`` s)."""
        while not until():
            try:
                fn, fut = self.calls.get(timeout=tick)
            except queue.Empty:
                continue
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # noqa: BLE001 - the asking thread re-raises it
                    fut.set_exception(e)



class Job:
    """A scheduled job: every N seconds, or daily at HH:MM local time."""

    def __init__(self, name, fn, every=None, at=None):
        if (every is None) == (at is None):
            raise ValueError("a job runs either every N seconds or daily at HH:MM")
        self.name, self.fn, self.every, self.at = name, fn, every, at
        self.next = self._next(time.time())

    def _next(self, now):
        if self.every is not None:
            return now + self.every
        if self.at == "now":            # once, right away
            return now if not hasattr(self, "next") else float("inf")
        h, m = map(int, self.at.split(":"))
        t = time.localtime(now)
        due = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, h, m, 0, 0, 0, -1))
        return due if due > now else due + 86400

    def due(self, now):
        if now >= self.next:
            self.next = self._next(now)
            return True
        return False
