"""What counts as the disaster: the rules behind `--stop-before auto` (and the watcher's alerts)."""
from __future__ import annotations

from dataclasses import dataclass

from restore.binlog.sql_scope import StatementInfo
from restore.plan.plan import TableStats


@dataclass(frozen=True)
class Finding:
    reason: str
    database: str | None
    table: str | None
    rows: int | None = None


@dataclass(frozen=True)
class DestructiveRules:
    """A DELETE/UPDATE is mass when it hits at least `fraction` of a table and `min_rows` rows."""

    fraction: float = 0.9
    min_rows: int = 10

    def query_finding(self, info: StatementInfo) -> Finding | None:
        verb = info.verb
        first = info.written[0] if info.written else None
        db, table = (first.db, first.name) if first else (None, None)
        if verb == "DROP DATABASE":
            return Finding(f"DROP DATABASE {db}", db, None)
        if verb == "DROP TABLE" and not info.temporary:
            names = ", ".join(f"{t.db}.{t.name}" for t in info.written)
            return Finding(f"DROP TABLE {names}", db, table)
        if verb == "CREATE TABLE" and info.or_replace and not info.temporary:
            return Finding(f"CREATE OR REPLACE TABLE {db}.{table} (replaces the existing table)", db, table)
        if verb == "TRUNCATE":
            return Finding(f"TRUNCATE {db}.{table}", db, table)
        if verb in ("DELETE", "UPDATE") and (not info.has_where or info.trivial_where) and not info.has_limit:
            what = "without WHERE" if not info.has_where else "with an always-true WHERE"
            return Finding(f"{verb} {what} on {db}.{table}: every row", db, table)
        return None

    def rows_finding(self, stmt_rows: dict[str, list[int]], tables: dict[str, TableStats],
                     tx_changes: dict[str, list[int]]) -> Finding | None:
        """A statement's row events: DELETE or UPDATE of (nearly) all rows of a table."""
        for name, (ins, upd, dele) in stmt_rows.items():
            hit = max(upd, dele)
            if hit < self.min_rows:
                continue
            stats = tables.get(name) or TableStats()
            tx_ins, _, tx_del = tx_changes.get(name, (0, 0, 0))
            before = (stats.snapshot_rows + stats.inserted - stats.deleted
                      + (tx_ins - ins) - (tx_del - dele))
            if before <= 0 or hit >= self.fraction * before:
                verb = "DELETE" if dele >= upd else "UPDATE"
                db, _, table = name.partition(".")
                share = f"{hit} of about {before} rows" if before > 0 else f"{hit} rows"
                return Finding(f"mass {verb} on {name}: {share}", db, table, hit)
        return None
