"""The bot's SQLite file before Alembic: its schema as numbered with `PRAGMA user_version` (0-2).

The stores open any backend through handlers/store.py, whose schema is Alembic's
(handlers/store_migrations). A file of an earlier release is first brought to user_version 2 here
(`convert_legacy`), the layout Alembic's revision 0001 stands for; handlers/store.py then stamps it
0001, upgrades it, and sets user_version to ALEMBIC_VERSION, so a restore-bot of before Alembic
refuses the file rather than writing to tables it does not know.

Every migration after the file's version runs, in order, in one transaction with the version bump,
so a process killed half-way leaves the file at its old version and the next open runs the same
steps again. A file written by a newer restore-bot (a version this one does not know) is refused.
"""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Callable

from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from restore.errors import RestoreError

log = logging.getLogger("restore-handlers.store")


class StoreFileError(RestoreError):
    """The store cannot be used by this restore-bot: the message says why, the hint what to do."""


# -- the layouts --------------------------------------------------------------------------------------
# Each version's DDL is written out in full, also where it repeats the one before: a migration is
# history and must never change when a later version changes a table.

# Version 1: the tables as every release before schema versions wrote them (user_version 0). A file
# of that time holds any subset of them: the alert store and the job store created their own tables.
_V1_TABLES = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT '',
    requester TEXT NOT NULL,
    approver TEXT,
    args TEXT NOT NULL DEFAULT '{}',
    plan_id TEXT,
    stage_job TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    abort_requested INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    origin TEXT NOT NULL DEFAULT 'console',
    channel TEXT,
    card_ts TEXT,
    card_version INTEGER NOT NULL DEFAULT 0,
    posted_version INTEGER NOT NULL DEFAULT 0,
    reply TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    ts REAL NOT NULL,
    text TEXT NOT NULL,
    posted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS choice (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stop TEXT,
    skips TEXT NOT NULL DEFAULT '[]',
    user TEXT NOT NULL,
    why TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS expected_events (
    tx TEXT PRIMARY KEY,
    gtid TEXT,
    user TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    job TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS watch_position (source TEXT PRIMARY KEY, file TEXT NOT NULL, pos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY, source TEXT NOT NULL, reason TEXT NOT NULL, oncall TEXT, ts TEXT,
    channel TEXT, created REAL NOT NULL, acked_by TEXT, escalations INTEGER NOT NULL DEFAULT 0, body TEXT,
    severity TEXT NOT NULL DEFAULT 'certain', marked TEXT, marked_by TEXT);
CREATE TABLE IF NOT EXISTS oncall_override (id INTEGER PRIMARY KEY CHECK (id = 1), user TEXT NOT NULL, since REAL)
"""
# Alert columns issue 10 added: a file of the first release has an alerts table without them.
_ALERT_COLUMNS_OF_ISSUE_10 = {
    "severity": "TEXT NOT NULL DEFAULT 'certain'",   # "certain" pages and escalates; "suspect" is a notice
    "marked": "TEXT",                                # "expected" or "incident": what an operator said it was
    "marked_by": "TEXT",
}

# Version 2: jobs without `reply` (Slack's response_url, stored with each job and never read).
_JOBS_V2 = """
CREATE TABLE jobs_v2 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT '',
    requester TEXT NOT NULL,
    approver TEXT,
    args TEXT NOT NULL DEFAULT '{}',
    plan_id TEXT,
    stage_job TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    abort_requested INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    origin TEXT NOT NULL DEFAULT 'console',
    channel TEXT,
    card_ts TEXT,
    card_version INTEGER NOT NULL DEFAULT 0,
    posted_version INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
)"""


def _tables_before_versions(db: sqlite3.Connection) -> None:
    for statement in _V1_TABLES.split(";"):   # our own DDL: no ';' inside a statement
        if statement.strip():
            db.execute(statement)
    have = {row[1] for row in db.execute("PRAGMA table_info(alerts)")}
    for name, decl in _ALERT_COLUMNS_OF_ISSUE_10.items():
        if name not in have:
            db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {decl}")


def _jobs_without_reply(db: sqlite3.Connection) -> None:
    # Rebuilt rather than ALTER TABLE ... DROP COLUMN, which needs SQLite 3.35 (some systems that
    # run Python 3.10 and later ship an older one). AUTOINCREMENT's high mark moves with the rows.
    db.execute(_JOBS_V2)
    columns = ", ".join(row[1] for row in db.execute("PRAGMA table_info(jobs_v2)"))
    db.execute(f"INSERT INTO jobs_v2 ({columns}) SELECT {columns} FROM jobs")
    db.execute("DROP TABLE jobs")
    db.execute("ALTER TABLE jobs_v2 RENAME TO jobs")


@dataclass(frozen=True)
class Migration:
    version: int                                  # the file's user_version once it ran
    what: str                                     # for the log
    apply: Callable[[sqlite3.Connection], None]   # runs inside the caller's transaction


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the tables of the releases before schema versions (alerts gain issue 10's columns)",
              _tables_before_versions),
    Migration(2, "jobs lose `reply` (Slack's response_url, never read)", _jobs_without_reply),
)
LATEST = MIGRATIONS[-1].version
ALEMBIC_VERSION = LATEST + 1   # the file's schema is Alembic's (its alembic_version table says which)
assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1)), "migrations are numbered 1, 2, 3, ..."


def migrate(db: sqlite3.Connection, path: str) -> int:
    """Bring the file to LATEST; returns the version it had. Safe when several processes open the
    file at once: the first takes the write lock and migrates, the others then find nothing to do."""
    found = _version(db)
    _refuse_newer(found, path)
    if found == LATEST:   # the usual case, without taking the write lock
        return found
    db.execute("BEGIN IMMEDIATE")
    try:
        found = _version(db)
        _refuse_newer(found, path)
        if found > LATEST:   # another process converted it meanwhile
            found = LATEST
        for migration in MIGRATIONS[found:]:
            migration.apply(db)
            db.execute(f"PRAGMA user_version = {migration.version}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if found < LATEST:
        log.info("store %s: schema version %d -> %d", path, found, LATEST)
    return found


def _version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def _refuse_newer(version: int, path: str) -> None:
    if version > ALEMBIC_VERSION:
        raise StoreFileError(
            f"store file {path} has schema version {version}, newer than this restore-bot knows ({ALEMBIC_VERSION}): "
            f"a newer restore-bot wrote it",
            hint="run that version or a later one with this file, or point [store] path at another file; "
                 "a store is never migrated back")


_LOCK_WAIT = 30.0   # seconds another process's write lock is waited for


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# Switching a rollback-journal file (one of the releases before WAL) to WAL needs the exclusive
# lock, and SQLite answers "database is locked" at once, without its busy wait, when two
# connections each hold the shared lock and want it: every store opening such a file at the same
# time (bot, worker, watcher) hit that. Waiting and asking again is what the busy wait would do.
@retry(retry=retry_if_exception(_locked), stop=stop_after_delay(_LOCK_WAIT), wait=wait_random(0.01, 0.1),
       reraise=True)
def _to_wal(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")


def connect(path: str, *, durable: bool = True) -> sqlite3.Connection:
    """One connection, as every store opens the file: autocommit (each store statement is its own
    transaction unless the store says BEGIN), WAL so readers never wait for the writer, a 30 s wait
    for another process's write lock, rows readable by column name or position.

    `durable=False` skips the fsync per commit (synchronous=NORMAL): WAL keeps the file consistent,
    a power loss may lose the last commits. The alert path takes that for its latency; what it
    loses is re-read from the binlog."""
    db = sqlite3.connect(path, timeout=_LOCK_WAIT, isolation_level=None)
    try:
        _to_wal(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreFileError(f"store file {path} cannot be opened as SQLite ({exc})",
                             hint="check [store] path: it names restore-bot's SQLite file") from exc
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    db.row_factory = sqlite3.Row
    return db


def convert_legacy(path: str) -> None:
    """Check that `path` is a SQLite file this restore-bot can use, and bring a file of the releases
    before Alembic to user_version 2. An empty file is left empty: Alembic creates its tables."""
    db = connect(path)
    try:
        found = _version(db)
        _refuse_newer(found, path)
        if found == ALEMBIC_VERSION:
            return
        if found == 0 and db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == 0:
            return
        migrate(db, path)
    finally:
        db.close()
