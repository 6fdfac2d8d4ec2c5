"""Reading the binlog for an undo: the transaction to undo, its row changes, and what every later
transaction (to the end of the binlog) did to the same rows.

One pass over the binlog, from the spec's file (FILE:POS) or from the first file (a GTID). Each
transaction's steps are held until its end tells whether it is the one to undo; after it, only the
row events of its tables are decoded. Per row, by key (the primary key; the whole row in a table
without one) three images are kept: `orig` before the transaction, `now` right after it, `cur`
after the last later write: that is all the inverse needs (restore.undo.inverse).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from restore.binlog import events as be
from restore.binlog.row_images import column_count, update_images
from restore.binlog.rows import TableMap, image_values
from restore.binlog.source import BinlogSource
from restore.binlog.walker import QueryStep, RowsStep, TxBegin, TxEnd, Walker
from restore.errors import RestoreError
from restore.plan.spec import Spec, parse_spec
from restore.undo.values import TableSchema, check_map, decode_row, read_schema

_PLAN_HINT = ("a DDL statement cannot be undone from the binlog: restore the table from a dump plus the binlog with "
              "/restore plan (restore-bot plan)")


@dataclass
class RowState:
    orig: tuple | None              # before the undone transaction (None: the row did not exist)
    now: tuple | None = None        # right after it
    cur: tuple | None = None        # after the last later write (the binlog's end)
    later: list[str] = field(default_factory=list)   # later transactions that wrote this key


@dataclass
class TableChanges:
    schema: TableSchema
    states: dict[tuple, RowState] = field(default_factory=dict)    # tables with a primary key
    delta: Counter = field(default_factory=Counter)                 # no key: whole row -> +inserted/-deleted
    pairs: Counter = field(default_factory=Counter)                 # no key: (before, after) of updated rows
    later_delta: Counter = field(default_factory=Counter)           # no key: +/- by later transactions

    def watched(self, row: tuple) -> bool:
        """A whole row (no key) whose later fate the inverse needs."""
        if not self.pairs:
            return row in self.delta
        if self._afters is None:
            self._afters = {after for _, after in self.pairs}
        return row in self.delta or row in self._afters
    later: list[str] = field(default_factory=list)                  # later transactions touching its rows
    _afters: set | None = None

    def note_later(self, tx: str, state: RowState | None = None) -> None:
        if state is not None and (not state.later or state.later[-1] != tx):
            state.later.append(tx)
        if not self.later or self.later[-1] != tx:
            self.later.append(tx)


@dataclass
class UndoneTransaction:
    id: str                         # its GTID, else the FILE:POS where it starts
    file: str
    pos: int
    end: int
    timestamp: int
    statements: list[str] = field(default_factory=list)   # the statement texts the source logged


def _tx_id(begin: TxBegin) -> str:
    return str(begin.gtid) if begin.gtid is not None else f"{begin.file}:{begin.pos}"


def _images(ev: be.RawEvent, post: int, tmap: TableMap, full_name: str) -> Iterator[tuple[dict | None, dict | None]]:
    """(before, after) images of every row of a row event; refuses images without every column."""
    if ev.type in be.UPDATE_ROWS:
        if ev.type == be.PARTIAL_UPDATE_ROWS:
            raise RestoreError(f"{ev.where}: a partial JSON update of {full_name} (binlog_row_value_options="
                               "PARTIAL_JSON) cannot be undone", where=ev.where, hint="use /restore plan")
        for before, after, full in update_images(ev, post, tmap):
            if not full:
                _minimal(ev, full_name)
            yield before, after
        return
    data = ev.data
    ncols, pos = column_count(data, post)
    nbm = (ncols + 7) >> 3
    bits = int.from_bytes(data[pos:pos + nbm], "little")
    present = [i for i in range(ncols) if bits >> i & 1]
    if len(present) != ncols:
        _minimal(ev, full_name)
    pos += nbm
    end = len(data) - 4 if ev.checksum else len(data)
    insert = ev.type in be.WRITE_ROWS
    while pos < end:
        image, pos = image_values(data, pos, tmap.sizes, present)
        yield (None, image) if insert else (image, None)


def _minimal(ev: be.RawEvent, full_name: str) -> None:
    raise RestoreError(f"{ev.where}: the row images of {full_name} do not carry every column (binlog_row_image is "
                       "MINIMAL or NOBLOB), so what the rows held cannot be told", where=ev.where,
                       hint="undo needs binlog_row_image=FULL on the source; restore with /restore plan instead")


def parse_event(text: str) -> Spec:
    """The transaction to undo: one GTID, or the FILE:POS of any of its events."""
    if text.strip().lower() == "auto":
        raise RestoreError("--event auto (the plan's chosen candidate) is not built yet",
                           hint="name the transaction by its GTID or FILE:POS, as restore-bot plan lists it")
    spec = parse_spec(text, option="--event", allow=("gtid", "filepos"))
    gtid = spec.gtid or ""
    if spec.kind == "gtid" and ("," in gtid or (":" in gtid and "-" in gtid.rsplit(":", 1)[1])):
        raise RestoreError(f"--event {text!r} names a set of transactions, not one",
                           hint="name one GTID (0-1-113680, or uuid:n) or the FILE:POS of one of its events")
    return spec


class UndoReader:
    """Finds the transaction `spec` names in `source` and follows its rows to the binlog's end.
    `conn`: the target, whose information_schema gives the tables' columns and keys."""

    def __init__(self, source: BinlogSource, spec: str, conn) -> None:
        self.source = source
        self.spec = parse_event(spec)
        self.conn = conn
        self.tables: dict[str, TableChanges] = {}
        self.undone: UndoneTransaction | None = None

    def read(self) -> tuple[UndoneTransaction, dict[str, TableChanges]]:
        spec = self.spec
        walker = Walker(self.source.events(spec.file, 4) if spec.kind == "filepos" else self.source.events())
        begin: TxBegin | None = None
        held: list = []
        fde: be.FormatDescription | None = None
        for step in walker.steps():
            if isinstance(step, TxBegin):
                begin, held = step, []
            elif isinstance(step, TxEnd):
                if begin is None or step.rolled_back:
                    begin, held = None, []
                    continue
                if self.undone is None:
                    if self._is_it(begin, step):
                        self._take(begin, step, held, fde)
                else:
                    self._later(_tx_id(begin), held, fde)
                begin, held = None, []
            elif isinstance(step, (RowsStep, QueryStep)):
                if self.undone is None or isinstance(step, QueryStep) or step.tmap.full_name in self.tables:
                    held.append(step)
            elif walker.fde is not None:
                fde = walker.fde
        if self.undone is None:
            raise RestoreError(f"no transaction at {spec.text} in {self.source.describe()}", where=spec.text,
                               hint="name the transaction by its GTID or by the FILE:POS of one of its events "
                                    "(restore-bot plan lists the candidates with both)")
        return self.undone, self.tables

    def _is_it(self, begin: TxBegin, end: TxEnd) -> bool:
        spec = self.spec
        if spec.kind == "gtid":
            return begin.gtid is not None and str(begin.gtid).lower() == spec.gtid
        return begin.file == spec.file and begin.pos <= (spec.pos or 0) < end.pos

    def _take(self, begin: TxBegin, end: TxEnd, held: list, fde: be.FormatDescription | None) -> None:
        undone = UndoneTransaction(_tx_id(begin), begin.file, begin.pos, end.pos, begin.timestamp)
        for step in held:
            if isinstance(step, QueryStep):
                info = step.info
                if info.kind == "ddl":
                    raise RestoreError(f"the transaction {undone.id} at {step.event.where} holds DDL "
                                       f"({info.verb}: {step.query.query[:120]})", where=step.event.where, hint=_PLAN_HINT)
                if info.kind in ("dml", "load", "other"):
                    raise RestoreError(f"the transaction {undone.id} at {step.event.where} was logged as a statement "
                                       f"({step.query.query[:120]}), not as row images: what it changed cannot be "
                                       "told exactly", where=step.event.where,
                                       hint="undo needs binlog_format=ROW on the source when the transaction ran; "
                                            "restore with /restore plan instead")
                continue
            if step.annotation and (not undone.statements or undone.statements[-1] != step.annotation):
                undone.statements.append(step.annotation)
            table = self._table(step)
            for before, after in _images(step.event, fde.post_header(step.event.type), step.tmap, table.schema.full_name):
                b = decode_row(table.schema, step.tmap, before) if before is not None else None
                a = decode_row(table.schema, step.tmap, after) if after is not None else None
                self._own_change(table, b, a)
        if not self.tables:
            raise RestoreError(f"the transaction {undone.id} changed no row", where=f"{begin.file}:{begin.pos}",
                               hint="name the transaction of the DELETE/UPDATE to undo")
        for table in self.tables.values():
            for state in table.states.values():
                state.cur = state.now
        self.undone = undone

    def _table(self, step: RowsStep) -> TableChanges:
        name = step.tmap.full_name
        table = self.tables.get(name)
        if table is None:
            schema = read_schema(self.conn, step.tmap.db, step.tmap.table)
            table = self.tables[name] = TableChanges(schema)
        check_map(table.schema, step.tmap, step.event.where)
        return table

    @staticmethod
    def _own_change(table: TableChanges, before: tuple | None, after: tuple | None) -> None:
        schema = table.schema
        if not schema.key:
            if before is not None and after is not None:
                table.pairs[(before, after)] += 1
            elif before is not None:
                table.delta[before] -= 1
            elif after is not None:
                table.delta[after] += 1
            return
        if before is not None:
            k = schema.key_of(before)
            state = table.states.get(k) or table.states.setdefault(k, RowState(orig=before))
            state.now = None
        if after is not None:
            k = schema.key_of(after)
            state = table.states.get(k) or table.states.setdefault(k, RowState(orig=None))
            state.now = after

    def _later(self, tx: str, held: list, fde: be.FormatDescription | None) -> None:
        for step in held:
            if isinstance(step, QueryStep):
                self._later_statement(tx, step)
                continue
            table = self.tables[step.tmap.full_name]
            check_map(table.schema, step.tmap, step.event.where)
            schema = table.schema
            for before, after in _images(step.event, fde.post_header(step.event.type), step.tmap, schema.full_name):
                b = decode_row(schema, step.tmap, before) if before is not None else None
                a = decode_row(schema, step.tmap, after) if after is not None else None
                if not schema.key:
                    for row, sign in ((b, -1), (a, 1)):
                        if row is not None and table.watched(row):
                            table.later_delta[row] += sign
                            table.note_later(tx)
                    continue
                for row, image in ((b, None), (a, a)):
                    if row is None:
                        continue
                    state = table.states.get(schema.key_of(row))
                    if state is not None:
                        state.cur = image
                        table.note_later(tx, state)

    def _later_statement(self, tx: str, step: QueryStep) -> None:
        info = step.info
        if info.kind not in ("ddl", "dml", "load"):
            return
        names = {f"{t.db}.{t.name}" for t in info.written if t.db and t.name}
        names |= {f"{new.db}.{new.name}" for old, new in info.renames}
        touched = sorted(names & set(self.tables)) or (sorted(self.tables) if not info.written else [])
        if not touched:
            return
        what = "DDL" if info.kind == "ddl" else "a statement-format write"
        raise RestoreError(f"a later transaction {tx} at {step.event.where} runs {what} on {', '.join(touched)} "
                           f"({step.query.query[:120]}): which rows it changed cannot be told", where=step.event.where,
                           hint=_PLAN_HINT if info.kind == "ddl" else
                           "undo needs every later write to these tables in ROW format; use /restore plan")
