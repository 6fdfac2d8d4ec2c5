"""Loads a snapshot (a SQL dump) into the target with the server's own client.

With `jobs` > 1 the dump is split (restore.replay.dump_split) and its tables are loaded by several
clients at once (restore.replay.load_parallel); a dump the splitter does not understand is loaded
by one client, as before, and the caller is told why. Either way the dump is streamed through us
(restore.replay.load_client): never held in memory, replication commands neutralised.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence

from restore.errors import SnapshotError
from restore.mysql.dsn import Dsn
from restore.mysql.quote import quote_ident
from restore.plan.snapshot import Snapshot
from restore.replay import load_progress
from restore.replay.dump_split import Unsplittable, split
from restore.replay.load_client import Client, client_binary, client_options  # noqa: F401  (re-exported)
from restore.replay.load_parallel import LoadReport, ParallelLoad

MAX_JOBS = 8


def default_jobs(dsn: Dsn) -> int:
    """The target's cores, at most MAX_JOBS. MariaDB sizes thread_pool_size to its cores; a
    server without it (MySQL) is taken to have as many as this host."""
    try:
        with dsn.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@thread_pool_size")
            cores = int(cur.fetchone()[0])
    except Exception:   # noqa: BLE001 - MySQL has no such variable: an estimate is all we need
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_JOBS))


def load_snapshot(dsn: Dsn, snap: Snapshot, progress: Callable[[int, int], None] | None = None, *,
                  init: Sequence[str] = (), jobs: int | None = None, resume: str | None = None,
                  message: Callable[[str], None] | None = None) -> LoadReport:
    """`init`: session statements every client runs first (`SET SESSION sql_log_bin=0`).
    `jobs`: clients at once, one table each (None: the target's cores, at most 8; 1: one client).
    `resume`: the key under which finished tables are recorded on the target, so that a killed
    load called again with it loads only the others; the records stay until
    `load_progress.forget(conn, key)`. None: a key of this file's own, forgotten once loaded.
    `message`: told when the dump is loaded by one client although jobs > 1, and why.
    `progress(done, size)`: bytes of the file loaded so far."""
    size = os.path.getsize(snap.path)
    jobs = default_jobs(dsn) if jobs is None else max(1, jobs)
    if jobs == 1:
        _load_single(dsn, snap, progress, init)
        return LoadReport(1, False, reason="one job asked for")
    t0 = time.monotonic()
    try:
        with open(snap.path, "rb") as fh:
            layout = split(fh, snap.named_db)
    except Unsplittable as e:
        reason = f"{snap.path} is loaded by one client, not {jobs}: {e}"
        if message:
            message(reason)
        _load_single(dsn, snap, progress, init)
        return LoadReport(1, False, reason=reason)
    split_seconds = time.monotonic() - t0
    key = resume or _own_key(snap.path)
    report = ParallelLoad(dsn, snap.path, layout, jobs=jobs, init=init, key=key, named_db=snap.named_db,
                          progress=progress).run()
    report.split_seconds = round(split_seconds, 3)
    if resume is None:
        with dsn.connect() as conn:
            load_progress.forget(conn, key)
    if progress:
        progress(size, size)
    return report


def _own_key(path: str) -> str:
    st = os.stat(path)
    ident = f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}"
    return "file:" + hashlib.sha1(ident.encode()).hexdigest()


def _load_single(dsn: Dsn, snap: Snapshot, progress: Callable[[int, int], None] | None,
                 init: Sequence[str]) -> None:
    size = os.path.getsize(snap.path)
    client = Client(dsn, init)
    if snap.named_db:
        name = quote_ident(snap.named_db)
        client.send(f"CREATE DATABASE IF NOT EXISTS {name};\nUSE {name};\n".encode())
    done = 0

    def count(n: int) -> None:
        nonlocal done
        done += n
        if progress and done % (4 << 20) < n:
            progress(done, size)

    with open(snap.path, "rb") as fh:
        client.send_lines(fh, 0, size, count)
    code, err = client.finish()
    if code != 0:
        raise SnapshotError(f"loading {snap.path} into {dsn.redacted()} failed: {err}",
                            where=snap.path,
                            hint="the client's message names the line of the dump at fault; fix the target or the dump and run again")
    if progress:
        progress(size, size)
