"""Child processes that must not outlive us (Linux PR_SET_PDEATHSIG; a no-op elsewhere), and
finding and killing the ones that did (what a killed restore-bot left running in its temp dir)."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psutil


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `sig` when the thread that started it ends."""
    def arm() -> None:
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    return arm


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # gone, or not ours to look at
        return False


def using_path(path: str) -> list[int]:
    """Pids of the processes (other than us) with `path` or a file below it among their arguments."""
    below = path.rstrip("/") + "/"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or ()  # None: a zombie, or a process we may not look at
        if proc.pid != os.getpid() and any(arg.rstrip("/") == below[:-1] or below in arg for arg in args):
            found.append(proc.pid)
    return found


def kill_using(path: str, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process using `path` (see using_path) and wait until they are gone."""
    pids = using_path(path)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids
