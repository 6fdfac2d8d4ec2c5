"""`--event auto`: the transaction the planner would choose as the disaster, when it is one an undo
can take back (DML).

The judgment is the plan's own (`restore-bot plan --stop-before auto`): restore.plan.candidates
with restore.plan.destructive's rules, on the same statements and row counts: DROP DATABASE/TABLE,
TRUNCATE and CREATE OR REPLACE, a DELETE/UPDATE without WHERE, a mass DELETE (90 % of a table and 10
rows, by default), a mass UPDATE whose images show it destroys information, a DELETE whose ON DELETE
CASCADE empties a child. The plan knows each table's size from its dumps; an undo has none, so a
table's size before a statement is counted back from the target's COUNT(*) now, less what the binlog
did to it from there to its end (a first pass counts that). That is exact when the target is the
server the binlog comes from, as for an undo in place; the foreign keys are the target's too.
System schemas (mysql, sys, ...) and restore-bot's own are never candidates.

- The first certain candidate (the plan's choice) is DML, and no other transaction holds a certain
  DML candidate: its GTID, else the FILE:POS where its transaction starts.
- The plan's choice is DDL: refused, pointing to /restore plan (a dropped table's rows are not in
  the binlog).
- No certain DML candidate, or several transactions holding one: refused, listing the candidates
  (GTID, FILE:POS, time, statement) so that the operator names one.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import pymysql

from restore.binlog import events as be
from restore.binlog.source import BinlogSource
from restore.binlog.walker import FormatStep, QueryStep, RowsStep, TxBegin, TxEnd, Walker
from restore.errors import RestoreError
from restore.mysql.quote import quote_qualified
from restore.plan.candidates import AT_REPLAY, CERTAIN, Candidates, StatementUpdates
from restore.plan.destructive import DestructiveRules
from restore.plan.foreign_keys import ForeignKey, ForeignKeys
from restore.plan.plan import Candidate, TableStats, iso
from restore.target.checkpoint import SCHEMA

SYSTEM = frozenset({"mysql", "sys", "performance_schema", "information_schema", SCHEMA})
LISTED = 10        # candidates named in a refusal, at most
_KIND = {**{t: 0 for t in be.WRITE_ROWS}, **{t: 1 for t in be.UPDATE_ROWS}, **{t: 2 for t in be.DELETE_ROWS}}
_NAME_HINT = ("name the transaction to undo: --event GTID, or --event FILE:POS of one of its events "
              "(restore-bot plan --json lists every candidate with both)")


def resolve_auto(source: BinlogSource, conn, *, rules: DestructiveRules | None = None) -> str:
    """The GTID (else FILE:POS of its first event) of the transaction `--event auto` undoes, judged on
    `source`'s binlog with `conn`'s (the target's) table sizes and foreign keys; RestoreError when it
    is DDL, or when there is none or more than one."""
    rules = rules or DestructiveRules()
    found, ddl = _Scan(source, conn, rules).candidates()
    return choose(found, ddl, source.describe())


def spec_of(cand: Candidate) -> str:
    return cand.gtid or f"{cand.tx_file}:{cand.tx_pos}"


def choose(found: list[Candidate], ddl: set[tuple[str, int]], described: str) -> str:
    """The plan's choice among `found` (in binlog order; `ddl`: the keys of the DDL ones), as a SPEC."""
    stops = [c for c in found if c.severity in (CERTAIN, AT_REPLAY) and not c.skipped]
    if stops and stops[0].key() in ddl:
        first = stops[0]
        raise RestoreError(f"--event auto: the disaster the plan chooses in {described} is DDL, which an undo "
                           f"cannot take back: {_line(first)}", where=first.where,
                           hint="restore with /restore plan (restore-bot plan): it stops right before it")
    by_tx: dict[tuple[str, int], Candidate] = {}
    for cand in stops:
        if cand.key() not in ddl:
            by_tx.setdefault((cand.tx_file, cand.tx_pos), cand)
    if len(by_tx) == 1:
        return spec_of(next(iter(by_tx.values())))
    if not by_tx:
        listed = [c for c in found if c.key() not in ddl]
        words = (f"; the other candidates: {_lines(listed)}" if listed else "")
        raise RestoreError(f"--event auto: no certain DML disaster (DELETE/UPDATE without WHERE, or of nearly "
                           f"every row of a table) in {described}{words}", hint=_NAME_HINT)
    raise RestoreError(f"--event auto: {len(by_tx)} transactions in {described} hold a certain DML disaster: "
                       f"{_lines(list(by_tx.values()))}", hint=_NAME_HINT)


def _line(cand: Candidate) -> str:
    where = f"{cand.tx_file}:{cand.tx_pos}"
    name = f"{cand.gtid} ({where})" if cand.gtid else where
    what = " ".join(cand.statement.split())[:160] or cand.reason
    return f"{name} at {iso(cand.timestamp)}: {what} [{cand.severity}: {cand.reason}]"


def _lines(cands: list[Candidate]) -> str:
    more = f"; and {len(cands) - LISTED} more" if len(cands) > LISTED else ""
    return "; ".join(_line(c) for c in cands[:LISTED]) + more


class _Columns(Mapping):
    """A table's column names from the target, asked for only when a mass UPDATE is judged."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.known: dict[str, list[str]] = {}

    def __getitem__(self, name: str) -> list[str]:
        if name not in self.known:
            db, _, table = name.partition(".")
            with self.conn.cursor() as cur:
                cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND "
                            "TABLE_NAME=%s ORDER BY ORDINAL_POSITION", (db, table))
                self.known[name] = [r[0] for r in cur.fetchall()]
        return self.known[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.known)

    def __len__(self) -> int:
        return len(self.known)

    def __bool__(self) -> bool:
        return True     # empty until asked, yet never to be replaced by {} (Candidates: `columns or {}`)


def _foreign_keys(conn) -> ForeignKeys:
    with conn.cursor() as cur:
        cur.execute("SELECT CONSTRAINT_SCHEMA, TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME, "
                    "CONSTRAINT_NAME, DELETE_RULE, UPDATE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS")
        return ForeignKeys(ForeignKey(f"{db}.{table}", f"{pdb}.{ptable}", name, on_delete, on_update)
                           for db, table, pdb, ptable, name, on_delete, on_update in cur.fetchall())


class _Scan:
    """Two passes over the binlog: what it does to each table in all (to count sizes back from the
    target's), then the plan's candidates, statement by statement."""

    def __init__(self, source: BinlogSource, conn, rules: DestructiveRules) -> None:
        self.source, self.conn, self.rules = source, conn, rules
        self.tables: dict[str, TableStats] = {}
        self.sized: set[str] = set()

    def _transactions(self) -> Iterator:
        """The steps of committed transactions' row events and statements, and each transaction's end."""
        return Walker(self.source.events(), count=True).steps()

    def _net(self) -> dict[str, int]:
        """Rows each table gained (or lost: negative) from the binlog's start to its end."""
        net: dict[str, int] = {}
        pending: dict[str, int] = {}
        for step in self._transactions():
            if isinstance(step, RowsStep):
                kind = _KIND[step.event.type]
                if kind != 1:
                    name = step.tmap.full_name
                    pending[name] = pending.get(name, 0) + (step.rows if kind == 0 else -step.rows)
            elif isinstance(step, TxBegin):
                pending = {}
            elif isinstance(step, TxEnd) and not step.rolled_back:
                for name, n in pending.items():
                    net[name] = net.get(name, 0) + n
                pending = {}
        return net

    def _size(self, names, net: dict[str, int]) -> None:
        """Sets the size each table had at the binlog's start: its COUNT(*) now less the binlog's net."""
        for name in names:
            if name in self.sized:
                continue
            self.sized.add(name)
            db, _, table = name.partition(".")
            try:
                with self.conn.cursor() as cur:
                    cur.execute(f"SELECT COUNT(*) FROM {quote_qualified(db, table)}")
                    now = int(cur.fetchone()[0])
            except pymysql.MySQLError:
                now = 0     # dropped since: judged as the plan judges an unknown size (a mass change)
            self.tables.setdefault(name, TableStats()).snapshot_rows = now - net.get(name, 0)

    def candidates(self) -> tuple[list[Candidate], set[tuple[str, int]]]:
        net = self._net()
        fks = _foreign_keys(self.conn)
        cands = Candidates(self.rules, frozenset(), _Columns(self.conn), fks)
        ddl: set[tuple[str, int]] = set()
        tx: TxBegin | None = None
        tx_changes: dict[str, list[int]] = {}
        stmt_rows: dict[str, list[int]] = {}
        updates = StatementUpdates()
        cascade = False
        fde: be.FormatDescription | None = None
        for step in self._transactions():
            if isinstance(step, RowsStep) and tx is not None:
                name, kind = step.tmap.full_name, _KIND[step.event.type]
                if step.tmap.db not in SYSTEM:
                    for counts in (tx_changes, stmt_rows):
                        counts.setdefault(name, [0, 0, 0])[kind] += step.rows
                    if kind == 1:
                        updates.add(step.event, step.tmap)
                    cascade = cascade or (kind == 2 and name in fks.delete_parents)
                if step.statement_end and stmt_rows:
                    self._statement_end(cands, tx, step, stmt_rows, tx_changes, updates, fde, cascade, fks, net)
                    stmt_rows, cascade = {}, False
                    updates.clear()
            elif isinstance(step, QueryStep) and tx is not None:
                info = step.info
                if info.databases and info.databases <= SYSTEM:
                    continue
                cand = cands.query(tx, step, skipped=False)
                if cand is not None and info.kind == "ddl":
                    ddl.add(cand.key())
            elif isinstance(step, TxBegin):
                tx, tx_changes, stmt_rows, cascade = step, {}, {}, False
                updates.clear()
            elif isinstance(step, TxEnd):
                if not step.rolled_back:
                    for name, (ins, upd, dele) in tx_changes.items():
                        stats = self.tables.setdefault(name, TableStats())
                        stats.inserted += ins
                        stats.updated += upd
                        stats.deleted += dele
                tx = None
            elif isinstance(step, FormatStep):
                fde = step.fde
        return cands.found, ddl

    def _statement_end(self, cands: Candidates, tx: TxBegin, step: RowsStep, stmt_rows, tx_changes, updates,
                       fde, cascade: bool, fks: ForeignKeys, net: dict[str, int]) -> None:
        statement = step.annotation or ""
        cand = None
        if max(max(upd, dele) for _, upd, dele in stmt_rows.values()) >= self.rules.min_rows:
            self._size(stmt_rows, net)
            cand = cands.rows(tx, step.event, statement, stmt_rows, self.tables, tx_changes, updates, fde,
                              skipped=False)
        if cascade and cand is None:
            parents = [n for n, (_, _, dele) in stmt_rows.items() if dele and n in fks.delete_parents]
            self._size(set(parents).union(*(fks.reach(p, deleted=True, updated=False) for p in parents)), net)
            cands.cascade(tx, step.event, statement, stmt_rows, self.tables, tx_changes, skipped=False)
