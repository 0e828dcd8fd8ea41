"""The console's mission verbs: ``:send``, ``:missions``, ``:rate``.

Attached to a kernel (``batos console --attach``), ``:send`` queues the
mission over ZEO and follows its events from the kernel's HTTP API (or,
if that cannot be reached, polls the image until the mission ends).
Standalone, the console runs the mission itself, through the same PSM, as a
runner of one mission: it claims it and writes under that claim (kernel/runners.py).
"""
import http.client
import json
import time
from pathlib import Path
from urllib.parse import urlparse

from rich.markup import escape
from transaction.interfaces import TransientError

from kernel import missions as ms
from kernel.psm import CycleFailed, Services, run_mission
from memory import ledger


class Missions:
    def __init__(self, console):
        self.c = console
        self.turns = {"orai": [], "hermes": []}   # this console's conversation, per mind
        self.shown = []                            # (mind, exchange key), numbered from 1
        self.services = None
        self._pool = None

    @property
    def out(self):
        return self.c.out

    def send(self, rest):
        mind, _, text = rest.partition(" ")
        if mind not in ("orai", "hermes") or not text.strip():
            self.out.print("usage: :send orai|hermes TEXT")
            return None
        if self.c.read_only:
            self.out.print("[yellow]read-only console:[/] missions cannot be queued")
            return None
        text = text.strip()
        img = self.c.img
        with img.transaction(note=f"mission for {mind} (console)") as conn:
            mid = ms.new_mission(conn.root(), mind, text, history=self.turns[mind],
                                 source="console").id
        from kernel.runners import served
        if served(img):                  # a kernel or worker takes it from the queue
            result = self._follow_kernel(mid)
        else:
            result = self._run_here(mid)
        if result and result.get("state") == "COMPLETE":
            self.turns[mind] += [{"role": "user", "content": text},
                                 {"role": "assistant", "content": result["answer"]}]
            for mind_key in result["exchanges"]:
                self.shown.append(tuple(mind_key))
            n = len(self.shown)
            self.out.print(f"\n[dim]mission {mid[-6:]} · {result['speaker']} · exchange [{n}] "
                           f"(:rate {n} good|bad)[/]")
        return result

    def _print_token(self, piece):
        self.out.print(piece, end="", markup=False, highlight=False)

    def local_services(self):
        """Models and the embedder of this process (loaded on first use)."""
        if self.services is None:
            from memory.embed import get_embedder
            self.services = Services(self.local_pool(), get_embedder())
        return self.services

    def local_pool(self):
        """The models of this process, without loading the embedder (self-extension needs none)."""
        if self.services is not None:
            return self.services.pool
        if self._pool is None:
            from mindhost.pool import ModelPool
            self._pool = ModelPool()
        return self._pool

    def _run_here(self, mid):
        from kernel import runners
        self.local_services()
        me = runners.new_id()

        def on_event(kind, data):
            if kind == "token":
                self._print_token(data)
        img = self.c.img

        def claim(root):
            runners.beat(root, me, role="console")
            return ms.claim(root, mid, me)
        try:
            fence = img.run(claim, note=f"mission {mid}: claimed by a console")
            if fence is None:
                return self._poll(mid)          # a runner that started meanwhile has it
            return run_mission(img, mid, self.services, on_event=on_event, fence=fence)
        except CycleFailed as e:
            self.out.print(f"\n[red]failed:[/] {escape(str(e))} [dim](nothing was written but "
                           "the failure record)[/]")
            return None
        except ms.StaleClaim as e:
            self.out.print(f"\n[yellow]{escape(str(e))}[/]")
            return self._poll(mid)
        except TransientError as e:
            img.run(ms.release, mid, fence, note=f"mission {mid}: handed back by a console")
            self.out.print(f"\n[yellow]the image was too busy to take the answer "
                           f"({escape(type(e).__name__)}); mission {mid} stays queued: a kernel "
                           "runs it, or ask again[/]")
            return None
        finally:
            img.run(runners.leave, me, note="console runner left")

    def _follow_kernel(self, mid):
        info = self._kernel_info()
        try:
            if not info.get("http"):
                raise OSError("the kernel serves no HTTP API")
            token = Path(info["token_file"]).read_text().strip()
            for kind, data in events(info["http"], token, mid):
                if kind == "token":
                    self._print_token(data)
                elif kind == "routed":
                    pass
                elif kind in ("failed", "stopped"):
                    self.out.print(f"\n[red]{kind}:[/] {escape(str(data))}")
                    return None
                elif kind == "done":
                    return data if isinstance(data, dict) and "answer" in data else self._result(mid)
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.out.print(f"[dim](cannot stream from the kernel: {escape(str(e))}; "
                           "waiting for the mission to finish)[/]")
        return self._poll(mid)

    def _kernel_info(self):
        from image.meta import get_meta
        with self.c.img.view() as root:
            return dict(get_meta(root).get("kernel") or {})

    def _result(self, mid):
        with self.c.img.view() as root:
            return ms.summary(root["missions"][mid])

    def _poll(self, mid, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self._result(mid)
            if r["state"] in ms.TERMINAL:
                if r["state"] == "FAILED":
                    self.out.print(f"[red]failed:[/] {escape(r['error'] or '')}")
                    return None
                self._print_token(r["answer"])
                return r
            time.sleep(0.2)
        self.out.print(f"[yellow]mission {mid} is still running; see :missions[/]")
        return None

    def missions(self, rest):
        from .kernel_cmd import missions_table
        n = int(rest) if rest.strip().isdigit() else 10
        with self.c.img.view() as root:
            rows = [ms.summary(m) for m in ms.recent(root, n)]
        self.out.print(missions_table(rows))
        return rows

    def rate(self, rest):
        parts = rest.split(None, 2)
        if len(parts) < 2 or parts[1].lower() not in ledger.RATINGS:
            self.out.print("usage: :rate N good|bad [note]  (N: an exchange number from :send)")
            return False
        ref, rating, note = parts[0], parts[1].lower(), parts[2] if len(parts) > 2 else None
        if ref.isdigit() and 1 <= int(ref) <= len(self.shown):
            mind, key = self.shown[int(ref) - 1]
        else:
            self.out.print(f"no exchange [{escape(ref)}] in this console; :send shows numbers")
            return False
        with self.c.img.transaction(note=f"rating of {mind} {key}") as conn:
            ledger.rate(conn.root(), mind, key, rating, note)
        self.out.print(f"rated {mind}'s exchange [{ref}] {rating}")
        return True


def events(base_url, token, mid, timeout=600):
    """A mission's events from the kernel's HTTP API (server-sent events)."""
    u = urlparse(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", f"/batos/v1/missions/{mid}/events",
                     headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise OSError(f"the kernel answered {resp.status}: {resp.read()[:200]!r}")
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                return
            event = json.loads(payload)
            yield event["kind"], event["data"]
    finally:
        conn.close()
