"""What a parallel load has finished, kept on the target.

Each table's record is written by the client that loaded it, right after the table's last
statement, so a record means the table is whole: a killed load resumes with the tables that have
none, and a table it had half-loaded is loaded again by its own DROP/CREATE. A row with an empty
table name says the whole snapshot is loaded. The records live in `_restore_bot.load_done` beside
the restore's checkpoint (restore.target.checkpoint), keyed by the caller's resume key.
"""
from __future__ import annotations

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
