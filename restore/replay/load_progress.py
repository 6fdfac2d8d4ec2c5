"""What a parallel load has finished, kept on the target, and how fast it goes.

Each table's record is written by the client that loaded it, right after the table's last
statement, so a record means the table is whole: a killed load resumes with the tables that have
none, and a table it had half-loaded is loaded again by its own DROP/CREATE. A row with an empty
table name says the whole snapshot is loaded. The records live in `_restore_bot.load_done` beside
the restore's checkpoint (restore.target.checkpoint), keyed by the caller's resume key.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from restore.mysql.quote import quote_ident, quote_qualified
from restore.target.checkpoint import SCHEMA

TABLE = quote_qualified(SCHEMA, "load_done")
_DDL = [
    f"CREATE DATABASE IF NOT EXISTS {quote_ident(SCHEMA)}",
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        load_key VARCHAR(191) NOT NULL,
        db VARCHAR(64) NOT NULL,
        tbl VARCHAR(64) NOT NULL,
        finished_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        PRIMARY KEY (load_key, db, tbl)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def ensure(conn) -> None:
    with conn.cursor() as cur:
        for stmt in _DDL:
            cur.execute(stmt)


def _present(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME='load_done'",
                    (SCHEMA,))
        return bool(cur.fetchone()[0])


def finished(conn, key: str) -> set[tuple[str, str]]:
    """(db, table) of every table recorded as loaded under `key`; ("", "") when the snapshot is."""
    if not _present(conn):
        return set()
    with conn.cursor() as cur:
        cur.execute(f"SELECT db, tbl FROM {TABLE} WHERE load_key=%s", (key,))
        return {(r[0], r[1]) for r in cur.fetchall()}


def started(conn, prefix: str) -> bool:
    """Some load whose key starts with `prefix` recorded a finished table or snapshot."""
    if not _present(conn):
        return False
    with conn.cursor() as cur:
        cur.execute(f"SELECT 1 FROM {TABLE} WHERE load_key LIKE %s LIMIT 1",
                    (_like(prefix),))
        return cur.fetchone() is not None


def record_sql(key: str, db: str, table: str) -> bytes:
    """The statements a loading client runs after a table's last one: the table is whole."""
    return (f"UNLOCK TABLES;\nINSERT IGNORE INTO {TABLE} (load_key, db, tbl) VALUES "
            f"({_lit(key)}, {_lit(db)}, {_lit(table)});\nCOMMIT;\n").encode()


def record_snapshot(conn, key: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f"INSERT IGNORE INTO {TABLE} (load_key, db, tbl) VALUES (%s, '', '')", (key,))


def forget(conn, prefix: str) -> None:
    """Drop the records of the loads whose key starts with `prefix` (the caller is past loading)."""
    if not _present(conn):
        return
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {TABLE} WHERE load_key LIKE %s", (_like(prefix),))
        cur.execute(f"SELECT COUNT(*) FROM {TABLE}")
        if cur.fetchone()[0]:
            return
        cur.execute(f"DROP TABLE {TABLE}")   # a target holds no trace of loads that are over
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (SCHEMA,))
        if not cur.fetchone()[0]:
            cur.execute(f"DROP DATABASE {quote_ident(SCHEMA)}")


class Throughput:
    """Turns successive (done, total) byte counts into a line a person reads: how much, how fast,
    how long still. The rate is measured from the first report on, so bytes a resumed load skips
    do not inflate it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._first: tuple[float, int] | None = None

    def line(self, done: int, total: int | None) -> str:
        now = self._clock()
        if self._first is None:
            self._first = (now, done)
        t0, d0 = self._first
        rate = (done - d0) / (now - t0) if now - t0 >= 0.5 else 0.0
        text = _size(done) + (f" of {_size(total)} ({100 * done // max(total, 1)}%)" if total else "")
        if rate > 0:
            text += f", {_size(int(rate))}/s"
            if total and total > done:
                text += f", ETA {_duration((total - done) / rate)}"
        return text


def _size(n: int) -> str:
    """Decimal units, as disks and `ls -h --si` count (a 192 MB dump is 192,000,000 bytes)."""
    if n < 1000:
        return f"{n} B"
    for unit, scale in (("KB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < scale * 1000 or unit == "GB":
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"   # not reached


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
