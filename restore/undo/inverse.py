"""The inverse of one transaction, restricted to what it changed and keeping every later write.

Per row (restore.undo.changes.RowState: `orig` before the transaction, `now` after it, `cur` at the
binlog's end):

- deleted (orig, now None): re-inserted as `orig`, unless its key was taken again later (`cur` is a
  row): a conflict, never overwritten;
- updated (orig and now): the columns it changed get their `orig` value back where `cur` still holds
  the transaction's value; a column a later write changed again keeps the later value and is a
  conflict; other columns are not touched; a row deleted later is a conflict;
- inserted (now, orig None): deleted only if `cur` is still exactly `now`.

A table without a primary key matches whole rows, duplicates counted: rows the transaction deleted
are inserted back as many times; rows it inserted are deleted as many times as are left of them.
"""
from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from restore.undo.changes import TableChanges
from restore.undo.raw import RawTable
from restore.undo.store import Store, dumps, key_blob, key_value, loads
from restore.undo.values import TableSchema


class Action:
    """One row's part of the undo. As read back from the Store its row and expected image stay
    pickled until asked for: the preview's look at a million rows put back needs only their keys."""

    __slots__ = ("kind", "_row", "_expected", "sets", "count", "seq", "observed", "blob", "_exp_blob", "stored_key",
                 "raw")

    def __init__(self, kind: str, row: tuple | None, expected: tuple | None, sets: dict | None = None,
                 count: int = 1, seq: int = 0, observed: object = None, *, blob: bytes | None = None,
                 expected_blob: bytes | None = None, stored_key: int | bytes | None = None,
                 raw: RawTable | None = None) -> None:
        self.kind = kind                # insert | update | delete
        self._row = row                 # insert: the row put back; update/delete: the row as the binlog ends
        self._expected = expected       # what the target must hold at that key now (None: no row); no key: unused
        self.sets = sets or {}          # update: column index -> value put back
        self.count = count              # no key: how many identical rows
        self.seq = seq                  # its place in the table's inverse (restore.undo.store, table act)
        self.observed = observed        # what the target held at its key when the preview looked
        self.blob, self._exp_blob, self.stored_key = blob, expected_blob, stored_key
        self.raw = raw                  # `blob` is an image as logged, which this decodes (restore.undo.raw)

    @property
    def row(self) -> tuple:
        if self._row is None:
            self._row = self.raw.decode(self.blob) if self.raw is not None else loads(self.blob)
        return self._row

    @property
    def expected(self) -> tuple | None:
        if self._expected is None and self._exp_blob is not None:
            self._expected = loads(self._exp_blob)
        return self._expected

    def key(self, schema: TableSchema) -> tuple:
        return key_value(self.stored_key) if self.stored_key is not None else schema.key_of(self.row)

    def intended(self) -> tuple | None:
        """The row at this key once the undo is applied (None: none)."""
        if self.kind == "insert":
            return self.row
        if self.kind == "delete":
            return None
        return tuple(self.sets.get(i, v) for i, v in enumerate(self.row))


@dataclass
class Conflict:
    table: str
    key: str
    column: str | None              # None: the whole row
    restore_value: object           # what the undo would have put back
    later_value: object             # what a later write left, and what stays
    reason: str
    later: list[str] = field(default_factory=list)
    index: str | None = None        # a unique (non-primary) index whose value a later row holds

    def to_dict(self) -> dict:
        out = {"table": self.table, "key": self.key, "column": self.column, "undo_value": shown(self.restore_value),
               "later_value": shown(self.later_value), "reason": self.reason, "later_transactions": self.later}
        if self.index is not None:
            out["unique_index"] = self.index
        return out


