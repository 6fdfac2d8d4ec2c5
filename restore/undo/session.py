"""One undo, phase by phase: read the binlog, compute the inverse, look at the target (the
preview), then, unless a dry run, apply in one transaction and verify.

    read     restore.undo.changes: the transaction and the later writes to its rows
    inverse  restore.undo.inverse: per table, actions and conflicts
    preview  restore.undo.apply.observe: the target's rows now, and the preview's id
    apply    one transaction, after the same rows were read again FOR UPDATE and found unchanged
    verify   every written row holds its intended image

Every phase before `apply` only reads the user's tables, so a preview is safe to run again at any
time (the deleted rows kept whole go to scratch copies in `_restore_bot`, outside the binlog where
the user may: restore.undo.fast; dropped at the end); `apply` is one transaction, so it is either
done or not at all.
"""
from __future__ import annotations

import os

from restore.binlog.source import open_binlogs
from restore.errors import RestoreError
from restore.hooks import Hooks
from restore.mysql.dsn import Dsn
from restore.undo import apply as ap
from restore.undo.auto import resolve_auto
from restore.undo.cascades import refuse_cascades
from restore.undo.changes import UndoReader, parse_event
from restore.undo.fast import prepare
from restore.undo.inverse import TableUndo, inverse, shown
from restore.undo.store import Store
from restore.undo.unique import unique_conflicts
from restore.undo.verify_rows import drop_stale

SAMPLE = 5     # rows shown per table in a preview


def run_undo(binlogs: str | os.PathLike | Dsn, target: Dsn, event: str, *, dry_run: bool, preview: str | None,
             hooks: Hooks) -> dict:
    """The fields of restore.api.Undone."""
    auto = event.strip().lower() == "auto"
    if not auto:
        parse_event(event)     # a typo in it is reported before anything is opened
    source = open_binlogs(binlogs)
    conn = ap.connect(target)
    try:
        if auto:     # the transaction the plan would choose as the disaster, named before anything is read
            event = resolve_auto(source, conn)
        with Store() as store:
            return _run(source, conn, store, event, dry_run=dry_run, preview=preview, hooks=hooks,
                        connect=lambda: ap.connect(target))
    finally:
        conn.close()


def _run(source, conn, store: Store, event: str, *, dry_run: bool, preview: str | None, hooks: Hooks,
         connect) -> dict:
    hooks.phase_started("read", None)
    undone, changes = UndoReader(source, event, conn, store).read()
    hooks.phase_finished("read", {"transaction": undone.id, "tables": sorted(changes)})
    hooks.phase_started("preview", None)
    scratch = prepare(conn, changes, connect)
    try:
        return _preview_and_apply(conn, undone, changes, dry_run=dry_run, preview=preview, hooks=hooks)
    finally:
        for fast in scratch:
            fast.drop(conn)


def _preview_and_apply(conn, undone, changes, *, dry_run: bool, preview: str | None, hooks: Hooks) -> dict:
    tables = [inverse(c) for c in changes.values()]
    refuse_cascades(conn, tables)
    for table in tables:
        unique_conflicts(conn, table)
    pid, stale = ap.look(conn, tables, undone.id)
    doc = {"transaction": {"id": undone.id, "where": f"{undone.file}:{undone.pos}", "end": undone.end,
                           "timestamp": undone.timestamp, "statements": undone.statements},
           "preview_id": pid, "tables": [_table_doc(t) for t in tables],
           "conflicts": [c.to_dict() for t in tables for c in t.conflicts], "stale": stale}
    hooks.phase_finished("preview", {"preview_id": pid, "conflicts": len(doc["conflicts"]), "stale": len(stale)})
    doc["done_before"] = earlier = ap.done_before(conn, undone.id)
    if dry_run or earlier is not None:
        return doc     # undone already (its rows are then later writes of their own): nothing to do
    if preview is not None and preview != pid:
        raise RestoreError(f"the undo would now differ from preview {preview} (it is {pid}); nothing was changed",
                           hint=ap.CHANGED_HINT)
    if stale:
        first = stale[0]
        raise RestoreError(f"{len(stale)} row(s) on the target do not hold what the binlog says they hold at its end "
                           f"(first: {first['table']} {first['key']}); nothing was changed",
                           where=first["table"],
                           hint="the binlog read is older than the target, or the target was written outside "
                                "it: read the binlog again (or from the server itself) and run the preview again")
    drop_stale(conn)     # scratch copies of earlier undos' verifications whose process died
    hooks.phase_started("apply", sum(t.total() for t in tables))
    how = ap.apply(conn, tables, undone_id=undone.id, pid=pid, summary={t["table"]: t["rows"] for t in doc["tables"]})
    for entry in doc["tables"]:
        if entry["table"] in how:
            entry["put_back_by"] = how[entry["table"]]
    problems = ap.verify(conn, tables, {name for name, way in how.items() if way == ap.BY_BINLOG})
    hooks.phase_finished("apply", {"verification": problems, "put_back_by": how})
    return dict(doc, applied=True, verification=problems)


def _table_doc(table: TableUndo) -> dict:
    schema = table.schema
    names = [c.name for c in schema.columns]
    sample = []
    for action in table.first(SAMPLE) or (table.fast.sample(SAMPLE) if table.fast is not None else []):
        row = action.intended() if action.kind != "delete" else action.row
        entry = {"action": action.kind, "key": schema.key_text(action.row),
                 "values": {names[i]: shown(v) for i, v in enumerate(row)}}
        if action.kind == "update":
            entry["columns"] = [names[i] for i in action.sets]
        if action.count != 1:
            entry["count"] = action.count
        sample.append(entry)
    return {"table": schema.full_name, "key": [names[i] for i in schema.key] or None, "rows": table.counts(),
            "sample": sample, "conflicts": len(table.conflicts), "later_transactions": table.later}
