"""``batos kernel``, ``batos api-token`` and ``batos missions``."""
import logging
import signal
import threading

from image import open_image, resolve

from . import ui

log = logging.getLogger("batos.kernel")


def add_kernel_arguments(p):
    p.add_argument("--http", default="127.0.0.1:8421", metavar="HOST:PORT",
                   help="where the OpenAI-compatible API listens (default 127.0.0.1:8421; "
                        "port 0 picks a free one; 'off' serves none)")
    p.add_argument("--zeo", default=None, metavar="ADDRESS",
                   help="ZEO address: a unix socket path (default IMAGE/zeo.sock) or "
                        "HOST:PORT for TCP on loopback")
    p.add_argument("--workers", type=int, default=2, help="missions run at once (default 2)")
    p.add_argument("--heartbeat", type=float, default=300.0, metavar="SECONDS",
                   help="self-audit mission every N seconds (default 300; 0 turns it off)")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long in-flight missions may finish before they are "
                        "abandoned and stay queued (default 30)")
    p.add_argument("--dream-at", default="02:00", metavar="HH:MM",
                   help="local time of the nightly cycle, `batos dream` for both minds "
                        "(default 02:00; 'off' for none)")


def _hostport(text, what):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad {what} address {text!r}: use HOST:PORT, e.g. 127.0.0.1:8421")
    host = host or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("%s listens on %s, not loopback: anyone who can reach it and has the "
                    "token can use the minds", what, host)
    return host, int(port)


def _dream_at(text):
    if text == "off":
        return None
    h, sep, m = text.partition(":")
    if not (sep and h.isdigit() and m.isdigit() and int(h) < 24 and int(m) < 60):
        raise ValueError(f"bad --dream-at {text!r}: use HH:MM (local time), e.g. 02:00, or off")
    return f"{int(h):02d}:{int(m):02d}"


def cmd_kernel(args):
    from .kernel import Kernel
    loc = resolve(args.image)
    http = None if args.http == "off" else _hostport(args.http, "HTTP")
    zeo = args.zeo
    if zeo and not zeo.startswith("/") and ":" in zeo:
        zeo = _hostport(zeo, "ZEO")
    if not (loc.kind == "folder" and loc.data_fs.exists()):
        raise ValueError(f"no image at {loc}; create one with `batos init` first")
    stop = threading.Event()
    kernel = Kernel(loc, zeo=zeo, http=http, workers=args.workers, heartbeat=args.heartbeat,
                    grace=args.grace, dream_at=_dream_at(args.dream_at))

    def on_signal(*_):
        if not stop.is_set():
            stop.set()
            kernel.request_stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    kernel.start()                # undoes itself if a step fails
    try:
        info = kernel.info()
        # one plain line (never wrapped): scripts and tests wait for it
        print(f"kernel ready on {loc}: zeo {info['zeo']}, http {info['http'] or 'off'}; "
              f"logs in {kernel.logfile}", flush=True)
        kernel.run(stop)          # the main thread does the model work until SIGTERM
    finally:
        kernel.stop()
    return 0


def cmd_api_token(args):
    from .api_token import ensure_token, read_token
    loc = resolve(args.image)
    token = ensure_token(loc, rotate=True) if args.rotate else read_token(loc)
    print(token)
    return 0


def cmd_missions(args):
    from . import missions as ms
    with open_image(resolve(args.image), read_only=True) as img, img.view() as root:
        rows = [ms.summary(m) for m in ms.recent(root, args.n)]
    if args.json:
        ui.print_json(rows)
        return 0
    ui.out.print(missions_table(rows))
    return 0


def missions_table(rows):
    import time

    from rich.table import Table
    t = Table("id", "when", "mind", "kind", "state", "request", "answer")
    for r in rows:
        state = "RUNNING" if r["running"] else r["state"]
        answer = r["answer"] or r["error"] or ""
        t.add_row(r["id"][-6:], time.strftime("%H:%M:%S", time.localtime(r["created"])),
                  r["mind"] + (f"→{r['routed_to']}" if r["routed_to"] else ""), r["kind"],
                  state, ui.escape(r["request"][:40]), ui.escape(answer[:50].replace("\n", " ")))
    return t
