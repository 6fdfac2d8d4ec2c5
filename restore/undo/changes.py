"""Reading the binlog for an undo: the transaction to undo, its row changes, and what every later
transaction (to the end of the binlog) did to the same rows.

One pass over the binlog, from the spec's file (FILE:POS, after a first walk that finds where the
transaction holding it begins) or from the first file (a GTID). Nothing of a transaction is held in
memory: its rows go to the undo's scratch Store as they come, inside a savepoint that a rolled-back
transaction takes back. After the undone transaction only the row events of its tables are decoded.
Per row, by key (the primary key; the whole row in a table without one) three images are kept:
`orig` before the transaction, `now` right after it, `cur` after the last later write: that is all
the inverse needs (restore.undo.inverse).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from restore.binlog import events as be
from restore.binlog.row_images import column_count, update_images
from restore.binlog.rows import TableMap, image_values
from restore.binlog.source import BinlogSource
from restore.binlog.walker import FormatStep, QueryStep, RowsStep, TxBegin, TxEnd, Walker
from restore.errors import RestoreError
from restore.plan.spec import Spec, parse_spec
from restore.undo.raw import RawTable
from restore.undo.store import Store, dumps, key_blob, key_value, loads
from restore.undo.values import TableSchema, check_map, decode_row, read_schema

_PLAN_HINT = ("a DDL statement cannot be undone from the binlog: restore the table from a dump plus the binlog with "
              "/restore plan (restore-bot plan)")


@dataclass
class RowState:
    orig: tuple | None              # before the undone transaction (None: the row did not exist)
    now: tuple | None = None        # right after it
    cur: tuple | None = None        # after the last later write (the binlog's end)
    later: list[str] = field(default_factory=list)   # later transactions that wrote this key


class _LazyState:
    """A RowState whose images are unpickled when read (`orig` decoded from its logged bytes when
    the row was kept raw: restore.undo.raw)."""

    def __init__(self, orig: bytes | None, now: bytes | None, cur: bytes | None, later: str,
                 raw: bytes | None = None, table: RawTable | None = None) -> None:
        self._b = (orig, now, cur)
        self._later = later
        self._raw, self._table = raw, table

    @property
    def orig(self) -> tuple | None:
        if self._b[0] is None and self._raw is not None and self._table is not None:
            return self._table.decode(self._raw)
        return loads(self._b[0])

    now = property(lambda self: loads(self._b[1]))
    cur = property(lambda self: loads(self._b[2]))
    later = property(lambda self: self._later.split("\n")[1:])


# A later transaction's id is appended to a key's `later` unless it is the last one there already.
_NOTE = "later = CASE WHEN substr(later, -length(?1) - 1) = char(10) || ?1 THEN later ELSE later || char(10) || ?1 END"


class TableChanges:
    """What the transaction and the later ones did to one table's rows, kept in the undo's Store:
    per key `RowState` (a table with a primary key), or whole rows counted (one without)."""

    def __init__(self, schema: TableSchema, store: Store, tid: int) -> None:
        self.schema, self.store, self.tid = schema, store, tid
        self.later: list[str] = []          # later transactions touching its rows
        self._own: list[tuple] = []
        self.raw: RawTable | None = None    # deleted rows kept as logged (restore.undo.raw)
        # deleted rows kept whole per event, not row by row (restore.undo.fast): how many pieces; and
        # whether the table's rows are kept row by row (then they all are)
        self.runs = 0
        self.per_row = False
        self.fast = None                    # restore.undo.fast.FastRows: the server holds the pieces' rows

    # -- the undone transaction ---------------------------------------------------------------
    def own_change(self, before: tuple | None, after: tuple | None) -> None:
        self.materialize()
        if not self.schema.key:
            self._own_whole(before, after)
            return
        key_of, t = self.schema.key_of, self.tid
        if before is not None:     # the key's row is gone after this change (its first image stays `orig`)
            self._own.append((t, key_blob(key_of(before)), dumps(before), None, None))
        if after is not None:
            self._own.append((t, key_blob(key_of(after)), None, dumps(after), None))
        if len(self._own) >= 5000:
            self.flush()

    def own_raw_deletes(self, rows: list[tuple[tuple, int | bytes]]) -> None:
        """Rows the transaction deleted, (key, image kept as logged: self.raw reads and decodes it)."""
        t = self.tid
        self._own += [(t, key_blob(key), None, None, raw) for key, raw in rows]
        if len(self._own) >= 5000:
            self.flush()

    def own_run(self, ref: int) -> None:
        """Rows the transaction deleted, kept whole as restore.undo.raw.RawTable.keep_run gives them."""
        if ref:
            self.runs += 1
            self.store.db.execute("INSERT INTO runs VALUES (?, ?)", (self.tid, ref))

    def run_refs(self) -> Iterator[int]:
        for (ref,) in self.store.query("SELECT ref FROM runs WHERE t = ? ORDER BY rowid", (self.tid,)):
            yield ref

    def materialize(self) -> None:
        """From here on, rows kept row by row: the pieces kept whole are split into their rows (in
        their order), and the later writes held meanwhile are applied to them."""
        self.per_row = True
        if not self.runs:
            return
        self.runs = 0
        for ref in self.run_refs():
            self.own_raw_deletes(self.raw.run_rows(ref))
        self.flush()
        db = self.store.db
        db.execute("DELETE FROM runs WHERE t = ?", (self.tid,))
        for tx, before, after in self.store.query("SELECT tx, before, after FROM lw WHERE t = ? ORDER BY rowid",
                                                  (self.tid,)):
            self.later_change(tx, loads(before), loads(after))
        db.execute("DELETE FROM lw WHERE t = ?", (self.tid,))

    def held_later(self, tx: str, before: tuple | None, after: tuple | None) -> None:
        """A later write to a table whose deleted rows are kept whole: held until restore.undo.fast
        knows whether it touches them (applied by materialize if it does)."""
        self.store.db.execute("INSERT INTO lw VALUES (?, ?, ?, ?)", (self.tid, tx, None if before is None else
                                                                    dumps(before), None if after is None else dumps(after)))

    def later_keys(self) -> Iterator[tuple]:
        """The keys the held later writes wrote (each once)."""
        seen: set = set()
        key_of = self.schema.key_of
        for before, after in self.store.query("SELECT before, after FROM lw WHERE t = ? ORDER BY rowid", (self.tid,)):
            for blob in (before, after):
                if blob is not None:
                    key = key_of(loads(blob))
                    if key not in seen:
                        seen.add(key)
                        yield key

    def flush(self) -> None:
        if self._own:
            # a key seen before keeps its first image (`orig` or `raw`): only `now` follows the transaction
            self.store.db.executemany("INSERT INTO st (t, k, orig, now, raw) VALUES (?, ?, ?, ?, ?) "
                                      "ON CONFLICT (t, k) DO UPDATE SET now = excluded.now", self._own)
            self._own = []

    def took(self) -> None:
        """The transaction ended: what it left is what the binlog's end holds, until a later write."""
        self.flush()
        # (not rewriting the rows where both are NULL already: every row a DELETE removed)
        self.store.db.execute("UPDATE st SET cur = now WHERE t = ? AND cur IS NOT now", (self.tid,))

    def _own_whole(self, before: tuple | None, after: tuple | None) -> None:
        db, t = self.store.db, self.tid
        if before is not None and after is not None:
            db.execute("INSERT INTO pairs VALUES (?, ?, ?, 1) ON CONFLICT (t, before, after) DO UPDATE SET n = n + 1",
                       (t, dumps(before), dumps(after)))
            return
        row, sign = (before, -1) if before is not None else (after, 1)
        db.execute("INSERT INTO nk (t, row, delta) VALUES (?, ?, ?) ON CONFLICT (t, row) DO UPDATE SET delta = delta + ?",
                   (t, dumps(row), sign, sign))

    # -- later transactions -------------------------------------------------------------------
    def later_change(self, tx: str, before: tuple | None, after: tuple | None) -> None:
        db, t = self.store.db, self.tid
        touched = False
        if not self.schema.key:
            for row, sign in ((before, -1), (after, 1)):
                if row is None:
                    continue
                blob = dumps(row)
                if db.execute("UPDATE nk SET later = later + ? WHERE t = ? AND row = ?", (sign, t, blob)).rowcount or (
                        db.execute("SELECT 1 FROM pairs WHERE t = ? AND after = ? LIMIT 1", (t, blob)).fetchone()
                        and db.execute("INSERT INTO nk (t, row, later) VALUES (?, ?, ?)", (t, blob, sign))):
                    touched = True
        else:
            key_of = self.schema.key_of
            for row, image in ((before, None), (after, after)):
                if row is not None and db.execute(
                        f"UPDATE st SET cur = ?2, {_NOTE} WHERE t = ?3 AND k = ?4",
                        (tx, None if image is None else dumps(image), t, key_blob(key_of(row)))).rowcount:
                    touched = True
        if touched and (not self.later or self.later[-1] != tx):
            self.later.append(tx)

    # -- what the inverse reads ---------------------------------------------------------------
    def states(self) -> Iterator[tuple[tuple, RowState]]:
        self.materialize()
        for _, k, _, _, _, _, state in self.stored_states():
            yield key_value(k), state

    def stored_states(self, where: str = "1") -> Iterator[tuple[int, int | bytes, bytes | None, bytes | None,
                                                             bytes | None, bytes | None, RowState]]:
        """Per key (those `where` picks), in binlog order: its place, the stored key and images
        (`orig` pickled, or else `raw`: as logged), and the RowState they decode to (unpickled only
        when its fields are read)."""
        for seq, k, orig, now, cur, later, raw in self.store.query(
                f"SELECT rowid, k, orig, now, cur, later, raw FROM st WHERE +t = ? AND {where} ORDER BY rowid",
                (self.tid,)):
            yield seq, k, orig, now, cur, raw, _LazyState(orig, now, cur, later, raw, self.raw)

    def whole_rows(self) -> Iterator[tuple[tuple, int, int]]:
        """(row, +inserted/-deleted by the transaction, +/- by later ones) of a table without a key."""
        for row, delta, later in self.store.query("SELECT row, delta, later FROM nk WHERE +t = ? ORDER BY rowid",
                                                  (self.tid,)):
            yield loads(row), delta, later

    def pairs(self) -> Iterator[tuple[tuple, tuple, int, int]]:
        """(before, after, rows updated so, rows left as `after` at the binlog's end for the whole group
        of pairs with this after-image), grouped by after-image."""
        for before, after, n, left in self.store.query(
                "SELECT p.before, p.after, p.n, (SELECT SUM(n) FROM pairs q WHERE q.t = p.t AND q.after = p.after) "
                "+ MIN(0, COALESCE((SELECT later FROM nk WHERE nk.t = p.t AND nk.row = p.after), 0)) "
                "FROM pairs p WHERE p.t = ? ORDER BY p.after, p.rowid", (self.tid,)):
            yield loads(before), loads(after), n, left


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
        raise RestoreError("--event auto names no transaction until restore.undo.auto resolves it",
                           hint="name the transaction by its GTID or FILE:POS, as restore-bot plan lists it")
    spec = parse_spec(text, option="--event", allow=("gtid", "filepos"))
    gtid = spec.gtid or ""
    if spec.kind == "gtid" and ("," in gtid or (":" in gtid and "-" in gtid.rsplit(":", 1)[1])):
        raise RestoreError(f"--event {text!r} names a set of transactions, not one",
                           hint="name one GTID (0-1-113680, or uuid:n) or the FILE:POS of one of its events")
    return spec


