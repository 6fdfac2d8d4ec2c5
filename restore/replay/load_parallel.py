"""Load a dump with several clients at once, one table per client at a time.

The dump's layout (restore.replay.dump_split) says which bytes are whose: the header's session
SETs go first to every client; CREATE DATABASE runs once; each table's section runs in a client
of its own, `jobs` at a time, largest first (so the longest table does not start last); then
whatever is left (views, triggers, routines, events) runs in one client, in dump order. Each
table is recorded as finished by the client that loaded it (restore.replay.load_progress), so a
killed load run again loads only the tables without a record.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from restore.errors import SnapshotError
from restore.mysql.dsn import Dsn
from restore.mysql.quote import quote_ident, quote_qualified
from restore.replay import load_progress
from restore.replay.dump_split import Layout, Section
from restore.replay.load_client import Client, dump_line, lines_out

_TICK = 0.25   # seconds between progress reports


@dataclass
class LoadReport:
    """How a snapshot was loaded: in parallel or by one client (and why), which tables."""
    jobs: int
    parallel: bool
    loaded: list[str] = field(default_factory=list)     # "db.table", loaded by this call
    skipped: list[str] = field(default_factory=list)    # recorded as loaded by an earlier, killed call
    reason: str = ""                                    # why one client loaded it
    split_seconds: float = 0.0                          # reading the dump once to find its tables


class _Failure(Exception):
    def __init__(self, what: str, err: str, line: int | None) -> None:
        super().__init__(what)
        self.what, self.err, self.line = what, err, line


class ParallelLoad:
    def __init__(self, dsn: Dsn, path: str, layout: Layout, *, jobs: int, init: Sequence[str],
                 key: str, named_db: str | None, progress: Callable[[int, int], None] | None) -> None:
        self.dsn, self.path, self.layout, self.jobs, self.init = dsn, path, layout, jobs, list(init)
        self.key, self.named_db, self.progress = key, named_db, progress
        self.done = 0
        self._reported = -1
        self._lock = threading.Lock()
        self._clients: set[Client] = set()
        self._failure: _Failure | None = None
        self._stop = threading.Event()
        with open(path, "rb") as fh:   # a few lines of SETs (a --master-data=1 CHANGE MASTER, GTID_PURGED left out)
            self.header = b"".join(line for _, line in lines_out(fh, *layout.header, muted=layout.replication))

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> LoadReport:
        report = LoadReport(self.jobs, True)
        with self.dsn.connect() as conn:
            load_progress.ensure(conn)
            finished = load_progress.finished(conn, self.key)
            complete = ("", "") in finished
            resuming = bool(finished)
            finished &= _existing(conn, finished)   # a record whose table is gone (set aside since) is not trusted
        todo = [s for s in self.layout.sections if (s.db, s.table) not in finished]
        report.skipped = [f"{s.db}.{s.table}" for s in self.layout.sections if (s.db, s.table) in finished]
        if complete and not todo:
            self.done = self.layout.size
            self._report()
            return report
        self._count(self.layout.size - sum(s.size for s in todo) - self._serial_bytes())
        self._serial(self._databases(resuming), "the CREATE DATABASE statements", count_header=True)
        self._parallel(sorted(todo, key=lambda s: -s.size), resuming)
        report.loaded = [f"{s.db}.{s.table}" for s in todo]
        if resuming:
            with self.dsn.connect() as conn:
                _drop_triggers(conn, [s for s in self.layout.sections if s not in todo])
        self._serial(self.layout.after, "the views, triggers, routines and events after the tables")
        with self.dsn.connect() as conn:
            load_progress.record_snapshot(conn, self.key)
        self.done = self.layout.size   # a skipped DROP DATABASE was never counted
        self._report()
        return report

    def _serial_bytes(self) -> int:
        return (self.layout.header[1] - self.layout.header[0] + sum(e - s for s, e, _ in self.layout.databases)
                + sum(e - s for s, e in self.layout.after))

    def _databases(self, resuming: bool) -> list[tuple[int, int]]:
        # A resumed load keeps what the killed one loaded: no DROP DATABASE this time.
        return [(s, e) for s, e, drop in self.layout.databases if not (drop and resuming)]

    def _serial(self, ranges: list[tuple[int, int]], what: str, *, count_header: bool = False) -> None:
        """The header, then `ranges` of the file, in one client, line by line."""
        client = Client(self.dsn, self.init)
        with open(self.path, "rb") as fh:
            client.send(self.header)
            if count_header:
                self._count(self.layout.header[1] - self.layout.header[0])
            if self.named_db:
                name = quote_ident(self.named_db)
                client.send(f"CREATE DATABASE IF NOT EXISTS {name};\nUSE {name};\n".encode())
            sent: list[tuple[int, int]] = []    # (lines sent before it, its start) per range
            for start, end in ranges:
                sent.append((client.lines, start))
                client.send_lines(fh, start, end, self._count, muted=self.layout.replication)
        code, err = client.finish()
        if code != 0:
            line = self._line_in_dump(err, sent)
            at = f" at line {line} of the dump" if line else ""
            raise SnapshotError(f"loading {what} of {self.path}{at} into {self.dsn.redacted()} failed: {err}",
                                where=f"{self.path}:{line}" if line else self.path,
                                hint="the client's message names the statement at fault; fix the target or "
                                     "the dump and run again: the tables already loaded are kept")

    def _line_in_dump(self, err: str, sent: list[tuple[int, int]]) -> int | None:
        """The dump's line for the client's "at line N" in a run fed `sent` ranges. Only on an
        error: counting the lines before a range reads the file up to it."""
        for before, start in reversed(sent):
            if dump_line(err, before, 1) is None:
                continue   # the error is in an earlier range
            with open(self.path, "rb") as fh:
                return dump_line(err, before, 1 + sum(chunk.count(b"\n") for chunk in _chunks(fh, start)))
        return None

    def _parallel(self, todo: list[Section], resuming: bool) -> None:
        queue = list(todo)
        threads = [threading.Thread(target=self._worker, args=(queue, resuming), name=f"load-{i}", daemon=True)
                   for i in range(min(self.jobs, len(todo)))]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(_TICK)
            self._report()
            if self._failure is not None:
                self._stop.set()
                with self._lock:
                    for client in list(self._clients):
                        client.kill()   # their tables have no record: a rerun loads them again
        for t in threads:
            t.join()
        f = self._failure
        if f is not None:
            at = f" at line {f.line} of the dump" if f.line else ""
            raise SnapshotError(f"loading {f.what} from {self.path}{at} into {self.dsn.redacted()} failed: {f.err}",
                                where=f"{self.path}:{f.line}" if f.line else self.path,
                                hint="fix the target or the dump and run the same command again: the tables "
                                     "already loaded are kept, the others are loaded again")

    def _worker(self, queue: list[Section], resuming: bool) -> None:
        """Runs sections in one client, one after the other, as the dump's single client would:
        a client per table would cost a process start per table, and dumps hold thousands."""
        client: Client | None = None
        fed: list[tuple[int, int, Section]] = []   # (lines sent before its prefix, before its first line, section)
        try:
            with open(self.path, "rb") as fh:
                while not self._stop.is_set() and not (client and client.broken):
                    with self._lock:
                        if not queue:
                            break
                        section = queue.pop(0)
                        if client is None:
                            client = Client(self.dsn, self.init)
                            self._clients.add(client)
                            client.send(self.header)
                    before_prefix = client.lines
                    # A table may now be created before the table its foreign keys name (a --compact
                    # dump does not turn the checks off itself): the dump's data is consistent as a whole.
                    prefix = f"SET FOREIGN_KEY_CHECKS=0;\nUSE {quote_ident(section.db)};\n"
                    if resuming and not section.drops:   # a half-loaded table from the killed run
                        prefix += f"DROP TABLE IF EXISTS {quote_ident(section.table)};\n"
                    client.send(prefix.encode())
                    fed.append((before_prefix, client.lines, section))
                    client.send_raw_muted(fh, section.start, section.end, section.locks, self._count)
                    client.send(load_progress.record_sql(self.key, section.db, section.table))
        finally:
            if client is not None:
                code, err = client.finish()
                with self._lock:
                    self._clients.discard(client)
                if code != 0 and not self._stop.is_set():
                    self._failure = self._failure or _culprit(err, fed)
                    self._stop.set()

    # -- progress ------------------------------------------------------------------------------
    def _count(self, n: int) -> None:
        with self._lock:
            self.done += n

    def _report(self) -> None:
        done = min(self.done, self.layout.size)
        if self.progress and done != self._reported:
            self._reported = done
            self.progress(done, self.layout.size)


def _culprit(err: str, fed: list[tuple[int, int, Section]]) -> _Failure:
    """The section a client's error belongs to, and the dump's line it names, from the lines
    the client had been sent before each section."""
    named = dump_line(err, 0, 1) is not None   # "at line N": else (a lost connection) the last section
    for before_prefix, before, section in reversed(fed):
        if not named or dump_line(err, before_prefix, 1) is not None:
            return _Failure(f"table {section.db}.{section.table}", err, dump_line(err, before, section.line))
    return _Failure("the dump's session header", err, None)


def _chunks(fh, size: int):
    while size > 0:
        chunk = fh.read(min(size, 1 << 20))
        if not chunk:
            return
        size -= len(chunk)
        yield chunk


def _existing(conn, tables: set[tuple[str, str]]) -> set[tuple[str, str]]:
    dbs = sorted({db for db, _ in tables if db})
    if not dbs:
        return set()
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ("
                    + ",".join(["%s"] * len(dbs)) + ") AND TABLE_TYPE='BASE TABLE'", dbs)
        return {(r[0], r[1]) for r in cur.fetchall()}


def _drop_triggers(conn, kept: list[Section]) -> None:
    """A resumed load runs the part after the tables again, whose CREATE TRIGGERs would fail on
    the triggers the killed run created on the tables it kept. (A table loaded again lost its
    triggers with its DROP TABLE.)"""
    names = {(s.db, s.table) for s in kept}
    if not names:
        return
    with conn.cursor() as cur:
        cur.execute("SELECT TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_SCHEMA, EVENT_OBJECT_TABLE "
                    "FROM information_schema.TRIGGERS")
        for schema, name, db, table in cur.fetchall():
            if (db, table) in names:
                cur.execute(f"DROP TRIGGER IF EXISTS {quote_qualified(schema, name)}")
