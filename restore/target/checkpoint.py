"""Restore state kept on the target itself, in `_restore_bot.state`.

The replay position is written in the same transaction as the changes it covers (as gh-ost's
checkpoint table and a replica's relay-log info do): after a crash the target holds exactly
the data up to the recorded position, and the same command resumes from there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

SCHEMA = "_restore_bot"

_DDL = [
    f"CREATE DATABASE IF NOT EXISTS `{SCHEMA}`",
    f"""CREATE TABLE IF NOT EXISTS `{SCHEMA}`.`state` (
        plan_id VARCHAR(64) NOT NULL PRIMARY KEY,
        phase VARCHAR(32) NOT NULL,
        file VARCHAR(255) NULL,
        pos BIGINT UNSIGNED NULL,
        gtid VARCHAR(255) NULL,
        transactions BIGINT UNSIGNED NOT NULL DEFAULT 0,
        ddl_pending VARCHAR(300) NULL,
        temp_tables_open TINYINT NOT NULL DEFAULT 0,
        databases_json TEXT NOT NULL,
        plan_json LONGTEXT NOT NULL,
        updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
    ) ENGINE=InnoDB""",
]

PHASES = ("prepared", "loaded", "replaying", "replayed", "verified")


@dataclass
class State:
    plan_id: str
    phase: str
    file: str | None
    pos: int | None
    gtid: str | None
    transactions: int
    ddl_pending: str | None
    temp_tables_open: bool
    databases: list[str]

    def reached(self, phase: str) -> bool:
        return PHASES.index(self.phase) >= PHASES.index(phase)


def ensure_schema(conn) -> None:
    with conn.cursor() as cur:
        for stmt in _DDL:
            cur.execute(stmt)


def load_all(conn) -> list[State]:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME='state'",
                    (SCHEMA,))
        if not cur.fetchone()[0]:
            return []
        cur.execute(f"SELECT plan_id, phase, file, pos, gtid, transactions, ddl_pending, temp_tables_open, "
                    f"databases_json FROM `{SCHEMA}`.`state`")
        return [State(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), json.loads(r[8]))
                for r in cur.fetchall()]


def create(conn, plan_id: str, databases: list[str], plan_json: str) -> None:
    ensure_schema(conn)
    with conn.cursor() as cur:
        cur.execute(f"REPLACE INTO `{SCHEMA}`.`state` (plan_id, phase, databases_json, plan_json) "
                    "VALUES (%s, 'prepared', %s, %s)", (plan_id, json.dumps(databases), plan_json))


def set_phase(conn, plan_id: str, phase: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f"UPDATE `{SCHEMA}`.`state` SET phase=%s WHERE plan_id=%s", (phase, plan_id))


def position_sql(plan_id: str, file: str, pos: int, gtid: str | None, transactions: int,
                 ddl_pending: str | None = None, temp_open: bool = False) -> bytes:
    """The UPDATE that records a replay position; sent inside the transaction it covers."""
    def lit(v: object) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, (int, bool)):
            return str(int(v))
        return "'" + str(v).replace("\\", "\\\\").replace("'", "''") + "'"
    return (f"UPDATE `{SCHEMA}`.`state` SET phase='replaying', file={lit(file)}, pos={lit(pos)}, "
            f"gtid={lit(gtid)}, transactions={lit(transactions)}, ddl_pending={lit(ddl_pending)}, "
            f"temp_tables_open={lit(temp_open)} WHERE plan_id={lit(plan_id)}").encode()


def forget(conn, plan_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM `{SCHEMA}`.`state` WHERE plan_id=%s", (plan_id,))
        cur.execute(f"SELECT COUNT(*) FROM `{SCHEMA}`.`state`")
        if not cur.fetchone()[0]:
            cur.execute(f"DROP DATABASE `{SCHEMA}`")
