"""The kernel's options: one definition, read by ``Kernel`` and by ``batos kernel``'s flags."""
import dataclasses
import logging

from prototypes import settings as st

log = logging.getLogger("batos.kernel")


@dataclasses.dataclass(frozen=True)
class KernelOptions:
    """How a kernel runs. ``http``: HOST:PORT of the OpenAI-compatible API (port 0 picks a
    free one; "off" serves none). ``zeo``: a unix socket path (default IMAGE/zeo.sock) or
    HOST:PORT. ``dream_at``: local HH:MM of the nightly cycle, "now" for one night right
    after start-up, or "off"."""
    http: str = "127.0.0.1:8421"
    zeo: str | None = None
    threads: int = st.number(2, min=0)            # mission threads: missions run at once
    heartbeat: float = st.number(300.0, min=0.0)  # self-audit every N s (0: off)
    grace: float = st.number(30.0, min=0.0)       # on SIGTERM, how long work may finish
    poll: float = st.number(0.2, min=0.01)        # how often the queue is read
    dream_at: str = "02:00"
    # A runner claims and runs missions from the shared queue, nothing else: no
    # HTTP API, ZEO server, heartbeat audits or night (runners.py has the rules).
    runner: bool = False
    minds: tuple[str, ...] = ()                   # minds whose missions it claims (): both
    presence: float = st.number(5.0, min=0.1)     # presence beat: a runner says it is alive
    expiry: float = st.number(30.0, min=0.5)      # a runner silent this long loses its claims

    def http_address(self):
        return None if self.http == "off" else hostport(self.http, "HTTP")

    def zeo_address(self):
        z = self.zeo
        if z and not z.startswith("/") and ":" in z:
            return hostport(z, "ZEO")
        return z

    def dream_time(self):
        return parse_dream_at(self.dream_at)


DEFAULTS = KernelOptions()


def options(data=None, **overrides) -> KernelOptions:
    """Validated options (SettingsError names every bad one); addresses checked too."""
    opts = st.check(KernelOptions, data, where="kernel options", **overrides)
    try:
        opts.http_address(), opts.zeo_address(), opts.dream_time()
    except ValueError as e:
        raise st.SettingsError(f"kernel options: {e}") from None
    from mindhost.minds import MINDS
    bad = [m for m in opts.minds if m not in MINDS]
    if bad:
        raise st.SettingsError(f"kernel options: no mind named {', '.join(bad)}; the minds are "
                               f"{', '.join(MINDS)}")
    if opts.expiry <= opts.presence:
        raise st.SettingsError(f"kernel options: expiry ({opts.expiry:g} s) must be longer than "
                               f"presence ({opts.presence:g} s), or live runners lose their claims")
    return opts


def hostport(text, what):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad {what} address {text!r}: use HOST:PORT, e.g. 127.0.0.1:8421")
    host = host or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("%s listens on %s, not loopback: anyone who can reach it and has the "
                    "token can use the minds", what, host)
    return host, int(port)


def parse_dream_at(text):
    if text in ("off", "now"):
        return None if text == "off" else "now"
    h, sep, m = text.partition(":")
    if not (sep and h.isdigit() and m.isdigit() and int(h) < 24 and int(m) < 60):
        raise ValueError(f"bad dream_at {text!r}: use HH:MM (local time), e.g. 02:00, now "
                         "or off")
    return f"{int(h):02d}:{int(m):02d}"
