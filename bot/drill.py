"""Drills: the whole story on local servers, and the backup drill that proves real backups restore.

`restore-bot drill` (`run`): no accounts, no configuration. A source server with a binlog gets
the club's schema (members, attendance, posts and a wiki in a second database), two dumps taken
at different moments, a day of traffic, then the disaster. The engine plans the restore on its
own and restores into a fresh server acting as production; the result is checked against
checksums taken just before the disaster.

`/restore drill` (`BackupDrill`, run by the worker on demand and every [keep] drill_every_hours):
the newest snapshot plus the binlog archive restored into a throwaway sandbox, and checked in
ways that fail when the backups are bad (see `BackupDrill`).
"""
from __future__ import annotations

import os
import queue
import random
import subprocess
import threading
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
from rich.console import Console

from restore import engine
from restore.binlog_server import ServerBinlogs
from restore.dsn import Dsn
from restore.errors import ApplyError, BinlogError, PlanError, RestoreError, SnapshotError, VerifyError
from restore.hooks import Hooks
from restore.plan import Plan
from restore.sandbox import Sandbox
from restore.spec import coord_key
from restore.verify import table_checksums
from restore.walker import QueryStep, RowsStep, Walker
from restore.watcher import Alert, Watcher

from .alerts import AlertStore
from .config import load_settings
from .jobstore import JobStore

console = Console()

SCHEMA = [
    "CREATE DATABASE homepage CHARACTER SET utf8mb4",
    """CREATE TABLE homepage.members (
        id INT AUTO_INCREMENT PRIMARY KEY, login VARCHAR(32) NOT NULL UNIQUE,
        name VARCHAR(50) NOT NULL, joined DATE NOT NULL, role ENUM('member','admin') DEFAULT 'member')""",
    """CREATE TABLE homepage.attendance (
        id INT AUTO_INCREMENT PRIMARY KEY, member_id INT NOT NULL, day DATE NOT NULL,
        checked_at DATETIME(3) NOT NULL, UNIQUE KEY one_per_day (member_id, day))""",
    """CREATE TABLE homepage.posts (
        id INT AUTO_INCREMENT PRIMARY KEY, author INT NOT NULL, title VARCHAR(200) NOT NULL,
        body TEXT, created TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3))""",
    "CREATE DATABASE wiki CHARACTER SET utf8mb4",
    """CREATE TABLE wiki.pages (
        id INT AUTO_INCREMENT PRIMARY KEY, slug VARCHAR(100) NOT NULL UNIQUE, content MEDIUMTEXT,
        revision INT UNSIGNED NOT NULL DEFAULT 1)""",
]
NAMES = ["김키퍼", "이해커", "박보안", "최리버싱", "정포렌식", "강웹", "조시스템", "윤암호"]


def _dump(src: Sandbox, path: Path, db: str) -> None:
    with open(path, "wb") as fh:
        subprocess.run(["mariadb-dump", *src.client_args(), "--master-data=2", "--gtid",
                        "--single-transaction", "--databases", db], stdout=fh, check=True)


def _traffic(cur, rng: random.Random, rounds: int) -> None:
    for i in range(rounds):
        member = rng.randint(1, len(NAMES))
        cur.execute("INSERT IGNORE INTO homepage.attendance (member_id, day, checked_at) "
                    "VALUES (%s, CURDATE() - INTERVAL %s DAY, NOW(3))", (member, rng.randint(0, 30)))
        if i % 3 == 0:
            cur.execute("INSERT INTO homepage.posts (author, title, body) VALUES (%s, %s, %s)",
                        (member, f"세미나 후기 #{i} 🎉", "오늘 배운 것: binlog 복구 🔥" * rng.randint(1, 5)))
        if i % 5 == 0:
            cur.execute("INSERT INTO wiki.pages (slug, content) VALUES (%s, %s) "
                        "ON DUPLICATE KEY UPDATE content = VALUES(content), revision = revision + 1",
                        (f"page-{rng.randint(1, 40)}", f"위키 문서 {i} ✍️"))
        if i % 17 == 0:
            cur.execute("UPDATE homepage.members SET role = 'admin' WHERE id = %s", (member,))


class _Watching:
    """The watcher on the source, as `serve` runs it, with the alert kept for the console."""

    def __init__(self, src: Sandbox, work: Path) -> None:
        self.store = AlertStore(str(work / "watch.sqlite3"), src.url)
        self.alerts: queue.Queue = queue.Queue()
        self.watcher = Watcher(src.dsn, self.store, self._seen, databases=("homepage", "wiki"))
        self.seen_at = 0.0

    def _seen(self, alert: Alert) -> None:
        self.seen_at = time.time()
        self.alerts.put(alert)

    def __enter__(self) -> "_Watching":
        threading.Thread(target=self.watcher.run_forever, daemon=True).start()
        deadline = time.monotonic() + 10
        while self.store.load() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # connected and streaming from the current end
        return self

    def wait(self, timeout: float = 10.0) -> Alert | None:
        try:
            return self.alerts.get(timeout=timeout)
        except queue.Empty:
            return None

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop()


