"""A seccomp filter for the process that runs one untrusted call (Linux, x86_64 and aarch64).

Part of the second wall (``guardians.wall``): even a method that escaped
RestrictedPython and ran arbitrary Python, ctypes included, gets ``EPERM``
from the kernel for every system call below. The filter is a deny list (the
interpreter needs hundreds of calls we would otherwise have to enumerate per
libc), and it denies whole families: sockets, new processes and programs,
debugging other processes, signals to anyone but itself, new sessions and
process groups, another process's limits, identity, opening or making files,
namespaces and mounts, kernel key rings, BPF, io_uring and userfaultfd.
Syscalls of another ABI (i386, x32) are refused outright: the classic way
around a filter that checks numbers of one table.

Numbers come from the kernel's tables (``asm/unistd_64.h`` and
``asm-generic/unistd.h``); only x86_64 is exercised by the tests here.
"""
import ctypes
import errno
import os
import platform
import struct

# syscall -> (x86_64, aarch64); None where the architecture has no such call
DENIED = {
    # sockets (a pipe needs none of these)
    "socket": (41, 198), "socketpair": (53, 199), "connect": (42, 203), "bind": (49, 200),
    "listen": (50, 201), "accept": (43, 202), "accept4": (288, 242), "sendto": (44, 206),
    "sendmsg": (46, 211),
    # new processes and programs
    "clone": (56, 220), "clone3": (435, 435), "fork": (57, None), "vfork": (58, None),
    "execve": (59, 221), "execveat": (322, 281),
    # other processes
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "pidfd_open": (434, 434), "pidfd_send_signal": (424, 424), "pidfd_getfd": (438, 438),
    "kcmp": (312, 272),
    # sessions, groups, limits, identity, the filter itself
    "setpgid": (109, 154), "setsid": (112, 157), "setuid": (105, 146), "setgid": (106, 144),
    "setreuid": (113, 145), "setregid": (114, 143), "setresuid": (117, 147),
    "setresgid": (119, 149), "setgroups": (116, 159), "setfsuid": (122, 151),
    "setfsgid": (123, 152), "capset": (126, 91), "personality": (135, 92),
    "prctl": (157, 167), "seccomp": (317, 277),
    # files: opening, making, renaming, removing (Landlock says the same where it runs)
    "open": (2, None), "openat": (257, 56), "creat": (85, None), "openat2": (437, 437),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
    "memfd_create": (319, 279), "mknod": (133, None), "mknodat": (259, 33),
    "link": (86, None), "linkat": (265, 37), "symlink": (88, None), "symlinkat": (266, 36),
    "rename": (82, None), "renameat": (264, 38), "renameat2": (316, 276),
    "unlink": (87, None), "unlinkat": (263, 35), "mkdir": (83, None), "mkdirat": (258, 34),
    "rmdir": (84, None), "truncate": (76, 45), "chmod": (90, None), "fchmodat": (268, 53),
    "chown": (92, None), "fchownat": (260, 54), "lchown": (94, None),
    "fanotify_init": (300, 262), "inotify_init1": (294, 26),
    # namespaces, mounts, kernel facilities
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "move_mount": (429, 429),
    "open_tree": (428, 428), "fsopen": (430, 430), "fsmount": (432, 432),
    "mount_setattr": (442, 442), "bpf": (321, 280), "perf_event_open": (298, 241),
    "userfaultfd": (323, 282), "keyctl": (250, 219), "add_key": (248, 217),
    "request_key": (249, 218), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "syslog": (103, 116), "quotactl": (179, 60),
    "mq_open": (240, 180), "msgget": (68, 186), "semget": (64, 190), "shmget": (29, 194),
    # signals, to anyone (abort() then ends the process by a fault instead)
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240),
}
# allowed only on the process itself (pid 0): setrlimit, which glibc makes prlimit64(0, ...)
SELF_ONLY = {"prlimit64": (302, 261)}

_ARCH = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7), "arm64": (1, 0xC00000B7)}
_X32 = 0x40000000

# classic BPF, as seccomp runs it
_LD_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_DENY = 0x00050000 | errno.EPERM
_NR, _ARCH_AT, _ARG0_LO, _ARG0_HI = 0, 4, 16, 20
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Unsupported(OSError):
    """This machine cannot install the filter (not Linux, another CPU, no seccomp)."""


def arch():
    """(column in the tables, AUDIT_ARCH value) for this machine, or raise Unsupported."""
    if os.uname().sysname != "Linux":
        raise Unsupported("seccomp is a Linux facility")
    found = _ARCH.get(platform.machine())
    if found is None:
        raise Unsupported(f"no syscall table here for {platform.machine()}")
    return found


def program():
    """The filter as (code, jt, jf, k) instructions (the same for every process)."""
    col, audit = arch()
    code, fixups, labels = [], [], {}

    def emit(op, k=0, jt=None, jf=None):
        fixups.append((len(code), jt, jf))
        code.append([op, 0, 0, k])

    emit(_LD_ABS, _ARCH_AT)
    emit(_JEQ, audit, jf="kill")                  # another ABI's table: never
    emit(_LD_ABS, _NR)
    if col == 0:
        emit(_JGE, _X32, jt="deny")               # x32 numbers alias the x86_64 ones
    for nrs in DENIED.values():
        if nrs[col] is not None:
            emit(_JEQ, nrs[col], jt="deny")
    for nrs in SELF_ONLY.values():
        emit(_JEQ, nrs[col], jt="self")
    emit(_RET, _ALLOW)
    labels["self"] = len(code)                     # arg 0 (a pid) must be 0: this process
    emit(_LD_ABS, _ARG0_HI)
    emit(_JEQ, 0, jf="deny")
    emit(_LD_ABS, _ARG0_LO)
    emit(_JEQ, 0, jf="deny")
    emit(_RET, _ALLOW)
    labels["deny"] = len(code)
    emit(_RET, _DENY)
    labels["kill"] = len(code)
    emit(_RET, _KILL)
    for at, jt, jf in fixups:
        for slot, label in ((1, jt), (2, jf)):
            if label is not None:
                offset = labels[label] - at - 1
                if not 0 <= offset <= 255:
                    raise ValueError("a seccomp jump out of range")
                code[at][slot] = offset
    return [tuple(c) for c in code]


_built = None           # (buffer, fprog), built once in the worker before it forks


def build():
    """Assemble the filter now, so that a call's process only has to install it."""
    global _built
    if _built is None:
        prog = program()
        raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
        buf = ctypes.create_string_buffer(raw, len(raw))
        _built = buf, _Fprog(len(prog), ctypes.addressof(buf)), ctypes.CDLL(None, use_errno=True)
    return _built


def install():
    """Install the filter on this (single-threaded) process; raise Unsupported if it cannot."""
    _, fprog, libc = build()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise Unsupported(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise Unsupported(f"seccomp: {os.strerror(ctypes.get_errno())}")
    return True
