"""The operating system's wall around stored methods: rlimits, no_new_privs,
Landlock and seccomp-bpf, applied by the sandbox worker to itself.

Two stages, because the worker is two processes (see :mod:`batos.sandbox.worker`):

- :func:`lock_supervisor` runs once in the worker's supervisor, after it has
  imported everything a method may use: every file descriptor but its two
  pipes is closed, capabilities are dropped, ``no_new_privs`` is set, Landlock
  leaves read access to the interpreter's own files only (never the image's
  directory), and a seccomp filter refuses networking, program execution,
  file writes and the kernel's administrative calls. Forking stays allowed:
  the supervisor forks one child per call.
- :func:`lock_child` runs in each forked child before it reads its call: no
  more processes, no signals beyond itself, no new session, a second Landlock
  domain (so it cannot signal the supervisor), and death with its parent.
  The per-call rlimits come with the call (:func:`set_call_limits`); hard
  limits can only be lowered without ``CAP_SYS_RESOURCE``, which is dropped,
  so a method cannot raise its own.

seccomp goes through ``pyseccomp`` (libseccomp's API over ctypes) rather than
hand-written BPF; Landlock has no maintained binding on the package index, so
its three system calls are called here directly. :func:`probe` says what the
running kernel offers; the kernel reports it and refuses to run stored
methods without seccomp and Landlock unless started with the unsafe flag.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
import sysconfig
from dataclasses import asdict, dataclass
from typing import Any

try:  # pyseccomp finds libseccomp.so.2 with ctypes.util (it runs ldconfig once)
    import pyseccomp as _seccomp
except Exception:  # noqa: BLE001 - no libseccomp on this host: reported by probe()
    _seccomp = None

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
M_ARENA_MAX = -8
SYS_CAPSET = 126
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_READ_FILE, LANDLOCK_READ_DIR = 1 << 2, 1 << 3
CLONE_THREAD = 0x00010000
TIOCSTI = 0x5412


@dataclass(frozen=True)
class Protections:
    """What the running kernel offers a process that locks itself down."""

    seccomp: bool
    landlock_abi: int
    no_new_privs: bool = True
    rlimits: bool = True

    @property
    def complete(self) -> bool:
        return self.seccomp and self.landlock_abi >= 1

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "complete": self.complete}


def probe() -> Protections:
    return Protections(seccomp=_seccomp is not None and _seccomp_works(), landlock_abi=landlock_abi())


def _seccomp_works() -> bool:
    try:
        _seccomp.SyscallFilter(_seccomp.ALLOW).add_rule(_seccomp.ERRNO(errno.EPERM), "socket")
    except Exception:  # noqa: BLE001 - a binding without a usable library
        return False
    return True


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


# -- the supervisor ---------------------------------------------------------------


def lock_supervisor(keep_fds: list[int], protections: Protections, read_paths: list[str]) -> None:
    """Lock this process down before it forks children that run methods."""
    close_other_fds(keep_fds)
    # glibc reserves an arena of 64 MiB per thread; under RLIMIT_AS a method
    # with a few threads would run out of address space without using memory.
    _libc.mallopt(M_ARENA_MAX, 1)
    for limit in (resource.RLIMIT_CORE, resource.RLIMIT_FSIZE):
        resource.setrlimit(limit, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    drop_capabilities()
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if protections.landlock_abi >= 1:
        restrict_filesystem(protections.landlock_abi, read_paths)
    if protections.seccomp:
        _supervisor_filter().load()


def read_paths() -> list[str]:
    """The interpreter's files: the standard library, site-packages and this
    package; never the working directory, where images usually live."""
    import batos

    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.add(os.path.dirname(os.path.dirname(os.path.abspath(batos.__file__))) + "/batos")
    paths.update({sys.base_prefix + "/lib", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/etc/ld.so.cache"})
    existing = sorted(os.path.realpath(p) for p in paths if os.path.exists(p))
    minimal: list[str] = []
    for path in existing:
        if not any(path == kept or path.startswith(kept.rstrip("/") + "/") for kept in minimal):
            minimal.append(path)
    return minimal


def close_other_fds(keep: list[int]) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(devnull, fd)
    os.close(devnull)
    low = 0
    for fd in sorted(set(keep) | {0, 1, 2}):
        if low < fd:  # os.closerange(0, 0) would close every descriptor (close_range(0, ~0U))
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def drop_capabilities() -> None:
    """Every capability, including the bounding set (a root kernel keeps most)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except OSError:
        last = 40
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM once CAP_SETPCAP is gone: harmless
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, all zero
    _check(_libc.syscall(SYS_CAPSET, ctypes.byref(header), ctypes.byref(data)), "capset")