def _second_operator(prompt: str) -> str:
    """The drill's stand-in for a second person at the approval prompt."""
    console.print(prompt + "second-operator")
    return "second-operator"


def run(rounds: int = 600, seed: int = 7) -> int:
    """Returns 0 when the restored data equals the state just before the disaster."""
    from .console import ConsoleSession, OpenAccess  # here: the console imports the worker, which imports us
    rng = random.Random(seed)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="restore-bot-drill-"))
    with Sandbox(binlog=True, binlog_format="MIXED") as src, Sandbox() as prod:
        console.print(f"[bold]1. source[/] MariaDB with binlog (MIXED) on port {src.port}")
        with src.connect() as conn, conn.cursor() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)
            for i, name in enumerate(NAMES):
                cur.execute("INSERT INTO homepage.members (login, name, joined) VALUES (%s, %s, '2023-03-02')",
                            (f"user{i}", name))
            _traffic(cur, rng, rounds // 3)
            _dump(src, work / "init.sql", "homepage")
            _traffic(cur, rng, rounds // 3)
            _dump(src, work / "init_wiki.sql", "wiki")
            console.print("[bold]2. dumps[/] init.sql and init_wiki.sql taken at different moments")
            _traffic(cur, rng, rounds)
            before = table_checksums(conn, ["homepage", "wiki"])
            with _Watching(src, work) as watching:
                cur.execute("USE wiki")
                sent = time.time()
                cur.execute("DROP DATABASE homepage")
                console.print("[bold red]3. disaster[/] DROP DATABASE homepage (run from another database)")
                alert = watching.wait()
            if alert is None:
                console.print("[red]   the watcher raised no alert within 10 s[/]")
            else:
                console.print(f"   [bold]🚨 alert[/] {alert.reason} at binlog {alert.file}:{alert.pos} "
                              f"(GTID {alert.gtid}) — raised {1000 * (watching.seen_at - sent):.0f} ms after "
                              "the statement was sent")
        with prod.connect() as conn, conn.cursor() as cur:  # production, where the app kept running
            cur.execute("CREATE DATABASE IF NOT EXISTS homepage")
            cur.execute("CREATE TABLE homepage.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member_id INT, day DATE)")
            cur.execute("INSERT INTO homepage.attendance (member_id, day) VALUES (3, CURDATE())")
            console.print("   on production the application kept writing: it recreated attendance and inserted a row")
        # Steps 4-6 go through the console transport, exactly as an operator would type them.
        config = work / "restore-bot.toml"
        config.write_text(
            f'[source]\nsnapshots = ["{work / "init.sql"}", "{work / "init_wiki.sql"}"]\n'
            f'binlogs = "{src.binlog_dir}"\n'
            f'[targets.prod]\ndsn = "mysql://root@127.0.0.1:{prod.port}?unix_socket={prod.socket}"\n'
            f'[store]\npath = "{work / "jobs.sqlite3"}"\n')
        settings = load_settings(str(config), env={})
        session = ConsoleSession(settings, JobStore(settings.store_path), OpenAccess(), user="first-operator",
                                 console=console, ask=_second_operator)
        with session:
            jobs = {}
            for step, line in enumerate(("plan", "stage", "prod"), start=4):
                console.print(f"[bold]{step}. restore> /restore {line}[/]")
                jobs[line] = session.wait(session.run_line(line), timeout=600)
                if jobs[line] is None or jobs[line].state != "succeeded":
                    break
        ok = all(j is not None and j.state == "succeeded" for j in jobs.values()) and len(jobs) == 3
        with prod.connect() as conn:
            after = table_checksums(conn, ["homepage", "wiki"])
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES LIKE '%\\_\\_before\\_%'")
                aside = [r[0] for r in cur.fetchall()]
    same = after == before
    console.print(f"[bold]7. verify[/] {len(after)} tables; CHECKSUM TABLE equals the pre-disaster state: "
                  + ("[green]yes[/]" if same else "[red]NO[/]"))
    for name, (rows, checksum) in sorted(after.items()):
        console.print(f"   {name:24} {rows:6} rows  checksum {checksum}")
    if aside:
        console.print(f"   kept aside on prod (the application's writes after the disaster): {', '.join(aside)}")
    console.print(f"Drill {'[green]succeeded[/]' if same and ok else '[red]failed[/]'} "
                  f"in {time.monotonic() - t0:.1f}s")
    return 0 if same and ok else 1


# -- the backup drill: `/restore drill`, on demand and every [keep] drill_every_hours -----------------

class DrillFailed(RestoreError):
    """The backups would not restore what the source holds: the message names the file and position."""


# What a drill reports as FAILED: the backups are at fault. Anything else (the job aborted, the
# sandbox would not start, no client binary: TargetError) stays what it is: it says nothing about the backups.
_BACKUP_FAULTS = (SnapshotError, BinlogError, PlanError, ApplyError, VerifyError)
_AGAIN = "then run /restore drill again"


def newest_snapshot(directory: str | os.PathLike) -> Path | None:
    """The newest dump in the backup directory (by the time it was written, as `/backup list` orders).

    Not `list_backups()`: that parses every dump kept, so a drill would read them all, and one
    damaged old dump would fail the drill of a good new one.
    """
    d = Path(directory)
    dumps = [p for p in d.glob("*.sql") if p.is_file()] if d.is_dir() else []
    return max(dumps, key=lambda p: p.stat().st_mtime, default=None)


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
    1. the snapshot is a complete dump with binlog coordinates, and loads;
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
        """The drill's report; raises DrillFailed when the backups would not restore."""
        snapshots = self._check(f"the snapshot {self.snapshot.name}", lambda: engine.read_snapshots([str(self.snapshot)]),
                                f"This dump cannot be restored: take a new one with /backup now, {_AGAIN}")
        snap = snapshots[0]
        start = f"{snap.binlog_file}:{snap.binlog_pos}" if snap.binlog_file else f"GTID {snap.gtid}"
        archive_fault = (f"Restores from {self.snapshot.name} cannot get past this point: copy the file again from "
                         f"the server if it still has it, or take a new snapshot (/backup now) so that restores start "
                         f"after it; check the archiver, {_AGAIN}")
        what = f"the archive {self.archive}, replayed from the snapshot's position {start}"
        binlogs = self._check(what, lambda: engine.open_binlogs(str(self.archive)), archive_fault)
        plan = self._check(what, lambda: engine.make_plan(snapshots, binlogs, stop="end", hooks=self.hooks,
                                                          interrupt=self.interrupt), archive_fault)
        archive = self._archive_read(plan, binlogs)
        end = f"{plan.end[0]}:{plan.end[1]}"
        self.hooks.message(f"✓ archive read: {archive['files']} file(s) from {start} to {archive['archive_end']}, "
                           f"every event CRC-checked; {plan.transactions} transactions to replay up to {end}")
        state, why_not = self._source_state(plan)
        with Sandbox() as box:
            self.hooks.message(f"drill: a throwaway sandbox server on port {box.port}")
            result = self._check("the restore into a sandbox",
                                 lambda: engine.restore(plan, snapshots, binlogs, box.dsn, existing="drop",
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
        return {"summary": self._summary(plan, start, archive, tables, counted, checks), "drill": report,
                "restore": result.to_dict()}

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

    def _summary(self, plan: Plan, start: str, archive: dict, tables: dict, counted: list[str],
                 checks: ChecksumComparison) -> str:
        def listing(names: list[str]) -> str:
            return ", ".join(f"{n} {tables[n].rows} rows" if n in tables else n for n in names[:12]) + \
                (f" and {len(names) - 12} more" if len(names) > 12 else "")
        end = f"{plan.end[0]}:{plan.end[1]}"
        lines = [f"{self.head}: OK — restored into a sandbox and verified:",
                 f"• archive: {archive['files']} file(s) read from {start} to {archive['archive_end']}, no file missing, "
                 f"every event CRC-checked; {plan.transactions} transactions replayed up to {end}, none skipped",
                 f"• rows: {len(counted)} of {len(tables)} tables hold the row count the dump plus binlog predict"
                 + (f" ({listing(counted)})" if counted else "")
                 + (f"; {len(tables) - len(counted)} changed by statement-format DML, uncounted" if len(counted) < len(tables) else "")]
        if checks.not_compared:
            lines.append(f"• checksums: NOT compared: {checks.not_compared}")
        else:
            total = len(checks.equal) + len(checks.changed)
            lines.append(f"• checksums: {len(checks.equal)} of {total} tables equal the source's CHECKSUM TABLE at {checks.at}"
                         + (f" ({listing(checks.equal)})" if checks.equal else "")
                         + (f"; {len(checks.changed)} changed on the source since, not comparable ({listing(checks.changed)})"
                            if checks.changed else ""))
        lines += [f"• note: {w}" for w in plan.warnings]
        return "\n".join(lines)


def _version(dsn: Dsn) -> str:
    conn = dsn.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return str(cur.fetchone()[0])
    finally:
        conn.close()
