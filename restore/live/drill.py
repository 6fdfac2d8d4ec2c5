"""The backup drill (`/restore drill`, run by the worker on demand and every [keep] drill_every_hours).

It restores the newest base snapshot plus the binlog archive into a throwaway sandbox and
checks the result in ways that fail when the backups are bad: the dump is complete and loads,
the archive reads end to end (no missing file, every event CRC-checked, nothing skipped), row
counts equal what dump plus binlog predict, and tables match the live source's CHECKSUM TABLE
at the archive's end. Why: backups are only known to work once they have been restored; a
damaged dump or a hole in the archive must show up here, on a quiet day, not during an
incident. What each check catches is in `BackupDrill`'s docstring.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from restore.binlog.server import ServerBinlogs
from restore.binlog.source import open_binlogs
from restore.binlog.walker import QueryStep, RowsStep, Walker
from restore.errors import ApplyError, BinlogError, PlanError, RestoreError, SnapshotError, VerifyError
from restore.hooks import Hooks
from restore.live.backups import dump_files
from restore.mysql.dsn import Dsn
from restore.plan.physical_base import sandbox_for
from restore.plan.plan import Plan
from restore.plan.planner import make_plan
from restore.plan.snapshot import read_snapshots
from restore.plan.spec import coord_key
from restore.replay.runner import restore
from restore.replay.verify import table_checksums


class DrillFailed(RestoreError):
    """The backups would not restore what the source holds: the message names the file and position."""


# What a drill reports as FAILED: the backups are at fault. Anything else (the job aborted, the
# sandbox would not start, no client binary: TargetError) stays what it is: it says nothing about the backups.
_BACKUP_FAULTS = (SnapshotError, BinlogError, PlanError, ApplyError, VerifyError)
_AGAIN = "then run /restore drill again"


def newest_snapshot(directory: str | os.PathLike) -> Path | None:
    """The newest snapshot in the backup directory, dump or physical backup (by the time it was
    written, as `/backup list` orders; a half-written physical backup is not one).

    Not `list_backups()`: that parses every dump kept, and the drill reads only the one it
    restores. A damaged newest dump is not passed over for an older one: archive retention
    guarantees only the binlogs the newest needs, so it is the one a restore starts from, and
    the drill must fail on it, naming it.
    """
    dumps = dump_files(directory)
    return dumps[0] if dumps else None


@dataclass
class SourceState:
    """The source's tables as they were at `at`, the archive's end, as far as that can be known.

    The source has moved on since `at`; its tables that no binlog event from `at` to the
    source's end wrote still hold exactly what they held at `at`, so their CHECKSUM TABLE is
    what a restore to `at` must give. `changed` holds the others, lower-cased ("db.table", or
    "db.*" when a statement's effect cannot be pinned to tables).
    """
    at: tuple[str, int]
    checksums: dict[str, tuple[int, int | None]]
    changed: set[str]
    version: str

    def comparable(self, name: str) -> bool:
        low = name.lower()
        return low not in self.changed and low.split(".", 1)[0] + ".*" not in self.changed


def read_source_state(source: Dsn, at: tuple[str, int], databases: list[str]) -> SourceState:
    """Checksums of the source's tables, then which of them changed after `at` (nothing is locked).

    The order matters: the binlog is read after the checksums, so every change the checksums
    saw is in what is read (a transactional change is logged before it becomes visible). A
    MyISAM/Aria change is visible before it is logged, at its statement's end: one still running
    when the read ends would be missed, and its table reported as differing — a false alarm,
    never a false pass. CHECKSUM TABLE reads every row: on a big source, drill at a quiet hour.
    """
    conn = source.connect()
    try:
        checksums = table_checksums(conn, databases)
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = str(cur.fetchone()[0])
            # Statement-format DML on a database with triggers or views may write tables it does
            # not name: such a statement counts as changing the whole database.
            cur.execute("SELECT TRIGGER_SCHEMA FROM information_schema.TRIGGERS "
                        "UNION SELECT TABLE_SCHEMA FROM information_schema.VIEWS")
            opaque = {r[0] for r in cur.fetchall()} & set(databases)
    finally:
        conn.close()
    return SourceState(at, checksums, changed_after(ServerBinlogs(source), at, set(databases), opaque), version)


def changed_after(binlogs, at: tuple[str, int], databases: set[str],
                  opaque: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Lower-cased "db.table" (or "db.*") of `databases` written by an event from `at` to the binlog's end."""
    changed: set[str] = set()
    for step in Walker(binlogs.events(*at)).steps():
        if isinstance(step, RowsStep):
            if step.tmap.db in databases:
                changed.add(f"{step.tmap.db}.{step.tmap.table}".lower())
        elif isinstance(step, QueryStep):
            info = step.info
            if info.temporary:
                continue
            # A statement we cannot attribute counts against its default database, as Scope replays it.
            refs = [(r.db, r.name) for r in info.written] or [(step.query.db or None, None)]
            for db, table in refs:
                if db in databases:
                    whole = table is None or (info.kind == "dml" and db in opaque)
                    changed.add(f"{db}.{'*' if whole else table}".lower())
    return changed


@dataclass
class ChecksumComparison:
    at: str
    equal: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)     # changed on the source after `at`: not comparable
    differ: list[str] = field(default_factory=list)
    not_compared: str = ""                               # why nothing was compared, when so

    def to_dict(self) -> dict:
        return {"at": self.at, "equal": self.equal, "changed_on_source_after": self.changed,
                "differ": self.differ, "not_compared": self.not_compared}


