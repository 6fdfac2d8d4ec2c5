"""Looking at the target's rows an undo touches, and applying the undo in one transaction.

What the target holds at each row an action touches is `observed` at preview time; the apply reads
the same rows again `FOR UPDATE` inside its own transaction and goes on only if nothing changed
(else it rolls back: never half-applied). Values are compared in Python, exactly (restore.undo.values
decodes the binlog to the values PyMySQL returns), never with the server's collations.
"""
from __future__ import annotations

import hashlib
import json

from restore.errors import RestoreError
from restore.mysql.quote import quote_ident
from restore.undo.inverse import Action, TableUndo, shown
from restore.undo.values import TableSchema

CHANGED_HINT = "the target changed since the preview; run the preview again (restore-bot undo ... --dry-run)"


def connect(dsn):
    """A target session in UTC (TIMESTAMP values decode in UTC), not autocommitting."""
    conn = dsn.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    return conn


def _cols(schema: TableSchema) -> str:
    return ", ".join(quote_ident(c.name) for c in schema.columns)


def _where_key(schema: TableSchema, row: tuple) -> tuple[str, list]:
    cols = schema.key or tuple(range(len(schema.columns)))
    op = "=" if schema.key else "<=>"
    return (" AND ".join(f"{quote_ident(schema.columns[i].name)} {op} %s" for i in cols),
            [row[i] for i in cols])


def observe(conn, table: TableUndo, *, lock: bool = False) -> list:
    """Per action, what the target holds: the row at its key (or None), or, in a table without a
    key, how many rows are identical to it."""
    schema = table.schema
    out: list = []
    with conn.cursor() as cur:
        for action in table.actions:
            where, args = _where_key(schema, action.row)
            cur.execute(f"SELECT {_cols(schema)} FROM {schema.ident} WHERE {where}{' FOR UPDATE' if lock else ''}", args)
            rows = [tuple(r) for r in cur.fetchall()]
            if schema.key:
                out.append(rows[0] if rows else None)
            else:
                out.append(sum(1 for r in rows if r == action.row))
    return out


def mismatches(table: TableUndo, observed: list) -> list[dict]:
    """Rows where the target does not hold what the binlog's end says: the binlog read is older
    than the target (or the target was written outside it). The undo is refused while any is left."""
    out = []
    schema = table.schema
    for action, seen in zip(table.actions, observed):
        if schema.key:
            bad = seen != action.expected
        else:
            bad = action.kind == "delete" and seen < action.count
        if bad:
            out.append({"table": schema.full_name, "key": schema.key_text(action.row), "action": action.kind,
                        "binlog_end": shown(action.expected), "target": shown(seen)})
    return out


def preview_id(undone_id: str, tables: list[TableUndo], observed: dict[str, list]) -> str:
    """What the operator saw, as a short hash: the same undo on the same target rows has the same id."""
    doc = [undone_id] + [[t.schema.full_name, [[a.kind, shown(a.row), shown(sorted(a.sets.items())), a.count]
                                               for a in t.actions], shown(tuple(observed[t.schema.full_name]))]
                         for t in tables]
    return hashlib.sha256(json.dumps(doc, default=str, sort_keys=True).encode()).hexdigest()[:16]


def apply(conn, tables: list[TableUndo], observed: dict[str, list]) -> None:
    """All actions in one transaction, after checking under lock that the rows are as observed."""
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION")
        try:
            for table in tables:
                if observe(conn, table, lock=True) != observed[table.schema.full_name]:
                    raise RestoreError(f"{table.schema.full_name}: rows the undo touches changed on the target since "
                                       "the preview; nothing was changed", hint=CHANGED_HINT)
            for table in tables:
                for action in table.actions:
                    _run(cur, table.schema, action)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise


def _run(cur, schema: TableSchema, action: Action) -> None:
    if action.kind == "insert":
        cols = [i for i, c in enumerate(schema.columns) if not c.generated]
        sql = (f"INSERT INTO {schema.ident} ({', '.join(quote_ident(schema.columns[i].name) for i in cols)}) "
               f"VALUES ({', '.join(['%s'] * len(cols))})")
        cur.executemany(sql, [[action.row[i] for i in cols]] * action.count)
        return
    where, args = _where_key(schema, action.row)
    if action.kind == "update":
        sets = ", ".join(f"{quote_ident(schema.columns[i].name)} = %s" for i in action.sets)
        done = cur.execute(f"UPDATE {schema.ident} SET {sets} WHERE {where}", list(action.sets.values()) + args)
    else:
        done = cur.execute(f"DELETE FROM {schema.ident} WHERE {where}{'' if schema.key else f' LIMIT {action.count}'}",
                           args)
    if done != action.count:
        raise RestoreError(f"{schema.full_name} {schema.key_text(action.row)}: the {action.kind} changed {done} rows, "
                           f"{action.count} expected; nothing was changed", hint=CHANGED_HINT)


def verify(conn, tables: list[TableUndo], before: dict[str, list]) -> list[dict]:
    """After the commit: every row the undo wrote holds its intended image (PK tables), and a table
    without a key holds as many identical rows as intended."""
    problems = []
    for table in tables:
        schema = table.schema
        for action, now, was in zip(table.actions, observe(conn, table), before[schema.full_name]):
            if schema.key:
                want = action.intended()
            else:
                want = was + action.count if action.kind == "insert" else was - action.count
            if now != want:
                problems.append({"table": schema.full_name, "key": schema.key_text(action.row), "action": action.kind,
                                 "intended": shown(want), "target": shown(now)})
    return problems
