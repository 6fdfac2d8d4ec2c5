"""Judging a statement-form UPDATE without WHERE on the target, right before it is replayed.

Such an UPDATE carries no row images, so the plan cannot tell a backfill from a disaster. The
replay reaches it with the target holding exactly the state before it: it counts the distinct
values of every column of the table, runs the UPDATE inside the still-open transaction, counts
again, and judges with the same rule as row images (row_images.destroys). A destructive one is
rolled back and the replay stops right before its transaction; any other is kept and the replay
goes on to the plan's next stop. On a table that cannot roll back (MyISAM...) nothing is run:
taken as destructive.
"""
from __future__ import annotations

from dataclasses import dataclass

from restore.binlog.row_images import DIVERSE, destroys
from restore.mysql.quote import quote_ident, quote_qualified


@dataclass(frozen=True)
class Verdict:
    where: str            # file:pos of the UPDATE
    tx: str               # file:pos of its transaction
    severity: str         # "certain" or "suspect"
    detail: str

    def to_dict(self) -> dict:
        return {"where": self.where, "transaction": self.tx, "severity": self.severity, "detail": self.detail}


def transactional(conn, db: str, table: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT e.TRANSACTIONS FROM information_schema.TABLES t JOIN information_schema.ENGINES e "
                    "ON e.ENGINE = t.ENGINE WHERE t.TABLE_SCHEMA = %s AND t.TABLE_NAME = %s", (db, table))
        row = cur.fetchone()
    return bool(row) and row[0] == "YES"


def distinct_values(conn, db: str, table: str) -> dict[str, int]:
    """Column -> distinct values in it (NULL counting as one)."""
    with conn.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                    "ORDER BY ORDINAL_POSITION", (db, table))
        columns = [r[0] for r in cur.fetchall()]
        if not columns:
            return {}
        parts = ", ".join(f"COUNT(DISTINCT {quote_ident(c)}) + MAX({quote_ident(c)} IS NULL)" for c in columns)
        cur.execute(f"SELECT {parts} FROM {quote_qualified(db, table)}")
        row = cur.fetchone()
    return {c: int(n or 0) for c, n in zip(columns, row)}


def judge(before: dict[str, int], after: dict[str, int]) -> tuple[str, str]:
    lost = [f"{c} held {before[c]} distinct values, now {after.get(c, 0)}"
            for c in before if destroys(before[c], after.get(c, 0))]
    if lost:
        return "certain", "overwrites what cannot be recovered: " + "; ".join(lost)
    changed = [c for c in before if after.get(c) != before[c]]
    few = [c for c in changed if before[c] < DIVERSE]
    if not changed:
        return "suspect", "keeps every column's distinct values (a backfill, or values kept apart)"
    return "suspect", ("rewrites without destroying information: "
                       + "; ".join(f"{c} {before[c]} -> {after.get(c, 0)} distinct values"
                                   + (" (held one or two values before)" if c in few else "") for c in changed))