class TableUndo:
    """One table's inverse: its actions, kept in the undo's Store in the order they are applied
    (read back in batches), and its conflicts (few, held here)."""

    def __init__(self, schema: TableSchema, store: Store, tid: int, later: list[str],
                 raw: RawTable | None = None) -> None:
        self.schema, self.store, self.tid, self.later = schema, store, tid, later
        self.raw = raw                  # how its rows kept as logged decode and are written back
        self.fast = None                # restore.undo.fast.FastRows: deleted rows kept whole, not in `act`
        self.conflicts: list[Conflict] = []
        self.already = 0                # rows (or columns) that already hold what the undo would put back
        self._counts = {"insert": 0, "update": 0, "delete": 0}
        self._buf: list[tuple] = []
        self._seq = 0

    def add(self, action: Action, seq: int | None = None) -> None:
        self.add_stored(action.kind, key_blob(self.schema.key_of(action.row)), dumps(action.row),
                        None if action.expected is None else dumps(action.expected),
                        dumps(action.sets) if action.sets else None, action.count, seq=seq)

    def add_stored(self, kind: str, key: int | bytes, row: bytes, expected: bytes | None, sets: bytes | None,
                   count: int = 1, *, seq: int | None = None) -> None:
        """An action as the Store holds it (key_blob, pickled images): a row copied from the
        per-row state to the inverse without being unpickled and pickled again. `seq`: its place
        (a key's row in `st`), else after the last."""
        self._seq = self._seq + 1 if seq is None else seq
        self._counts[kind] += count
        self._buf.append((self.tid, self._seq, kind, key, row, expected, sets, count, 0))
        if len(self._buf) >= 5000:
            self.flush()

    def add_common(self, kind: str, select: str) -> None:
        """The actions of one common case, copied inside the Store by one statement: `select`
        gives (seq, k, row, expected, raw) from `st`."""
        self.flush()
        done = self.store.db.execute(f"INSERT INTO act (t, seq, kind, k, row, expected, count, raw) "
                                     f"SELECT ?, seq, ?, k, row, expected, 1, raw FROM ({select})",
                                     (self.tid, kind, self.tid)).rowcount
        self._counts[kind] += done

    def flush(self) -> None:
        if self._buf:
            self.store.db.executemany("INSERT INTO act (t, seq, kind, k, row, expected, sets, count, raw) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._buf)
            self._buf = []

    def drop(self, action: Action) -> None:
        """An action that turned out to be a conflict: it is not applied."""
        self.store.db.execute("DELETE FROM act WHERE t = ? AND seq = ?", (self.tid, action.seq))
        self._counts[action.kind] -= action.count

    def batches(self, size: int = 2000, kind: str | None = None, *, seen: bool = False,
                decoded: bool = False) -> Iterator[list[Action]]:
        """The actions (of one kind, or all; `seen`: but the inserts where the preview saw no row;
        `decoded`: but the rows kept as logged) in order, `size` at a time; each batch read whole
        before the caller writes (its observation) back."""
        self.flush()
        last = 0
        only = ("" if kind is None else " AND kind = ?") + (" AND NOT (kind = 'insert' AND observed IS NULL)"
                                                            if seen else "") + (" AND raw = 0" if decoded else "")
        while True:
            rows = self.store.db.execute(
                f"SELECT seq, kind, k, row, expected, sets, count, observed, raw FROM act WHERE t = ? AND seq > ?{only} "
                "ORDER BY seq LIMIT ?", (self.tid, last, *([kind] if kind else []), size)).fetchall()
            if not rows:
                return
            keyed = bool(self.schema.key)
            yield [Action(kind_, None, None, loads(sets), count, seq, loads(observed), blob=row, expected_blob=expected,
                          stored_key=k if keyed else None, raw=self.raw if raw else None)
                   for seq, kind_, k, row, expected, sets, count, observed, raw in rows]
            last = rows[-1][0]

    def actions(self, kind: str | None = None, *, decoded: bool = False) -> Iterator[Action]:
        for batch in self.batches(kind=kind, decoded=decoded):
            yield from batch

    def raw_inserts(self) -> Iterator[int | bytes]:
        """The images, as logged (references: restore.undo.raw), of the rows put back that were kept so, in order."""
        self.flush()
        for (row,) in self.store.query("SELECT row FROM act WHERE t = ? AND kind = 'insert' AND raw = 1 ORDER BY seq",
                                       (self.tid,)):
            yield row


    def first(self, n: int) -> list[Action]:
        return next(self.batches(n), [])

    def set_observed(self, actions: list[Action], observed: list) -> None:
        """Keep what the target held at each action's row (NULL, the column's default, is "no row")."""
        self.store.db.executemany("UPDATE act SET observed = ? WHERE t = ? AND seq = ?",
                                  [(dumps(o), self.tid, a.seq) for a, o in zip(actions, observed) if o is not None])

    def total(self) -> int:
        return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        return dict(self._counts, already=self.already)


def shown(value: object) -> object:
    """A value as JSON shows it: exact (DECIMAL as text, bytes as base64, datetimes in ISO)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, tuple):
        return [shown(v) for v in value]
    return value


# (restore.undo.store, table st) a deleted row nothing wrote again; an inserted row still as inserted
_PUT_BACK = "now IS NULL AND cur IS NULL AND (orig IS NOT NULL OR raw IS NOT NULL)"
_TAKEN_BACK = "orig IS NULL AND raw IS NULL AND now IS NOT NULL AND cur IS now"


def inverse(changes: TableChanges) -> TableUndo:
    schema = changes.schema
    out = TableUndo(schema, changes.store, changes.tid, list(changes.later), changes.raw)
    if changes.fast is not None:     # every row of the table kept whole: all put back, none in `act`
        out.fast = changes.fast
        out._counts["insert"] += changes.fast.count
        return out
    if not schema.key:
        _inverse_whole_rows(changes, out)
        out.flush()
        return out
    generated = {i for i, c in enumerate(schema.columns) if c.generated}
    # the common cases, decided on the stored images inside the Store (a million rows are not
    # read out and back): a deleted row nothing wrote again, an inserted row still as inserted
    out.add_common("insert", f"SELECT rowid AS seq, k, COALESCE(orig, raw) AS row, NULL AS expected, "
                             f"orig IS NULL AS raw FROM st WHERE +t = ? AND {_PUT_BACK} ORDER BY rowid")
    out.add_common("delete", f"SELECT rowid AS seq, k, now AS row, now AS expected, 0 AS raw FROM st "
                             f"WHERE +t = ? AND {_TAKEN_BACK} ORDER BY rowid")
    for seq, k, orig_b, now_b, cur_b, raw_b, state in changes.stored_states(f"NOT ({_PUT_BACK}) AND NOT ({_TAKEN_BACK})"):
        orig, now, cur = state.orig, state.now, state.cur
        if orig is None and now is None:
            continue
        key = schema.key_text(orig if orig is not None else now)

        def conflict(column: str | None, restore_value, later_value, reason: str) -> None:
            out.conflicts.append(Conflict(schema.full_name, key, column, restore_value, later_value, reason,
                                          list(state.later)))
        if now is None:                                   # deleted
            if cur is None:
                out.add(Action("insert", orig, None), seq)
            elif cur == orig:                             # put back already (by hand, or an undo before)
                out.already += 1
            else:
                conflict(None, orig, cur, "the deleted row's key was taken again later: the later row stays")
        elif orig is None:                                # inserted
            if cur == now:
                out.add(Action("delete", now, now), seq)
            elif cur is None:
                out.already += 1
            else:
                conflict(None, None, cur, "the inserted row was changed later: it stays")
        else:                                             # updated
            changed = [i for i in range(len(orig)) if orig[i] != now[i] and i not in generated]
            if cur is None:
                if changed:
                    conflict(None, orig, None, "the row was deleted later: it is not brought back")
                continue
            sets = {}
            for i in changed:
                if cur[i] == now[i]:
                    sets[i] = orig[i]
                elif cur[i] == orig[i]:
                    out.already += 1
                else:
                    conflict(schema.columns[i].name, orig[i], cur[i],
                             "a later write changed the same column: the later value stays")
            if sets:
                out.add(Action("update", cur, cur, sets), seq)
    out.flush()
    return out


def _inverse_whole_rows(changes: TableChanges, out: TableUndo) -> None:
    """Whole rows, duplicates counted: deleted rows go back as many times; inserted ones are deleted
    as many times as are left of them; an updated row is updated back while rows identical to its
    after-image are left (a later write changed the others: a conflict)."""
    for row, delta, later in changes.whole_rows():
        if delta < 0:
            out.add(Action("insert", row, None, count=-delta))
        elif delta > 0:
            left = delta + min(0, later)
            if left > 0:
                out.add(Action("delete", row, row, count=left))
    schema = out.schema
    group, left = None, 0
    for before, after, n, group_left in changes.pairs():
        if after != group:                      # pairs come grouped by after-image
            group, left = after, group_left
        take = max(0, min(n, left))
        left -= take
        sets = {i: before[i] for i in range(len(before)) if before[i] != after[i] and not schema.columns[i].generated}
        if take:
            out.add(Action("update", after, after, sets, count=take))
        if n - take:
            out.conflicts.append(Conflict(schema.full_name, schema.key_text(before), None, before, None,
                                          f"{n - take} row(s) the transaction updated were changed or deleted later "
                                          "(matched on the whole row: the table has no primary key): not put back",
                                          list(changes.later)))
