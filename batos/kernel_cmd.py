"""``batos kernel``, ``batos api-token`` and ``batos missions``."""
import logging
import signal
import threading

from image import open_image, resolve
from kernel.options import DEFAULTS, options

from . import ui

log = logging.getLogger("batos.kernel")


def add_kernel_arguments(p):
    d = DEFAULTS        # one definition of the defaults: kernel.options.KernelOptions
    p.add_argument("--http", default=d.http, metavar="HOST:PORT",
                   help=f"where the OpenAI-compatible API listens (default {d.http}; "
                        "port 0 picks a free one; 'off' serves none)")
    p.add_argument("--zeo", default=d.zeo, metavar="ADDRESS",
                   help="ZEO address: a unix socket path (default IMAGE/zeo.sock) or "
                        "HOST:PORT for TCP on loopback")
    p.add_argument("--threads", "--workers", type=int, default=d.threads,
                   help=f"mission threads: missions run at once (default {d.threads})")
    p.add_argument("--heartbeat", type=float, default=d.heartbeat, metavar="SECONDS",
                   help=f"self-audit mission every N seconds (default {d.heartbeat:g}; "
                        "0 turns it off)")
    p.add_argument("--grace", type=float, default=d.grace, metavar="SECONDS",
                   help="on SIGTERM, how long in-flight missions may finish before they are "
                        f"abandoned and stay queued, and the night stops at its next check "
                        f"(default {d.grace:g})")
    p.add_argument("--dream-at", default=d.dream_at, metavar="HH:MM",
                   help="local time of the nightly cycle, `batos dream` for both minds "
                        f"(default {d.dream_at}; 'now' for one night right after start-up; "
                        "'off' for none)")
    w = p.add_argument_group(
        "runners on this or more machines",
        "A runner connects to the shared image (postgresql://..., or the folder or zeo:// "
        "address of a running kernel), claims missions from the shared queue and runs them; "
        "it serves no API, runs no heartbeat audit and no night. A killed runner's claims "
        "lapse after --expiry seconds of silence (at once on its own machine) and another "
        "runner takes its missions; a SIGTERMed one hands its claims back.")
    w.add_argument("--runner", "--worker", action="store_true", dest="runner",
                   help="run as a runner (--worker is the old name)")
    w.add_argument("--minds", default=None, metavar="NAMES",
                   help="comma-separated minds whose missions this runner claims "
                        "(default: both); their models load at start")
    w.add_argument("--presence", type=float, default=d.presence, metavar="SECONDS",
                   help=f"how often a runner records that it is alive (default {d.presence:g})")
    w.add_argument("--expiry", type=float, default=d.expiry, metavar="SECONDS",
                   help="a runner silent this long loses its claims to the others "
                        f"(default {d.expiry:g})")


def cmd_kernel(args):
    from kernel.kernel import Kernel
    loc = resolve(args.image)
    minds = tuple(m.strip() for m in args.minds.split(",") if m.strip()) if args.minds else ()
    opts = options(http=args.http, zeo=args.zeo, threads=args.threads,
                   heartbeat=args.heartbeat, grace=args.grace, dream_at=args.dream_at,
                   runner=args.runner, minds=minds, presence=args.presence, expiry=args.expiry)
    if loc.is_folder and not loc.data_fs.exists():
        raise ValueError(f"no image at {loc}; create one with `batos init` first")
    stop = threading.Event()
    kernel = Kernel(loc, opts)

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
        if kernel.role == "runner":
            print(f"runner ready on {loc}: id {kernel.id}, minds "
                  f"{','.join(kernel.minds) or 'both'}; logs in {kernel.logfile}", flush=True)
        else:
            print(f"kernel ready on {loc}: zeo {info['zeo']}, http {info['http'] or 'off'}; "
                  f"logs in {kernel.logfile}", flush=True)
        kernel.run(stop)          # the main thread does the model work until SIGTERM
    finally:
        kernel.stop()
    return 0


def cmd_api_token(args):
    from kernel.api_token import ensure_token, read_token
    loc = resolve(args.image)
    token = ensure_token(loc, rotate=True) if args.rotate else read_token(loc)
    print(token)
    return 0


def cmd_missions(args):
    from kernel import missions as ms
    from kernel import runners
    with open_image(resolve(args.image), read_only=True) as img, img.view() as root:
        rows = [ms.summary(m) for m in ms.recent(root, args.n)]
        present = runners.rows(root) if "runners" in root else []
    if args.json:
        ui.print_json(rows)
        return 0
    ui.out.print(missions_table(rows))
    if present:
        ui.out.print(runners_table(present))
    return 0


def runners_table(rows):
    from rich.table import Table
    t = Table("runner", "role", "minds", "last seen", "running", "done", title="runners")
    for r in rows:
        seen = f"{r['silent_s']:.0f} s ago" + ("" if r["alive"] else " [red](gone)[/]")
        t.add_row(ui.escape(r["id"]), r["role"], ",".join(r["minds"]) or "both", seen,
                  str(len(r["running"])), str(r["done"]))
    return t


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
