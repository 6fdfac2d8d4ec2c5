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
from dataclasses import dataclass, field
from decimal import Decimal

from restore.undo.changes import TableChanges
from restore.undo.values import TableSchema


@dataclass
class Action:
    kind: str                       # insert | update | delete
    row: tuple                      # insert: the row put back; update/delete: the row as the binlog ends (`cur`)
    expected: tuple | None          # what the target must hold at that key now (None: no row); no key: unused
    sets: dict[int, object] = field(default_factory=dict)   # update: column index -> value put back
    count: int = 1                  # no key: how many identical rows

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

    def to_dict(self) -> dict:
        return {"table": self.table, "key": self.key, "column": self.column, "undo_value": shown(self.restore_value),
                "later_value": shown(self.later_value), "reason": self.reason, "later_transactions": self.later}


@dataclass
class TableUndo:
    schema: TableSchema
    actions: list[Action] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    later: list[str] = field(default_factory=list)
    already: int = 0                # rows (or columns) that already hold what the undo would put back

    def counts(self) -> dict[str, int]:
        out = {"insert": 0, "update": 0, "delete": 0}
        for a in self.actions:
            out[a.kind] += a.count
        return dict(out, already=self.already)


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


def inverse(changes: TableChanges) -> TableUndo:
    schema = changes.schema
    out = TableUndo(schema, later=list(changes.later))
    if not schema.key:
        _inverse_whole_rows(changes, out)
        return out
    generated = {i for i, c in enumerate(schema.columns) if c.generated}
    for state in changes.states.values():
        orig, now, cur = state.orig, state.now, state.cur
        if orig is None and now is None:
            continue
        key = schema.key_text(orig if orig is not None else now)

        def conflict(column: str | None, restore_value, later_value, reason: str) -> None:
            out.conflicts.append(Conflict(schema.full_name, key, column, restore_value, later_value, reason,
                                          list(state.later)))
        if now is None:                                   # deleted
            if cur is None:
                out.actions.append(Action("insert", orig, None))
            elif cur == orig:                             # put back already (by hand, or an undo before)
                out.already += 1
            else:
                conflict(None, orig, cur, "the deleted row's key was taken again later: the later row stays")
        elif orig is None:                                # inserted
            if cur == now:
                out.actions.append(Action("delete", now, now))
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
                out.actions.append(Action("update", cur, cur, sets))
    return out


def _inverse_whole_rows(changes: TableChanges, out: TableUndo) -> None:
    """Whole rows, duplicates counted: deleted rows go back as many times; inserted ones are deleted
    as many times as are left of them; an updated row is updated back while rows identical to its
    after-image are left (a later write changed the others: a conflict)."""
    for row, delta in changes.delta.items():
        if delta < 0:
            out.actions.append(Action("insert", row, None, count=-delta))
        elif delta > 0:
            left = delta + min(0, changes.later_delta.get(row, 0))
            if left > 0:
                out.actions.append(Action("delete", row, row, count=left))
    left_after: dict[tuple, int] = {}
    for (_, after), n in changes.pairs.items():
        left_after[after] = left_after.get(after, 0) + n
    for after in left_after:
        left_after[after] += min(0, changes.later_delta.get(after, 0))
    schema = out.schema
    for (before, after), n in changes.pairs.items():
        take = max(0, min(n, left_after[after]))
        left_after[after] -= take
        sets = {i: before[i] for i in range(len(before)) if before[i] != after[i] and not schema.columns[i].generated}
        if take:
            out.actions.append(Action("update", after, after, sets, count=take))
        if n - take:
            out.conflicts.append(Conflict(schema.full_name, schema.key_text(before), None, before, None,
                                          f"{n - take} row(s) the transaction updated were changed or deleted later "
                                          "(matched on the whole row: the table has no primary key): not put back",
                                          list(changes.later)))
