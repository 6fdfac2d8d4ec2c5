"""After the replay: row counts against the plan's predictions, and CHECKSUM TABLE per table (an
exact row checksum of its own for a table with generated columns, see row_checksum)."""
from __future__ import annotations

from dataclasses import dataclass, field

from restore.mysql.quote import quote_ident, quote_qualified
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
    """{db.table: (rows, checksum)} for every base table of `databases`: CHECKSUM TABLE, except for a
    table with generated columns (row_checksum)."""
    out: dict[str, tuple[int, int | None]] = {}
    with conn.cursor() as cur:
        for db in databases:
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                        "AND TABLE_TYPE='BASE TABLE' ORDER BY TABLE_NAME", (db,))
            tables = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT TABLE_NAME, COLUMN_NAME, IS_GENERATED, EXTRA FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA=%s ORDER BY TABLE_NAME, ORDINAL_POSITION", (db,))
            columns: dict[str, list[tuple[str, bool, bool]]] = {}
            for table, column, generated, extra in cur.fetchall():
                virtual = generated == "ALWAYS" and "VIRTUAL" in (extra or "").upper()
                columns.setdefault(table, []).append((column, generated == "ALWAYS", virtual))
            for table in tables:
                ident = quote_qualified(db, table)
                cols = columns.get(table, [])
                if any(generated for _c, generated, _v in cols):
                    out[f"{db}.{table}"] = row_checksum(cur, ident, [c for c, _g, virtual in cols if not virtual])
                    continue
                cur.execute(f"SELECT COUNT(*) FROM {ident}")
                rows = cur.fetchone()[0]
                cur.execute(f"CHECKSUM TABLE {ident} EXTENDED")
                out[f"{db}.{table}"] = (rows, cur.fetchone()[1])
    return out


def row_checksum(cur, ident: str, columns: list[str]) -> tuple[int, int]:
    """(rows, checksum) of the table `ident` over `columns`, computed by the server in one pass.

    CHECKSUM TABLE leaves every generated column out of the columns it reads, PERSISTENT ones too
    (TABLE::use_all_stored_columns, MDEV-22943), and checksums that column's bytes from whatever
    the row buffer last held: the same rows give another value after the server's history differs
    (a base started on a backup's copy, a FLUSH TABLES). Here a row is the CRC32 of its columns'
    CRC32s (NULL marked 'N'; CRC32 of a column reads its value whatever its length, no string
    is built that max_allowed_packet could cut), and the table the sum of its rows' modulo 2**32,
    as CHECKSUM TABLE adds its rows' (duplicate rows count twice, they do not cancel)."""
    parts = ", ".join(f"IFNULL(CRC32({quote_ident(c)}), 'N')" for c in columns)
    cur.execute(f"SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(',', {parts}))), 0) % 4294967296 FROM {ident}")
    rows, checksum = cur.fetchone()
    return rows, int(checksum)


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
