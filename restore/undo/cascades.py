"""Refusing an undo whose transaction changed child rows through foreign keys.

ON DELETE / ON UPDATE CASCADE, SET NULL and SET DEFAULT are done by InnoDB inside the server: the
binlog holds the parent's row images, never the children's. Putting the parents back would leave
the children deleted or changed and report success, so such a transaction is refused whole; a full
restore of the parent and its children (/restore plan) brings both back.
"""
from __future__ import annotations

from restore.errors import RestoreError
from restore.undo.inverse import TableUndo

_ACTING = ("CASCADE", "SET NULL", "SET DEFAULT")


def refuse_cascades(conn, tables: list[TableUndo]) -> None:
    for table in tables:
        schema = table.schema
        children = _children(conn, schema.db, schema.name)
        if not children:
            continue
        deleted = table.counts()["insert"] > 0 or any(c.column is None and c.restore_value is not None
                                                       for c in table.conflicts)
        changed: set[str] = set()
        if any(rule in _ACTING for _, _, _, rule, _ in children):
            for action in table.actions("update"):
                changed.update(schema.columns[i].name for i in action.sets)
        for name, child, delete_rule, update_rule, columns in children:
            # a row put back went away by a DELETE or by an UPDATE of its key: either rule may have acted
            acting = [f"ON DELETE {delete_rule}"] if deleted and delete_rule in _ACTING else []
            if update_rule in _ACTING and (deleted or changed & columns):
                acting.append(f"ON UPDATE {update_rule}")
            if not acting:
                continue
            how = " ".join(acting)
            raise RestoreError(
                f"the transaction changed {schema.full_name}, whose foreign key {name} from {child} is {how}: the "
                f"server changed {child}'s rows itself and the binlog does not hold them, so an undo would put "
                f"back {schema.full_name} without them", where=schema.full_name,
                hint="restore both tables from a dump plus the binlog with /restore plan (restore-bot plan)")


def _children(conn, db: str, table: str) -> list[tuple[str, str, str, str, set[str]]]:
    """(constraint, child db.table, DELETE_RULE, UPDATE_RULE, the parent's referenced columns)."""
    with conn.cursor() as cur:
        cur.execute("SELECT r.CONSTRAINT_NAME, r.CONSTRAINT_SCHEMA, r.TABLE_NAME, r.DELETE_RULE, r.UPDATE_RULE, "
                    "k.REFERENCED_COLUMN_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS r "
                    "JOIN information_schema.KEY_COLUMN_USAGE k ON k.CONSTRAINT_SCHEMA = r.CONSTRAINT_SCHEMA "
                    "AND k.CONSTRAINT_NAME = r.CONSTRAINT_NAME AND k.TABLE_NAME = r.TABLE_NAME "
                    "WHERE r.UNIQUE_CONSTRAINT_SCHEMA = %s AND r.REFERENCED_TABLE_NAME = %s", (db, table))
        rows = cur.fetchall()
    out: dict[tuple, tuple[str, str, str, str, set[str]]] = {}
    for name, cdb, ctable, delete_rule, update_rule, column in rows:
        entry = out.setdefault((cdb, ctable, name), (name, f"{cdb}.{ctable}", delete_rule, update_rule, set()))
        entry[4].add(column)
    return list(out.values())
