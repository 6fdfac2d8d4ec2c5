"""Unique (non-primary) keys: a row the undo puts back, or a column it sets back, may need a unique
value that a later row holds now. Such a row is a conflict shown in the preview (table, key, the
index, the value, the row holding it), not left for the apply's duplicate-key error to refuse the
whole undo: the later row stays, like a reused primary key.

The target decides what "the same value" means (its collation: 'a' and 'A' collide in a
case-insensitive index), so the lookup asks it with the index's own columns.
"""
from __future__ import annotations

from restore.mysql.quote import quote_ident
from restore.undo.apply import BATCH, literal
from restore.undo.inverse import Action, Conflict, TableUndo
from restore.undo.store import key_blob, loads


def unique_indexes(conn, table: TableUndo) -> dict[str, tuple[int, ...]]:
    """index name -> its column indexes, for every UNIQUE index but the primary key."""
    schema = table.schema
    names = [c.name for c in schema.columns]
    out: dict[str, list[int]] = {}
    with conn.cursor() as cur:
        cur.execute("SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s "
                    "AND TABLE_NAME=%s AND NON_UNIQUE=0 AND INDEX_NAME<>'PRIMARY' ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                    (schema.db, schema.name))
        for index, column in cur.fetchall():
            out.setdefault(index, []).append(names.index(column))
    return {k: tuple(v) for k, v in out.items()}


def unique_conflicts(conn, table: TableUndo) -> None:
    """Turn every insert/update whose intended row would collide on a unique index with a row the
    undo leaves in place into a conflict (the action is dropped)."""
    indexes = unique_indexes(conn, table)
    if not indexes:
        return
    for actions in table.batches(BATCH):
        for name, cols in indexes.items():
            wanted = [(a, tuple(a.intended()[i] for i in cols)) for a in actions
                      if a.kind == "insert" or (a.kind == "update" and any(i in a.sets for i in cols))]
            wanted = [(a, v) for a, v in wanted if None not in v]     # NULLs never collide
            if wanted:
                _check(conn, table, name, cols, wanted)


def _check(conn, table: TableUndo, name: str, cols: tuple[int, ...], wanted: list[tuple[Action, tuple]]) -> None:
    schema = table.schema
    names = "(" + ", ".join(quote_ident(schema.columns[i].name) for i in cols) + ")"

    def holding(values: list[tuple]) -> list[tuple]:
        text = ", ".join("(" + ", ".join(literal(conn, v) for v in value) + ")" for value in values)
        with conn.cursor() as cur:
            cur.execute(f"SELECT {schema.select_list()} FROM {schema.ident} WHERE {names} IN ({text})")
            return [tuple(r) for r in cur.fetchall()]
    if not holding([v for _, v in wanted]):
        return
    # some value is taken: which row holds which one, asked value by value (the column's collation decides)
    for action, value in wanted:
        own = schema.key_of(action.row)
        holders = [h for h in holding([value]) if schema.key_of(h) != own and not _leaves(table, h, cols)]
        if not holders:
            continue
        holder = holders[0]
        table.drop(action)
        what = "this row is not put back" if action.kind == "insert" else "these columns are not set back"
        table.conflicts.append(Conflict(
            schema.full_name, schema.key_text(action.row), ", ".join(schema.columns[i].name for i in cols),
            value, tuple(holder[i] for i in cols),
            f"unique index {name}: a later row ({schema.key_text(holder)}) holds the value and stays; {what}",
            index=name))


def _leaves(table: TableUndo, holder: tuple, cols: tuple[int, ...]) -> bool:
    """The undo itself deletes the holding row, or sets one of the index's columns of it back."""
    for kind, sets in table.store.db.execute("SELECT kind, sets FROM act WHERE t = ? AND k = ?",
                                             (table.tid, key_blob(table.schema.key_of(holder)))).fetchall():
        if kind == "delete" or (kind == "update" and any(i in (loads(sets) or {}) for i in cols)):
            return True
    return False
