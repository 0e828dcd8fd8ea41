"""Landlock for the process that runs one untrusted call: no file system, no TCP, no signals out.

Part of the second wall (``guardians.wall``). The ruleset handles every access
right the running kernel knows (by its Landlock ABI version) and grants none:
the call's process has what it opened before (its pipes) and nothing else.
From ABI 4 it also refuses TCP bind and connect, and from ABI 6 it scopes
abstract unix sockets and signals to its own domain, so it cannot signal the
host or another worker even where seccomp is missing.

Unprivileged and stackable; needs ``no_new_privs`` first (``guardians.seccomp``
sets it too). Syscall numbers 444-446 are the same on x86_64 and aarch64.
"""
import ctypes
import os
import platform

_CREATE, _ADD_RULE, _RESTRICT = 444, 445, 446
_VERSION = 1 << 0                                 # LANDLOCK_CREATE_RULESET_VERSION
PR_SET_NO_NEW_PRIVS = 38
# file-system access rights known at each ABI version (bit 13: refer, 14: truncate, 15: ioctl)
_FS_BITS = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}
_NET_ALL = 0b11                                   # bind and connect TCP (ABI 4)
_SCOPE_ALL = 0b11                                 # abstract unix sockets and signals (ABI 6)


class Unsupported(OSError):
    """This kernel has no Landlock (or it is switched off)."""


class _Attr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


_built = None           # (libc, attr, size, version), made once in the worker before it forks


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi():
    """The kernel's Landlock ABI version; raise Unsupported where there is none."""
    if os.uname().sysname != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        raise Unsupported("Landlock is a Linux facility (x86_64 and aarch64 here)")
    v = _libc().syscall(_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION))
    if v < 1:
        raise Unsupported(f"no Landlock in this kernel: {os.strerror(ctypes.get_errno())}")
    return int(v)


def build():
    """Ask the kernel's ABI and prepare the ruleset, so that a call's process only applies it."""
    global _built
    if _built is None:
        version = abi()
        fs = (1 << _FS_BITS.get(version, 16)) - 1
        attr = _Attr(fs, _NET_ALL if version >= 4 else 0, _SCOPE_ALL if version >= 6 else 0)
        size = 8 if version < 4 else 16 if version < 6 else 24
        _built = _libc(), attr, size, version
    return _built


def restrict():
    """Refuse this process (and anything it could start) every handled access; return the ABI."""
    libc, attr, size, version = build()
    fd = libc.syscall(_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise Unsupported(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise Unsupported(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(_RESTRICT, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise Unsupported(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
    return version