# -- Landlock ------------------------------------------------------------------------


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return int(abi) if abi > 0 else 0


def restrict_filesystem(abi: int, readable: list[str]) -> None:
    """Handle every right the ABI knows, allow only reading beneath *readable*;
    deny TCP bind/connect (ABI 4) and scope signals and abstract sockets (ABI 6)."""
    fs_rights = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)
    attr = _RulesetAttr(fs_rights, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _check(_libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0), "landlock_create_ruleset")
    try:
        for path in readable:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rights = LANDLOCK_READ_FILE | (LANDLOCK_READ_DIR if os.path.isdir(path) else 0)
                rule = _PathBeneath(rights, fd)
                _check(_libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0), f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        _check(_libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)


# -- seccomp ---------------------------------------------------------------------------

# Refused with EPERM, so Python raises PermissionError where the method tried.
DENIED = (
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "execve", "execveat",
    "creat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "link", "linkat",
    "symlink", "symlinkat", "mknod", "mknodat", "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat",
    "truncate", "ftruncate", "utime", "utimes", "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr", "memfd_create", "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "pidfd_send_signal", "pidfd_open", "pidfd_getfd", "name_to_handle_at", "open_by_handle_at", "chdir", "fchdir",
)
# No Python function has a use for these: the process is killed (SIGSYS).
KILLED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key", "mount", "umount2",
    "pivot_root", "chroot", "unshare", "setns", "reboot", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "sethostname", "setdomainname", "iopl", "ioperm", "quotactl", "syslog", "vhangup", "fanotify_init",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "personality", "memfd_secret",
)


def _add(f: Any, action: Any, name: str, *args: Any) -> None:
    try:
        f.add_rule(action, name, *args)
    except (RuntimeError, ValueError, OSError):
        pass  # a system call this architecture does not have


def _supervisor_filter() -> Any:
    sc = _seccomp
    eperm = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # the i386 entry point would bypass every rule
    for name in DENIED:
        _add(f, eperm, name)
    for name in KILLED:
        _add(f, sc.KILL_PROCESS, name)
    _add(f, eperm, "vfork")
    # clone3 passes its flags in a structure seccomp cannot read: ENOSYS makes
    # glibc fall back to clone(2), whose flags the child's filter can check.
    _add(f, sc.ERRNO(errno.ENOSYS), "clone3")
    _add(f, sc.ERRNO(errno.ENOSYS), "openat2")
    for name, index in (("open", 1), ("openat", 2)):
        for bit in (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC):
            _add(f, eperm, name, sc.Arg(index, sc.MASKED_EQ, bit, bit))
    _add(f, eperm, "ioctl", sc.Arg(1, sc.EQ, TIOCSTI))
    return f


def _child_filter() -> Any:
    sc = _seccomp
    eperm = sc.ERRNO(errno.EPERM)
    me = os.getpid()
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in ("fork", "vfork", "setsid", "setpgid", "tkill"):
        _add(f, eperm, name)
    _add(f, eperm, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))  # threads only
    _add(f, eperm, "kill", sc.Arg(0, sc.NE, me))
    _add(f, eperm, "tgkill", sc.Arg(0, sc.NE, me))
    return f


# -- a child, per call -------------------------------------------------------------------


def lock_child(protections: Protections) -> None:
    """In a freshly forked child: die with the supervisor, no processes, no
    signals but to itself, no file opened at all."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() == 1:  # the supervisor died before the line above took effect
        os._exit(1)
    if protections.landlock_abi >= 1:
        # No file at all: everything a method may import is loaded already.
        # From ABI 6 the new domain also cannot signal the supervisor.
        restrict_filesystem(protections.landlock_abi, [])
    if protections.seccomp:
        _child_filter().load()


def set_call_limits(cpu_seconds: int, memory_bytes: int) -> None:
    """Soft and hard alike: without CAP_SYS_RESOURCE a method can lower them, never raise them."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