def compare_with_source(restored: dict[str, tuple[int, int | None]], state: SourceState) -> ChecksumComparison:
    out = ChecksumComparison(f"{state.at[0]}:{state.at[1]}")
    for name in sorted(set(restored) | set(state.checksums)):
        mine, theirs = restored.get(name), state.checksums.get(name)
        if not state.comparable(name):
            out.changed.append(name)
        elif mine == theirs:
            out.equal.append(name)
        elif mine is None:
            out.differ.append(f"{name} is on the source but not in the restore")
        elif theirs is None:
            out.differ.append(f"{name} is in the restore but not on the source")
        else:
            out.differ.append(f"{name}: restored {mine[0]} rows, checksum {mine[1]}; "
                              f"the source {theirs[0]} rows, checksum {theirs[1]}")
    return out


class BackupDrill:
    """The newest snapshot plus the binlog archive, restored into a throwaway sandbox and checked.

    A drill passes only when all of these hold, and reports the numbers of each:
    1. the snapshot is a complete dump with binlog coordinates, and loads (a physical backup: it is
       whole, has its binlog-info file, and its copy prepares and starts);
    2. the archive is read from the snapshot's position to its end: no file missing, every event
       CRC-checked and framed, nothing skipped; the replay reaches the last complete transaction;
    3. every table's row count equals what the dump plus the binlog predict (where the binlog
       says: statement-format changes do not count rows);
    4. every table no event changed after the archive's end has the source's CHECKSUM TABLE.
    4 is what catches a dump or archive that is readable but wrong (a changed value, a change
    logged in no archived file): 1-3 compare the backups only with themselves. Checksums
    recorded at backup time would need no source, but they describe the dump's moment, not the
    archive's end, and are only as good as the dump they came with; the live source is the one
    witness the backups can be checked against. Without it (no [watch] source, unreachable),
    4 is reported as not done, never as passed.
    """

    def __init__(self, snapshot: Path, archive: str | os.PathLike, source: Dsn | None, *,
                 hooks: Hooks, interrupt: Callable[[], None] | None = None) -> None:
        self.snapshot, self.archive, self.source = snapshot, Path(archive), source
        self.hooks, self.interrupt = hooks, interrupt
        self.head = f"Drill from {snapshot.name} + archive"

    def _check(self, what: str, fn: Callable, next_step: str):
        try:
            return fn()
        except _BACKUP_FAULTS as exc:
            # str(exc) prefixes FILE:POS unless the message has it verbatim; "X: CRC32 mismatch ...
            # at position N" names both in words already.
            file, _, pos = exc.where.partition(":")
            detail = exc.message if file in exc.message and pos in exc.message else str(exc)
            raise DrillFailed(f"{self.head}: FAILED — {what}: {detail}", where=exc.where,
                              hint=f"{exc.hint.rstrip('.')}. {next_step}" if exc.hint else next_step) from exc

    def run(self) -> dict:
        """The drill's report and the restore's; raises DrillFailed when the backups would not restore."""
        snapshots = self._check(f"the snapshot {self.snapshot.name}", lambda: read_snapshots([str(self.snapshot)]),
                                f"This snapshot cannot be restored: take a new one with /backup now, {_AGAIN}")
        snap = snapshots[0]
        start = f"{snap.binlog_file}:{snap.binlog_pos}" if snap.binlog_file else f"GTID {snap.gtid}"
        archive_fault = (f"Restores from {self.snapshot.name} cannot get past this point: copy the file again from "
                         f"the server if it still has it, or take a new snapshot (/backup now) so that restores start "
                         f"after it; check the archiver, {_AGAIN}")
        what = f"the archive {self.archive}, replayed from the snapshot's position {start}"
        binlogs = self._check(what, lambda: open_binlogs(str(self.archive)), archive_fault)
        plan = self._check(what, lambda: make_plan(snapshots, binlogs, stop="end", hooks=self.hooks,
                                                          interrupt=self.interrupt), archive_fault)
        archive = self._archive_read(plan, binlogs)
        end = f"{plan.end[0]}:{plan.end[1]}"
        self.hooks.message(f"✓ archive read: {archive['files']} file(s) from {start} to {archive['archive_end']}, "
                           f"every event CRC-checked; {plan.transactions} transactions to replay up to {end}")
        state, why_not = self._source_state(plan)
        # A physical backup: the sandbox starts on a prepared copy of it (prepare is part of the drill).
        with sandbox_for(snapshots) as box:
            self.hooks.message(f"drill: a throwaway sandbox server on port {box.port}")
            result = self._check("the restore into a sandbox",
                                 lambda: restore(plan, snapshots, binlogs, box.dsn, existing="drop",
                                                        hooks=self.hooks, interrupt=self.interrupt),
                                 f"The drill ran in a throwaway sandbox, nothing else was touched; {_AGAIN}")
            sandbox_version = _version(box.dsn)
        tables = result.verification.tables
        restored = {name: (t.rows, t.checksum) for name, t in tables.items()}
        if state is None:
            checks = ChecksumComparison(end, not_compared=why_not)
        else:
            checks = compare_with_source(restored, state)
            if checks.differ:
                self._differs(checks, state.version, sandbox_version)
        counted = sorted(name for name, t in tables.items() if t.predicted is not None)
        report = {"verdict": "OK", "snapshot": str(self.snapshot), "start": start, "end": end,
                  "archive": archive, "transactions": plan.transactions, "skipped": len(plan.skips),
                  "rows_predicted": counted, "checksums": checks.to_dict(), "notes": plan.warnings}
        return {"drill": report, "restore": result.to_dict()}   # in words: handlers.presenter.results

    def _archive_read(self, plan: Plan, binlogs) -> dict:
        """Where the archive ends; a snapshot newer than the archive's end fails: nothing replays it."""
        files = binlogs.files()
        last = files[-1]
        size = (self.archive / last).stat().st_size
        first = plan.replay_from[0]
        if coord_key(*plan.replay_from) > coord_key(last, size):
            raise DrillFailed(
                f"{self.head}: FAILED — the archive {self.archive} ends at {last}:{size}, before the snapshot's "
                f"position {first}:{plan.replay_from[1]}: nothing after the snapshot is archived",
                where=f"{last}:{size}",
                hint=f"the archiver is behind or stopped: check `restore-bot archive` / [keep] archive_dir, {_AGAIN}")
        if plan.stop is not None or plan.skips:  # stop="end" and no --skip: neither can happen; guard the claim
            raise DrillFailed(f"{self.head}: FAILED — the plan stops or skips transactions ({plan.stop_spec})",
                              where=f"{plan.end[0]}:{plan.end[1]}", hint=f"report this as a bug, {_AGAIN}")
        return {"files": len(files) - files.index(first) if first in files else len(files),
                "archive_end": f"{last}:{size}"}

    def _source_state(self, plan: Plan) -> tuple[SourceState | None, str]:
        if self.source is None:
            return None, "no [watch] source to compare with"
        try:
            state = read_source_state(self.source, plan.end, sorted(plan.databases))
        except (pymysql.err.MySQLError, OSError, RestoreError) as exc:  # RestoreError: cannot connect, binlog purged
            # Not the backups' fault: the drill still reports what it verified, and says this was not.
            why = f"the source {self.source.redacted()} could not be read at {plan.end[0]}:{plan.end[1]}: {exc}"
            self.hooks.message(f"⚠ checksums not compared: {why}")
            return None, why
        self.hooks.message(f"source: {len(state.checksums)} tables checksummed; "
                           f"{len(state.changed)} changed after {plan.end[0]}:{plan.end[1]}")
        return state, ""

    def _differs(self, checks: ChecksumComparison, source_version: str, sandbox_version: str) -> None:
        versions = ("" if source_version == sandbox_version else
                    f"; the source runs {source_version} and the sandbox {sandbox_version}: if only the checksums "
                    "differ (the row counts match), compare the rows themselves, CHECKSUM TABLE can differ across versions")
        raise DrillFailed(
            f"{self.head}: FAILED — {len(checks.differ)} table(s) differ from the source at binlog {checks.at}, "
            f"and no change to them was logged after that position: {'; '.join(checks.differ)}",
            where=checks.at,
            hint=(f"the snapshot {self.snapshot.name} or an archived binlog before {checks.at} does not hold what the "
                  "source holds (a changed or incomplete dump, a damaged archive, or changes made with sql_log_bin=0). "
                  f"Take a new snapshot with /backup now and {_AGAIN.removeprefix('then ')}{versions}"))


def _version(dsn: Dsn) -> str:
    conn = dsn.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return str(cur.fetchone()[0])
    finally:
        conn.close()
