"""A database's triggers, views and routines across a production swap.

RENAME TABLE moves base tables only, and refuses a table with triggers into another schema
(error 1435), so these objects cannot ride along with the swap. They are read from the verified
rebuild (where the schema has its production name, so definitions that name it stay right), kept
in a table of the shadow schema on the target (so a run that dies after the RENAME can finish
from there), and created in the live schema after the RENAME. The live schema's own triggers,
and its views and routines the restored ones replace, are kept the same way and re-created in
the aside schema next to the tables they belong to.
"""
from __future__ import annotations

from dataclasses import dataclass

import pymysql

from restore.errors import TargetError
from restore.mysql.quote import quote_ident

STASH = "_restore_bot_objects"   # a table of the shadow schema; never renamed into production
KINDS = ("FUNCTION", "PROCEDURE", "VIEW", "TRIGGER")   # creation order: views may call functions


@dataclass(frozen=True)
class DbObject:
    kind: str            # one of KINDS
    name: str
    sql: str             # views, routines: SHOW CREATE's statement, names relative to the schema (USE);
                         # triggers: "FOR EACH ROW <body>", the head is rebuilt for the schema it goes to
    sql_mode: str = ""
    table: str = ""      # triggers only: the table, "BEFORE INSERT" and the definer
    timing: str = ""
    definer: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind.lower()} {self.name}"


def read(cur, db: str) -> list[DbObject]:
    """`db`'s routines, views and triggers, in the order they can be created again."""
    cur.execute("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s "
                "ORDER BY ROUTINE_TYPE, ROUTINE_NAME", (db,))
    routines = cur.fetchall()
    cur.execute("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA=%s ORDER BY TABLE_NAME", (db,))
    views = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, DEFINER, SQL_MODE, "
                "ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s "
                "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER", (db,))
    out = [DbObject("TRIGGER", name, f"FOR EACH ROW {body}", mode, table, f"{timing} {event}", definer)
           for name, table, timing, event, definer, mode, body in cur.fetchall()]
    if not routines and not views:
        return out
    # With the schema as the session's default, SHOW CREATE VIEW leaves its name out of the
    # definition: the view then resolves against whichever schema it is created in.
    cur.execute(f"USE {quote_ident(db)}")
    first: list[DbObject] = []
    for kind, name in routines:
        cur.execute(f"SHOW CREATE {kind} {quote_ident(name)}")
        row = cur.fetchone()
        if row[2] is None:
            raise TargetError(f"cannot read the definition of {kind.lower()} {db}.{name}",
                              hint="the restore account needs SELECT on mysql.proc (or to be the definer)")
        first.append(DbObject(kind, name, row[2], row[1]))
    for name in views:
        cur.execute(f"SHOW CREATE VIEW {quote_ident(name)}")
        first.append(DbObject("VIEW", name, cur.fetchone()[1]))
    return first + out


def create(cur, obj: DbObject, db: str) -> None:
    """(Re)create `obj` in `db`: dropped first, so that a rerun replaces what an earlier one made."""
    cur.execute("SET @restore_bot_mode = @@SESSION.sql_mode")
    cur.execute("SET SESSION sql_mode = %s", (obj.sql_mode,))
    try:
        if obj.kind == "TRIGGER":
            cur.execute(f"DROP TRIGGER IF EXISTS {quote_ident(db)}.{quote_ident(obj.name)}")
            user, _, host = obj.definer.rpartition("@")
            cur.execute(f"CREATE DEFINER={quote_ident(user)}@{quote_ident(host)} TRIGGER {quote_ident(db)}.{quote_ident(obj.name)} {obj.timing} "
                        f"ON {quote_ident(db)}.{quote_ident(obj.table)} {obj.sql}")
        else:
            cur.execute(f"USE {quote_ident(db)}")
            cur.execute(f"DROP {obj.kind} IF EXISTS {quote_ident(obj.name)}")
            cur.execute(obj.sql)
    finally:
        cur.execute("SET SESSION sql_mode = @restore_bot_mode")


