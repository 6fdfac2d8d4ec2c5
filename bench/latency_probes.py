"""Where the time and the CPU went during an alert-latency run (bench/alert_latency.py): CPU and
run-queue readings from /proc, the binlog the watcher had not read yet at a commit (Tap), and
cProfile of a thread. Imported by alert_latency.py, which puts the checkout on sys.path first."""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from restore.live.watcher import Watcher


def _stat_cpu(stat: Path) -> float | None:
    """CPU seconds (user+system) in a /proc .../stat file (None when it is gone)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(native_id: int | None) -> float | None:
    """CPU seconds (user+system) a thread of this process has used, from /proc."""
    return None if native_id is None else _stat_cpu(Path(f"/proc/self/task/{native_id}/stat"))


def proc_cpu(pid: int | None) -> float | None:
    """CPU seconds (user+system) a process has used, from /proc."""
    return None if pid is None else _stat_cpu(Path(f"/proc/{pid}/stat"))


def machine_busy() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs, from /proc/stat (steal: the hypervisor ran someone else)."""
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    steal = vals[7] if len(vals) > 7 else 0
    return sum(vals) - idle - steal, steal, sum(vals)


def queued_bytes(watcher: Watcher) -> int | None:
    """Bytes the server has sent to the watcher's connection that sit unread in the kernel (FIONREAD)."""
    import fcntl
    import termios
    try:
        sock = watcher._source.connection._sock
        buf = bytearray(4)
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
        return int.from_bytes(buf, sys.byteorder)
    except Exception:
        return None


def sched_wait(native_id: int | None) -> float | None:
    """Seconds a thread of this process has spent runnable but waiting for a CPU (/proc schedstat)."""
    if native_id is None:
        return None
    try:
        return int(Path(f"/proc/self/task/{native_id}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def proc_sched_wait(pid: int | None) -> float | None:
    """Seconds all threads of a process have spent runnable but waiting for a CPU (/proc schedstat)."""
    if pid is None:
        return None
    try:
        return sum(int((t / "schedstat").read_text().split()[1]) for t in Path(f"/proc/{pid}/task").iterdir()) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class Profiled(threading.Thread):
    """A thread whose target runs under cProfile (only with --profile: it slows the thread down)."""

    def __init__(self, target, name: str, enabled: bool) -> None:
        super().__init__(target=self._run, name=name, daemon=True)
        self._target_fn, self.enabled, self.profile = target, enabled, cProfile.Profile() if enabled else None

    def _run(self) -> None:
        if self.profile is None:
            self._target_fn()
            return
        self.profile.enable()
        try:
            self._target_fn()
        finally:
            self.profile.disable()


class Tap:
    """Installs a ServerBinlogs subclass in the watcher that remembers where its reader is.

    One attribute store per event (~0.1 us): lets the bench see, at each destructive commit, how many
    binlog bytes the watcher had not read yet (its backlog).
    """

    def __init__(self) -> None:
        import restore.live.follow as follow_mod
        from restore.binlog.server import ServerBinlogs
        self.mod, self.real = follow_mod, follow_mod.ServerBinlogs
        self.where: tuple[str, int] | None = None
        tap = self

        class Tapped(ServerBinlogs):
            def events(self, *a, **kw):
                for ev in super().events(*a, **kw):
                    tap.where = (ev.file, ev.pos + len(ev.data))
                    yield ev
        follow_mod.ServerBinlogs = Tapped

    def close(self) -> None:
        self.mod.ServerBinlogs = self.real


def profile_text(profile: cProfile.Profile | None, top: int) -> str:
    if profile is None:
        return ""
    buf = io.StringIO()
    pstats.Stats(profile, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()
