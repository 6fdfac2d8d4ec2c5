"""Moving databases out of a restore's way without deleting a row anybody else wrote.

A database on the target that a restore would overwrite holds rows of unknown origin: the
application's writes after the disaster (`--existing keep-aside`), or, left by an unfinished
run, the replay's rows mixed with whatever a writer committed meanwhile (`--restart`). Both are
moved aside with one RENAME TABLE per database, which costs no copy; only a database holding no
row at all is dropped.
"""
from __future__ import annotations

from datetime import datetime

from restore.errors import TargetError
from restore.mysql.quote import quote_ident, quote_qualified

BEFORE_RESTORE = "_before_restore_"
UNFINISHED = "__unfinished_"


def stamp() -> str:
    return datetime.now().strftime("%Y%m%d_%H%M%S")


def tables_with_rows(cur, db: str) -> list[str]:
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_TYPE='BASE TABLE' "
                "ORDER BY TABLE_NAME", (db,))
    out = []
    for (table,) in cur.fetchall():
        cur.execute(f"SELECT 1 FROM {quote_qualified(db, table)} LIMIT 1")
        if cur.fetchone():
            out.append(table)
    return out


def _objects(cur, db: str) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """(base tables, [(view, 'VIEW')], [(routine or trigger, kind)]) of `db`."""
    cur.execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (db,))
    rows = cur.fetchall()
    tables = [t for t, kind in rows if kind == "BASE TABLE"]
    views = [(t, "VIEW") for t, kind in rows if kind != "BASE TABLE"]
    cur.execute("SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s", (db,))
    code = [(r[0], r[1]) for r in cur.fetchall()]
    cur.execute("SELECT TRIGGER_NAME, 'TRIGGER' FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s", (db,))
    code += [(r[0], r[1]) for r in cur.fetchall()]
    return tables, views, code


def _refuse_code(cur, db: str) -> None:
    """Views, routines and triggers cannot follow their tables into another schema: such a
    database is left as it is, and the operator is told how to keep it."""
    _, views, code = _objects(cur, db)
    if views or code:
        names = ", ".join(f"{kind.lower()} {name}" for name, kind in (views + code)[:5])
        raise TargetError(f"{db} holds {names}, which cannot be moved aside with its tables; nothing was moved",
                          where=db, hint=f"with the application stopped, back {db} up yourself (mariadb-dump "
                                         f"--routines --triggers --events --databases {db} > {db}.sql), check the "
                                         f"file, drop {db}, then run the same command again; or restore into another "
                                         "target (the chat prod path moves triggers, views and routines)")


def _move(cur, db: str, aside: str, *, drop_code: bool) -> None:
    """Every base table of `db` into the new schema `aside`, then `db` is dropped (empty by then).
    `drop_code`: its views, routines and triggers are the restore's own (loaded from a dump) and
    are dropped; otherwise they stop the move, since they cannot follow their tables."""
    if not drop_code:
        _refuse_code(cur, db)
    tables, views, code = _objects(cur, db)
    for name, kind in views + code:
        cur.execute(f"DROP {kind} IF EXISTS {quote_qualified(db, name)}")
    cur.execute(f"CREATE DATABASE {quote_ident(aside)}")
    if tables:
        cur.execute("RENAME TABLE " + ", ".join(f"{quote_qualified(db, t)} TO {quote_qualified(aside, t)}" for t in tables))
    cur.execute(f"DROP DATABASE {quote_ident(db)}")


def keep_aside(conn, dbs: list[str]) -> dict[str, str]:
    """`--existing keep-aside`: each database to `<db>_before_restore_<time>`; nothing is deleted."""
    when = stamp()
    moved: dict[str, str] = {}
    with conn.cursor() as cur:
        for db in dbs:   # all checked before any moves: "nothing was moved" holds for several databases too
            _refuse_code(cur, db)
        for db in dbs:
            aside = f"{db}{BEFORE_RESTORE}{when}"
            _move(cur, db, aside, drop_code=False)
            moved[db] = aside
    return moved


def set_aside_unfinished(conn, dbs: list[str]) -> dict[str, str]:
    """What an unfinished run left: dropped when it holds no row, else moved to
    `<db>__unfinished_<time>` (a writer may have committed rows into it meanwhile)."""
    when = stamp()
    moved: dict[str, str] = {}
    with conn.cursor() as cur:
        for db in dbs:
            if not tables_with_rows(cur, db):
                cur.execute(f"DROP DATABASE {quote_ident(db)}")
                continue
            aside = f"{db}{UNFINISHED}{when}"
            _move(cur, db, aside, drop_code=True)
            moved[db] = aside
    return moved


def drop_empty(conn, dbs: list[str]) -> None:
    """`--existing drop`: only databases that hold no row; a row is never deleted."""
    with conn.cursor() as cur:
        full = {db: tables_with_rows(cur, db) for db in dbs}
        full = {db: t for db, t in full.items() if t}
        if full:
            listed = "; ".join(f"{db} ({', '.join(t[:5])}{' ...' if len(t) > 5 else ''})" for db, t in full.items())
            raise TargetError(f"--existing drop: the target's {listed} hold rows; restore-bot does not delete rows "
                              "it did not write, so nothing was dropped",
                              hint="use --existing keep-aside (moved to <db>_before_restore_<time>, nothing lost, "
                                   "drop it yourself once checked), or restore into another target")
        for db in dbs:
            cur.execute(f"DROP DATABASE {quote_ident(db)}")
