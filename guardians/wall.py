"""The second wall: what the OS holds around the process that runs one untrusted call.

RestrictedPython is the first wall; it has had bypasses. The second assumes
one: the process running a call (a fresh fork of the worker, see
``guardians.worker``) enters the wall before it decodes anything the call
sent, and even arbitrary Python in it, ctypes included, then cannot

- **outlive the call or start anything**: no fork, clone, exec or new
  session (seccomp; RLIMIT_NPROC 0 hard), so the host's kill of the worker's
  process group takes everything;
- **touch files**: Landlock grants no file-system access at all, and seccomp
  refuses opening, making, renaming and removing files (the modules it may
  import were loaded before); RLIMIT_FSIZE 0 hard; no new descriptors past
  the ones it holds;
- **reach the network**: no sockets (seccomp; Landlock refuses TCP too);
- **signal or debug anyone**: signals only to itself (seccomp; Landlock scopes
  them from ABI 6), no ptrace, not dumpable, and another user: ``nobody``
  when the worker runs as root, else a user namespace of its own (with an
  empty network namespace);
- **raise its limits**: address space, CPU time, file size, descriptors and
  processes are set as *hard* limits (the call's own once it is read); without
  CAP_SYS_RESOURCE in the first user namespace no process raises a hard limit,
  and ``prlimit`` on another process is refused.

On macOS the same rules are written as a Seatbelt profile (``PROFILE``),
applied with ``sandbox_init``; it is untested here (no Mac), and RLIMIT_AS is
not enforced there, so the host watches the call's resident memory instead.
``rules()`` says which rules are in force on this machine; ``batos info`` and
``docs/guardians.md`` show it.
"""
import ctypes
import os
import resource
import sys

from . import landlock, seccomp

# the rules, in the order the call's process enters them; each is a bit of an exit code
RULES = ("hard limits", "another user", "not dumpable", "landlock", "seccomp", "seatbelt")
NOBODY = 65534
PR_SET_DUMPABLE = 4
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000

PROFILE = """(version 1)
(deny default)
(allow signal (target self))
(allow sysctl-read)
(deny process-fork)
(deny process-exec)
(deny network*)
(deny file-write*)
(deny file-read*)
"""


class WallError(OSError):
    """A rule that was in force when the worker started could not be entered for a call."""


def _limit(which, value):
    if which is None:
        return
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(which, (value, value))


def limits(nofile):
    """The hard limits that hold for every call (before the call is known)."""
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, 0)
    _limit(getattr(resource, "RLIMIT_NPROC", None), 0)
    _limit(resource.RLIMIT_NOFILE, nofile)
    _limit(getattr(resource, "RLIMIT_MEMLOCK", None), 0)


def call_limits(address_space, cpu_seconds):
    """The call's own hard limits; without privilege nothing raises a hard limit again."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime + cpu_seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or cpu + 1 <= hard:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))   # SIGXCPU, then SIGKILL
    if address_space is not None and sys.platform.startswith("linux"):
        _limit(resource.RLIMIT_AS, address_space)


def _other_user():
    if os.geteuid() != 0:       # unprivileged: a user namespace of its own, with no network
        if not sys.platform.startswith("linux"):
            return False
        libc = _libc or ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare: " + os.strerror(ctypes.get_errno()))
        return True
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    return True


_libc = None            # the C library, opened once in the worker before it forks


def _not_dumpable():
    if not sys.platform.startswith("linux"):
        return False
    return (_libc or ctypes.CDLL(None, use_errno=True)).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def _seatbelt():
    if sys.platform != "darwin":
        return False
    lib = ctypes.CDLL("/usr/lib/libSystem.dylib")
    err = ctypes.c_char_p()
    if lib.sandbox_init(PROFILE.encode(), 0, ctypes.byref(err)) != 0:
        raise WallError(f"sandbox_init: {err.value!r}")
    return True


def build():
    """Prepare what each call's process installs (in the worker, before it forks)."""
    global _libc
    if sys.platform.startswith("linux"):
        _libc = ctypes.CDLL(None, use_errno=True)
    for prepare in (seccomp.build, landlock.build):
        try:
            prepare()
        except OSError:
            pass                # not this platform: enter() reports it missing


def enter(nofile, required=None):
    """Enter every rule this platform has; return the set entered.

    ``required`` (the set a probe found at start): a rule in it that now fails
    raises WallError, so a call never runs behind less wall than was reported.
    """
    entered = set()
    limits(nofile)
    entered.add("hard limits")
    steps = (("another user", _other_user), ("not dumpable", _not_dumpable),
             ("landlock", landlock.restrict), ("seccomp", seccomp.install),
             ("seatbelt", _seatbelt))
    for name, step in steps:
        try:
            if step():
                entered.add(name)
        except OSError as e:
            if required is not None and name in required:
                raise WallError(f"{name}: {e}") from None
    return entered


def encode(entered):
    return sum(1 << i for i, name in enumerate(RULES) if name in entered)


def decode(bits):
    return {name for i, name in enumerate(RULES) if bits & (1 << i)}


def expected():
    """The rules this platform should provide (what a missing one is measured against)."""
    if sys.platform == "darwin":
        return {"hard limits", "another user", "seatbelt"}
    if sys.platform.startswith("linux"):
        return {"hard limits", "another user", "not dumpable", "landlock", "seccomp"}
    return {"hard limits"}


def probe(nofile=64):
    """Fork a process, enter the wall in it, and return the set of rules that held."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            code = encode(enter(nofile))
        except BaseException:   # noqa: BLE001 - a probe that failed reports nothing in force
            code = 0
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return decode(os.waitstatus_to_exitcode(status)) if os.WIFEXITED(status) else set()
