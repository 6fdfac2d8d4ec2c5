"""After the replay: row counts against the plan's predictions, and CHECKSUM TABLE per table."""
from __future__ import annotations

from dataclasses import dataclass, field

from restore.mysql.quote import quote_qualified
from restore.plan.plan import Plan


@dataclass
class TableResult:
    rows: int
    predicted: int | None
    checksum: int | None
    note: str = ""       # why there is no prediction (the plan's note: cascades, statement-format DML...)

    @property
    def ok(self) -> bool:
        return self.predicted is None or self.predicted == self.rows

    def to_dict(self) -> dict:
        d = {"rows": self.rows, "predicted_rows": self.predicted, "checksum": self.checksum, "ok": self.ok}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class Verification:
    tables: dict[str, TableResult] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)   # predicted by the plan, absent on the target

    @property
    def ok(self) -> bool:
        return not self.missing and all(t.ok for t in self.tables.values())

    def problems(self) -> list[str]:
        out = [f"{name}: {t.rows} rows, the plan predicts {t.predicted}"
               for name, t in sorted(self.tables.items()) if not t.ok]
        out += [f"{name}: missing on the target" for name in self.missing]
        return out

    def to_dict(self) -> dict:
        return {"ok": self.ok, "problems": self.problems(),
                "tables": {n: t.to_dict() for n, t in sorted(self.tables.items())}}


def table_checksums(conn, databases: list[str]) -> dict[str, tuple[int, int | None]]:
    """{db.table: (rows, CHECKSUM TABLE)} for every base table of `databases`."""
    out: dict[str, tuple[int, int | None]] = {}
    with conn.cursor() as cur:
        for db in databases:
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                        "AND TABLE_TYPE='BASE TABLE' ORDER BY TABLE_NAME", (db,))
            for (table,) in cur.fetchall():
                ident = quote_qualified(db, table)
                cur.execute(f"SELECT COUNT(*) FROM {ident}")
                rows = cur.fetchone()[0]
                cur.execute(f"CHECKSUM TABLE {ident} EXTENDED")
                out[f"{db}.{table}"] = (rows, cur.fetchone()[1])
    return out


def verify(conn, plan: Plan) -> Verification:
    result = Verification()
    actual = table_checksums(conn, sorted(plan.databases))
    for name, (rows, checksum) in actual.items():
        stats = plan.tables.get(name)
        # A table the plan cannot count (rows deleted by a foreign key's cascade, statement-format DML)
        # is reported with its checksum; its count is not held against the plan.
        result.tables[name] = TableResult(rows, stats.predicted if stats else None, checksum,
                                          stats.note if stats is not None and not stats.exact else "")
    result.missing = sorted(set(plan.tables) - set(actual))
    return result
