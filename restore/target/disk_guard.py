"""Keeps a restore from filling the target's disk, and from hanging once it is full.

Before a restore into a server on this machine, the free space where its data and its binlog
live is compared with what the restore will write. During the restore a watcher on a connection
of its own looks for sessions the server holds "Waiting for someone to free space" (MariaDB) or
"Waiting for disk space" (MySQL): a server with a full disk does not fail the write, it waits
(60 s retries, for ever), and everything else on the host starts failing with error 28. The
watcher then kills the restore's own sessions, and the restore stops with an error that says so;
what was committed stays, and the same command resumes from the checkpoint once there is space.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import pymysql

from restore.errors import TargetError
from restore.mysql.dsn import Dsn

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_WAITING = "(STATE LIKE '%free space%' OR STATE LIKE '%disk space%')"


def is_local(dsn: Dsn) -> bool:
    return bool(dsn.unix_socket) or dsn.host in LOCAL_HOSTS


def range_bytes(source, start: tuple[str, int], end: tuple[str, int]) -> int | None:
    """Bytes of binlog from `start` up to `end`, or None when the source cannot tell."""
    try:
        if hasattr(source, "binary_logs"):
            sizes = dict(source.binary_logs())
        else:
            sizes = {name: (source.path / name).stat().st_size for name in source.files()}
    except Exception:  # an estimate only: a source that cannot list its files is read later anyway
        return None
    names = sorted(n for n in sizes if start[0] <= n <= end[0])
    if not names:
        return None
    total = sum(sizes[n] for n in names)
    return max(0, total - start[1] - (sizes[end[0]] - end[1] if end[0] in sizes else 0))


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


@dataclass
class SpaceCheck:
    checked: bool
    detail: str


def check_free_space(conn, dsn: Dsn, *, load_bytes: int, replay_bytes: int | None,
                     binlog_logged: bool) -> SpaceCheck:
    """Refuse a restore whose data or binlog would not fit on the target's disk (local targets only)."""
    if not is_local(dsn):
        return SpaceCheck(False, f"free space on {dsn.host} not checked (not this machine); "
                                 "a full disk is still detected while the restore runs")
    with conn.cursor() as cur:
        cur.execute("SELECT @@datadir, IF(@@log_bin, @@log_bin_basename, NULL)")
        datadir, binlog_base = cur.fetchone()
    replay = replay_bytes or 0
    needs: list[tuple[str, int, str]] = [(datadir, load_bytes + replay, "data")]
    if binlog_base and binlog_logged:
        # The binlog receives the dumps' rows and the replay's events (at most twice their size).
        needs.append((os.path.dirname(binlog_base) or datadir, load_bytes + 2 * replay, "binlog"))
    per_device: dict[int, list] = {}
    for path, need, what in needs:
        if not os.path.isdir(path):
            return SpaceCheck(False, f"free space not checked: {path} is not on this machine")
        per_device.setdefault(os.stat(path).st_dev, []).append((path, need, what))
    details = []
    for entries in per_device.values():
        path = entries[0][0]
        st = os.statvfs(path)
        free = st.f_bavail * st.f_frsize
        need = sum(n for _, n, _ in entries)
        what = " and ".join(w for _, _, w in entries)
        details.append(f"{path}: {_gib(free)} free for about {_gib(need)} of {what}")
        if free < need:
            raise TargetError(
                f"not enough disk space on the target for this restore: {path} has {_gib(free)} free, the restore "
                f"writes about {_gib(need)} there ({what}: {_gib(load_bytes)} of dumps"
                f"{f', {_gib(replay)} of binlog to replay' if replay else ''})",
                where=path,
                hint="free space there (on a binlog-enabled target, PURGE BINARY LOGS what its replicas no longer "
                     "need), or keep the replay out of the target's binlog with --no-target-binlog if no replica "
                     "needs it; --skip-space-check runs anyway")
    return SpaceCheck(True, "; ".join(details))


class DiskFullWatch:
    """While open, stops the restore's sessions when the target's server waits for disk space.

    `sessions` returns the connection ids that belong to the restore right now (the replay's);
    other waiting sessions of the restore's user (the dump loader's client) are stopped too."""

    def __init__(self, dsn: Dsn, sessions, *, interval: float = 0.5) -> None:
        self.dsn = dsn
        self.sessions = sessions
        self.interval = interval
        self.tripped: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "DiskFullWatch":
        try:
            self._conn = self.dsn.connect()
        except Exception:  # the restore's own connection reports an unreachable target
            return self
        self._thread = threading.Thread(target=self._run, name="restore-disk-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._conn.close()

    def error(self) -> TargetError:
        return TargetError(
            f"the target's disk is full: {self.tripped}; the restore was stopped instead of waiting. "
            "Everything committed so far is kept",
            hint="free space on the target (on a binlog-enabled target, PURGE BINARY LOGS what its replicas no "
                 "longer need, or use --no-target-binlog if no replica needs the replay), then run the same "
                 "command again: it resumes from the last checkpoint")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self._check():
                    return
            except pymysql.err.MySQLError:
                continue  # the server may be busy or restarting: the restore's own connection will say so

    def _check(self) -> bool:
        with self._conn.cursor() as cur:
            cur.execute(f"SELECT ID, USER, HOST, STATE FROM information_schema.PROCESSLIST WHERE {_WAITING}")
            waiting = cur.fetchall()
            if not waiting:
                return False
            sid, user, host, state = waiting[0]
            self.tripped = f"session {sid} ({user}@{host}) is in state '{state}'"
            ours = set(self.sessions()) | {w[0] for w in waiting if w[1] == self.dsn.user}
            for session in sorted(ours):
                try:
                    cur.execute(f"KILL CONNECTION {int(session)}")
                except pymysql.err.MySQLError:
                    pass  # ended meanwhile
        return True