def create_all(cur, objs: list[DbObject], db: str, failed: list[tuple[DbObject, Exception]] | None = None) -> None:
    """Create `objs` in `db`. Raises TargetError naming the first object the server refuses; with
    `failed`, lists them there and goes on."""
    def attempt(obj: DbObject) -> Exception | None:
        try:
            create(cur, obj, db)
        except pymysql.err.MySQLError as exc:
            return exc
        return None

    def refused(*which: tuple[DbObject, Exception]) -> None:
        if failed is None:
            raise _refused(list(which), db) from which[0][1]
        failed.extend(which)

    ordered = sorted(objs, key=lambda o: KINDS.index(o.kind))   # stable: keeps the triggers' order
    for obj in (o for o in ordered if o.kind in ("FUNCTION", "PROCEDURE")):
        if (exc := attempt(obj)) is not None:
            refused((obj, exc))
    # A view on a view needs the other one first: retry those refused while others succeed.
    views = [o for o in ordered if o.kind == "VIEW"]
    while views:
        tried = [(obj, attempt(obj)) for obj in views]
        again = [(obj, exc) for obj, exc in tried if exc is not None]
        if len(again) == len(views):
            refused(*again)   # all of them: the first may only be waiting for another
            break
        views = [obj for obj, _exc in again]
    for obj in (o for o in ordered if o.kind == "TRIGGER"):
        if (exc := attempt(obj)) is not None:
            refused((obj, exc))


def _refused(which: list[tuple[DbObject, Exception]], db: str) -> TargetError:
    what = "; ".join(f"{obj.label}: {exc}" for obj, exc in which)
    return TargetError(f"creating the restored copy's triggers, views and routines in {db} failed ({what}); the "
                       f"restored tables are in place, but {db} lacks {'this' if len(which) == 1 else 'these'} "
                       "and what had not been created yet", where=f"{db}.{which[0][0].name}",
                       hint="fix the cause (missing privilege, definer, a dependency), then run the job again: "
                            "it recognises the swap and creates the objects again without rebuilding")


def differences(cur, db: str, expected: list[DbObject]) -> list[str]:
    """How `db`'s objects differ from `expected` (by name and definition); what it has besides is not counted."""
    have = {o.label: o for o in read(cur, db)}
    out = []
    for obj in expected:
        got = have.get(obj.label)
        if got is None:
            out.append(f"{obj.label} is missing")
        elif (got.sql, got.table, got.timing) != (obj.sql, obj.table, obj.timing):
            out.append(f"{obj.label} has another definition")
    return out


def save(cur, shadow: str, side: str, objs: list[DbObject]) -> None:
    """Keep `objs` in the shadow schema's STASH (side "restored": for production, "live": for the aside schema)."""
    cur.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(shadow)}.{quote_ident(STASH)} (seq INT PRIMARY KEY, side VARCHAR(8), "
                "kind VARCHAR(10), name VARCHAR(64), tbl VARCHAR(64), timing VARCHAR(20), definer VARCHAR(400), "
                "sql_mode VARCHAR(1000), body LONGTEXT) ENGINE=InnoDB CHARACTER SET utf8mb4")
    cur.execute(f"DELETE FROM {quote_ident(shadow)}.{quote_ident(STASH)} WHERE side=%s", (side,))
    cur.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {quote_ident(shadow)}.{quote_ident(STASH)}")
    start = cur.fetchone()[0] + 1
    if objs:
        cur.executemany(f"INSERT INTO {quote_ident(shadow)}.{quote_ident(STASH)} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(start + i, side, o.kind, o.name, o.table, o.timing, o.definer, o.sql_mode, o.sql)
                         for i, o in enumerate(objs)])


def load(cur, shadow: str, side: str) -> list[DbObject]:
    cur.execute(f"SELECT kind, name, body, sql_mode, tbl, timing, definer FROM {quote_ident(shadow)}.{quote_ident(STASH)} "
                "WHERE side=%s ORDER BY seq", (side,))
    return [DbObject(*row) for row in cur.fetchall()]
