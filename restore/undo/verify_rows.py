"""After the commit: every row an undo put back by BINLOG statements holds its logged image, all of
them, checked by the server without reading them back through PyMySQL.

The same BINLOG statements the apply sent (restore.undo.raw) are sent again with their table map
naming a scratch copy of the table (`CREATE TABLE _restore_bot.undo_verify_<pid>_<hex> LIKE ...`:
a real table, as BINLOG cannot write a TEMPORARY one). The scratch copy then holds exactly the
rows intended, and one LEFT JOIN on the primary key counts those that have no identical row in the
target, every stored column compared byte for byte (`BINARY s.c <=> BINARY t.c`: a plain `<=>`
would let a string's collation call 'a' and 'A' equal). A few of the rows found are read to
report them. The scratch table is always dropped; one left by an undo that died (its pid gone) is
dropped at the start of the next. Rows kept whole (restore.undo.fast) have their scratch copies
written before the preview already: the same comparison runs against them, inside the undo's
transaction.
"""
from __future__ import annotations

import os
import secrets

import pymysql

from restore.mysql.procs import alive
from restore.mysql.quote import quote_ident, quote_qualified
from restore.target.checkpoint import SCHEMA
from restore.undo.inverse import TableUndo, shown

PREFIX = "undo_verify_"
SHOWN = 5     # mismatching rows reported per table


def drop_stale(conn) -> None:
    """Drop the scratch tables of undos whose process is gone."""
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE %s",
                    (SCHEMA, PREFIX.replace("_", "\\_") + "%"))
        for (name,) in cur.fetchall():
            pid = name[len(PREFIX):].split("_")[0]
            if pid.isdigit() and not alive(int(pid)):
                cur.execute(f"DROP TABLE IF EXISTS {quote_qualified(SCHEMA, name)}")


def verify_binlog_rows(conn, table: TableUndo) -> list[dict]:
    """The rows of `table` put back by BINLOG statements that the target does not hold exactly
    (up to SHOWN of them, and one entry counting the rest), as restore.undo.apply.verify reports.
    The undo is committed by then: a verification the server refuses is a problem reported, not
    an error (which would read as "not applied")."""
    try:
        return _verify(conn, table)
    except pymysql.MySQLError as exc:
        return [{"table": table.schema.full_name, "key": None, "action": "insert", "intended": "every row compared",
                 "target": f"not verified: the target refused the scratch copy ({exc.args[-1]})"}]


def _verify(conn, table: TableUndo) -> list[dict]:
    schema = table.schema
    name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    scratch = quote_qualified(SCHEMA, name)
    raw = table.raw.for_table(SCHEMA, name)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {scratch} LIKE {schema.ident}")
        logged = unlogged(cur)
        try:
            want = raw.send(conn, table.raw_inserts())
            return compare(conn, cur, table, scratch, want)
        finally:
            try:
                if logged:
                    cur.execute("SET SESSION sql_log_bin = 1")
                cur.execute(f"DROP TABLE IF EXISTS {scratch}")
            except pymysql.MySQLError:
                pass     # the session is gone: drop_stale removes it on the next undo


def unlogged(cur) -> bool:
    """The scratch copy's rows kept out of the target's binlog where the user may (they are
    written twice else, and a replica would get them): True if logging was turned off here."""
    cur.execute("SELECT @@SESSION.sql_log_bin")
    if not cur.fetchone()[0]:
        return False
    try:
        cur.execute("SET SESSION sql_log_bin = 0")
    except pymysql.MySQLError:
        return False     # not allowed: the rows are logged, and dropped with the table
    return True


# Types whose values compare exactly as themselves: integers, DECIMAL, dates and times with their
# fractions. Compared as bytes they are first made strings: a fifth of the comparison's time at
# 1,000,000 rows. Everything else goes as bytes: strings (a collation calls 'a' and 'A' equal),
# floats (-0 and 0 are equal as numbers), TIMESTAMP (compared in the session's time zone).
_EXACT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "year", "bit",
                          "date", "time", "datetime"})


def missing_rows(schema, scratch: str) -> str:
    """FROM ... WHERE: the rows of `scratch` that the table does not hold exactly, every stored column
    compared (_EXACT_TYPES as themselves, the others as bytes)."""
    key = [quote_ident(schema.columns[i].name) for i in schema.key]
    same = [f"s.{k} = t.{k}" for k in key]
    for c in schema.columns:
        if not c.generated:
            name = quote_ident(c.name)
            same.append(f"s.{name} <=> t.{name}" if c.data_type in _EXACT_TYPES
                        else f"BINARY s.{name} <=> BINARY t.{name}")
    return f"FROM {scratch} AS s LEFT JOIN {schema.ident} AS t ON {' AND '.join(same)} WHERE t.{key[0]} IS NULL"


def compare(conn, cur, table: TableUndo, scratch: str, want: int) -> list[dict]:
    """The rows of `scratch` (`want` of them) that the table does not hold exactly, as verify_binlog_rows reports them."""
    schema = table.schema
    key = [quote_ident(schema.columns[i].name) for i in schema.key]
    missing = missing_rows(schema, scratch)
    cur.execute(f"SELECT COUNT(*), (SELECT COUNT(*) FROM {scratch}) {missing}")
    bad, held = cur.fetchone()
    problems = []
    if held != want:
        problems.append({"table": schema.full_name, "key": None, "action": "insert",
                         "intended": f"{want} rows", "target": f"{held} rows written again to a scratch copy"})
    if not bad:
        return problems
    cur.execute(f"SELECT {', '.join('s.' + k for k in key)} {missing} LIMIT {SHOWN}")
    keys = [tuple(r) for r in cur.fetchall()]
    where = " OR ".join("(" + " AND ".join(f"{k} = {conn.escape(v)}" for k, v in zip(key, kv)) + ")" for kv in keys)
    rows = []
    for ident in (scratch, schema.ident):
        cur.execute(f"SELECT {schema.select_list()} FROM {ident} WHERE {where}")
        rows.append({schema.key_of(tuple(r)): tuple(r) for r in cur.fetchall()})
    intended, now = rows
    for kv in keys:
        row = intended.get(kv)
        problems.append({"table": schema.full_name, "key": schema.key_text(row) if row else repr(kv),
                         "action": "insert", "intended": shown(row), "target": shown(now.get(kv))})
    if bad > len(keys):
        problems.append({"table": schema.full_name, "key": None, "action": "insert",
                         "intended": f"{bad - len(keys)} more rows", "target": "not held exactly"})
    return problems
