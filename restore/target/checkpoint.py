"""Restore state kept on the target itself, in `_restore_bot.state`.

The replay position is written in the same transaction as the changes it covers (as gh-ost's
checkpoint table and a replica's relay-log info do): after a crash the target holds exactly
the data up to the recorded position, and the same command resumes from there.

A production swap (restore.prod.swap) records its phases in the same table, one row per prod
job keyed `prod:<job>`: each phase is recorded once its effect on the target is durable, and a
rerun of the job resumes from the recorded phase instead of guessing from the schemas.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from restore.mysql.quote import quote_ident, quote_qualified

SCHEMA = "_restore_bot"
_SCHEMA, _STATE = quote_ident(SCHEMA), quote_qualified(SCHEMA, "state")

_DDL = [
    f"CREATE DATABASE IF NOT EXISTS {_SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {_STATE} (
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

PROD_KEY = "prod:"   # a prod job's record: "prod:<job tag>"; a restore's key is its plan id (hex)
# What a prod job has finished, in order. "swapping": the live tables' triggers may be dropped
# and the RENAME may have run (DDL cannot be recorded in its own transaction); "renamed": the
# restored tables are in production, their triggers, views and routines not yet created.
PROD_PHASES = ("fenced", "rebuilt", "shadowed", "swapping", "renamed", "swapped", "verified")


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


@dataclass
class ProdRecord:
    """A prod job's record: the last phase it finished, its databases, and what later phases
    need (the plan id, the rebuild's checksums, the outcome so far)."""
    job: str
    phase: str
    databases: list[str]
    doc: dict

    def reached(self, phase: str) -> bool:
        return PROD_PHASES.index(self.phase) >= PROD_PHASES.index(phase)


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
                    f"databases_json FROM {_STATE} WHERE plan_id NOT LIKE %s", (PROD_KEY + "%",))
        return [State(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), json.loads(r[8]))
                for r in cur.fetchall()]


def create(conn, plan_id: str, databases: list[str], plan_json: str) -> None:
    ensure_schema(conn)
    with conn.cursor() as cur:
        cur.execute(f"REPLACE INTO {_STATE} (plan_id, phase, databases_json, plan_json) "
                    "VALUES (%s, 'prepared', %s, %s)", (plan_id, json.dumps(databases), plan_json))


def load_prod(conn, job: str) -> ProdRecord | None:
    """The record of prod job `job` on this target, or None when it never started here."""
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME='state'",
                    (SCHEMA,))
        if not cur.fetchone()[0]:
            return None
        cur.execute(f"SELECT phase, databases_json, plan_json FROM {_STATE} WHERE plan_id=%s",
                    (PROD_KEY + job,))
        row = cur.fetchone()
    return None if row is None else ProdRecord(job, row[0], json.loads(row[1]), json.loads(row[2]))


def record_prod(conn, record: ProdRecord) -> None:
    """Write `record` (its phase and doc) as the target's record of its prod job."""
    if record.phase not in PROD_PHASES:
        raise ValueError(f"unknown prod phase {record.phase!r}")
    ensure_schema(conn)
    with conn.cursor() as cur:
        cur.execute(f"REPLACE INTO {_STATE} (plan_id, phase, databases_json, plan_json) "
                    "VALUES (%s, %s, %s, %s)", (PROD_KEY + record.job, record.phase, json.dumps(record.databases),
                                                json.dumps(record.doc, default=str)))


def set_phase(conn, plan_id: str, phase: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {_STATE} SET phase=%s WHERE plan_id=%s", (phase, plan_id))


def position_sql(plan_id: str, file: str, pos: int, gtid: str | None, transactions: int,
                 ddl_pending: str | None = None, temp_open: bool = False) -> bytes:
    """The UPDATE that records a replay position; sent inside the transaction it covers."""
    def lit(v: object) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, (int, bool)):
            return str(int(v))
        return "'" + str(v).replace("\\", "\\\\").replace("'", "''") + "'"
    return (f"UPDATE {_STATE} SET phase='replaying', file={lit(file)}, pos={lit(pos)}, "
            f"gtid={lit(gtid)}, transactions={lit(transactions)}, ddl_pending={lit(ddl_pending)}, "
            f"temp_tables_open={lit(temp_open)} WHERE plan_id={lit(plan_id)}").encode()


def forget(conn, plan_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {_STATE} WHERE plan_id=%s", (plan_id,))
        cur.execute(f"SELECT COUNT(*) FROM {_STATE}")
        if not cur.fetchone()[0]:
            cur.execute(f"DROP DATABASE {_SCHEMA}")