class UndoReader:
    """Finds the transaction `spec` names in `source` and follows its rows to the binlog's end.
    `conn`: the target, whose information_schema gives the tables' columns and keys. Per-row state
    goes to `store`, so nothing held here grows with the rows: the steps of a transaction are
    handled as they come (a savepoint in the store takes back what a rolled-back one did)."""

    def __init__(self, source: BinlogSource, spec: str, conn, store: Store) -> None:
        self.source = source
        self.spec = parse_event(spec)
        self.conn = conn
        self.store = store
        self.tables: dict[str, TableChanges] = {}
        self.undone: UndoneTransaction | None = None
        self.fde_event: be.RawEvent | None = None

    def read(self) -> tuple[UndoneTransaction, dict[str, TableChanges]]:
        spec = self.spec
        begin_at = self._find_begin() if spec.kind == "filepos" else None
        walker = Walker(self.source.events(spec.file, 4) if spec.kind == "filepos" else self.source.events())
        begin: TxBegin | None = None
        mode = None           # "take": the transaction to undo; "later": one after it; None: not looked at
        fde: be.FormatDescription | None = None
        statements: list[str] = []
        for step in walker.steps():
            if isinstance(step, TxBegin):
                begin, statements = step, []
                if self.undone is None:
                    it = (begin.file, begin.pos) == begin_at if begin_at else (
                        begin.gtid is not None and str(begin.gtid).lower() == spec.gtid)
                    mode = "take" if it else None
                else:
                    mode = "later"
                if mode:
                    self.store.savepoint("tx")
                    later_mark = {name: len(t.later) for name, t in self.tables.items()}
            elif isinstance(step, TxEnd):
                if mode:
                    rolled_back = begin is None or step.rolled_back
                    if rolled_back:
                        for name, t in self.tables.items():
                            del t.later[later_mark.get(name, 0):]
                        if mode == "take":
                            self.tables = {}
                    elif mode == "take":
                        self._took(begin, step, statements)
                    self.store.release("tx", rollback=rolled_back)
                begin, mode = None, None
            elif mode == "take" and isinstance(step, (RowsStep, QueryStep)):
                self._take_step(step, fde, statements, _tx_id(begin))
            elif mode == "later" and isinstance(step, QueryStep):
                self._later_statement(_tx_id(begin), step)
            elif mode == "later" and isinstance(step, RowsStep) and step.tmap.full_name in self.tables:
                self._later_rows(_tx_id(begin), step, fde)
            elif walker.fde is not None:
                fde = walker.fde
                if isinstance(step, FormatStep):
                    self.fde_event = step.event
        if self.undone is None:
            raise RestoreError(f"no transaction at {spec.text} in {self.source.describe()}", where=spec.text,
                               hint="name the transaction by its GTID or by the FILE:POS of one of its events "
                                    "(restore-bot plan lists the candidates with both)")
        return self.undone, self.tables

    def _find_begin(self) -> tuple[str, int] | None:
        """Where the transaction holding FILE:POS begins: a first walk, without holding any of it."""
        spec = self.spec
        begin = None
        for step in Walker(self.source.events(spec.file, 4)).steps():
            if isinstance(step, TxBegin):
                begin = step
            elif isinstance(step, TxEnd) and begin is not None:
                if begin.file == spec.file and begin.pos <= (spec.pos or 0) < step.pos and not step.rolled_back:
                    return begin.file, begin.pos
                begin = None
        return None

    def _take_step(self, step, fde: be.FormatDescription | None, statements: list[str], tx: str) -> None:
        where = step.event.where
        if isinstance(step, QueryStep):
            info = step.info
            if info.kind == "ddl":
                raise RestoreError(f"the transaction {tx} at {where} holds DDL ({info.verb}: {step.query.query[:120]})",
                                   where=where, hint=_PLAN_HINT)
            if info.kind in ("dml", "load", "other"):
                raise RestoreError(f"the transaction {tx} at {where} was logged as a statement "
                                   f"({step.query.query[:120]}), not as row images: what it changed cannot be "
                                   "told exactly", where=where,
                                   hint="undo needs binlog_format=ROW on the source when the transaction ran; "
                                        "restore with /restore plan instead")
            return
        if step.annotation and (not statements or statements[-1] != step.annotation):
            statements.append(step.annotation)
        table = self._table(step)
        schema, tmap = table.schema, step.tmap
        if self._take_raw(table, step, fde):
            return
        for before, after in _images(step.event, fde.post_header(step.event.type), tmap, schema.full_name):
            table.own_change(decode_row(schema, tmap, before) if before is not None else None,
                             decode_row(schema, tmap, after) if after is not None else None)

    def _take_raw(self, table: TableChanges, step: RowsStep, fde: be.FormatDescription) -> bool:
        """The rows of a DELETE_ROWS event of a table with a primary key, kept as logged with only
        their keys decoded (restore.undo.raw); False: the event is decoded as any other."""
        ev = step.event
        post, tm_post = fde.post_header(ev.type), fde.post_header(be.TABLE_MAP)
        if self.fde_event is None or not RawTable.eligible(ev, post, table.schema):
            return False
        if table.raw is None:
            table.raw = RawTable(self.store, table.schema, self.fde_event, step.table_map, step.tmap, ev, post, tm_post)
        raw = table.raw
        if not raw.fits(ev, step.table_map, tm_post):
            return False
        if not table.per_row:
            ref = raw.keep_run(ev)
            if ref is not None:
                table.own_run(ref)
                return True
            table.materialize()
        table.own_raw_deletes(raw.keep(ev))
        return True

    def _took(self, begin: TxBegin, end: TxEnd, statements: list[str]) -> None:
        undone = UndoneTransaction(_tx_id(begin), begin.file, begin.pos, end.pos, begin.timestamp, statements)
        if not self.tables:
            raise RestoreError(f"the transaction {undone.id} changed no row", where=f"{begin.file}:{begin.pos}",
                               hint="name the transaction of the DELETE/UPDATE to undo")
        for table in self.tables.values():
            table.took()
        self.undone = undone

    def _table(self, step: RowsStep) -> TableChanges:
        name = step.tmap.full_name
        table = self.tables.get(name)
        if table is None:
            schema = read_schema(self.conn, step.tmap.db, step.tmap.table)
            table = self.tables[name] = TableChanges(schema, self.store, len(self.tables))
        check_map(table.schema, step.tmap, step.event.where)
        return table

    def _later_rows(self, tx: str, step: RowsStep, fde: be.FormatDescription | None) -> None:
        table = self.tables[step.tmap.full_name]
        schema, tmap = table.schema, step.tmap
        check_map(schema, tmap, step.event.where)
        change = table.held_later if table.runs else table.later_change
        for before, after in _images(step.event, fde.post_header(step.event.type), tmap, schema.full_name):
            change(tx, decode_row(schema, tmap, before) if before is not None else None,
                               decode_row(schema, tmap, after) if after is not None else None)

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
