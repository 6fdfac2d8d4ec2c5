"""Deleted rows kept whole: the server counts, checks and compares them, not Python row by row.

The common undo is a DELETE whose rows nothing wrote again. The reader keeps each of its
DELETE_ROWS events' images in one piece, none looked at (restore.undo.raw.RawTable.keep_run,
restore.undo.changes). Here they are written once, before the preview, by the same BINLOG
statements the apply sends, their table map naming a scratch copy of the table
(`_restore_bot.undo_verify_<pid>_<hex>`, as restore.undo.verify_rows). The scratch copy then
answers by key, in a few statements, what the reader would have walked every row for:

- how many rows go back (the apply checks the table's row count against it);
- whether a later transaction wrote one of their keys: then the pieces are split into their rows
  and go the row-by-row way, conflicts and all (restore.undo.changes.TableChanges.materialize);
- whether the target holds a row at one of their keys (stale: the preview refuses);

and after the commit every row put back is compared with it (restore.undo.verify_rows).

Used only where the rows can go back by BINLOG at all and the table has no unique index but its
primary key (a row put back could collide on one: restore.undo.unique looks row by row). Anything
the server refuses here sends the table the row-by-row way: never an error of its own.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pymysql

from restore.mysql.quote import quote_ident, quote_qualified
from restore.target.checkpoint import SCHEMA
from restore.undo.apply import BATCH, binlog_refused, key_in
from restore.undo.changes import TableChanges
from restore.undo.inverse import Action, shown
from restore.undo.unique import unique_indexes
from restore.undo.verify_rows import PREFIX, drop_stale, unlogged

STALE_SHOWN = 100
SCRATCH_ENGINE = os.environ.get("RESTORE_UNDO_SCRATCH_ENGINE", "MyISAM")     # stale rows named per table (the preview refuses on the first)


class FastRows:
    """One table's deleted rows kept whole, written to a scratch copy of the table."""

    def __init__(self, changes: TableChanges) -> None:
        self.changes = changes
        self.schema, self.raw = changes.schema, changes.raw
        self.name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        self.scratch = quote_qualified(SCHEMA, self.name)
        self.count = 0

    def refs(self) -> Iterator[int]:
        """The pieces, in the binlog's order (restore.undo.raw sends them)."""
        return self.changes.run_refs()

    def fill(self, conn) -> bool:
        """Write the scratch copy; False when a later write touched one of its keys."""
        schema = self.schema
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(SCHEMA)}")
            cur.execute(f"CREATE TABLE {self.scratch} LIKE {schema.ident}")
            try:
                cur.execute(f"ALTER TABLE {self.scratch} ENGINE={SCRATCH_ENGINE}")
            except pymysql.MySQLError:
                pass     # an option or key the engine does not take: the table's own engine then
            logged = unlogged(cur)
            try:
                self.raw.for_table(SCHEMA, self.name).send(conn, self.refs())
            finally:
                if logged:
                    cur.execute("SET SESSION sql_log_bin = 1")
            cur.execute(f"SELECT COUNT(*) FROM {self.scratch}")
            self.count = cur.fetchone()[0]
            keys = list(self.changes.later_keys())
            for i in range(0, len(keys), BATCH):
                cur.execute(f"SELECT 1 FROM {self.scratch} WHERE {key_in(conn, schema, keys[i:i + BATCH])} LIMIT 1")
                if cur.fetchone():
                    return False
        return True

    def look(self, conn, digest, stale: list[dict]) -> None:
        """restore.undo.apply.look for these rows: every one an insert, so a row the target holds at
        one of their keys is stale."""
        digest.update(b"\0kept whole %d %d" % (self.count, self.raw.crc))
        schema = self.schema
        on = " AND ".join(f"s.{k} = t.{k}" for k in self._key())
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join('s.' + k for k in self._key())} FROM {self.scratch} AS s "
                        f"JOIN {schema.ident} AS t ON {on} LIMIT {STALE_SHOWN}")
            keys = [tuple(r) for r in cur.fetchall()]
        if not keys:
            return
        intended, now = (self.rows(conn, ident, keys) for ident in (self.scratch, schema.ident))
        for key in keys:
            digest.update(repr((key, now.get(key))).encode())
            stale.append({"table": schema.full_name, "key": schema.key_text(intended[key]), "action": "insert",
                          "binlog_end": None, "target": shown(now.get(key))})

    def rows(self, conn, ident: str, keys: list[tuple]) -> dict[tuple, tuple]:
        """The rows of `ident` (the scratch copy or the table) at `keys`, by key."""
        schema = self.schema
        with conn.cursor() as cur:
            cur.execute(f"SELECT {schema.select_list()} FROM {ident} WHERE {key_in(conn, schema, keys)}")
            return {schema.key_of(tuple(r)): tuple(r) for r in cur.fetchall()}

    def sample(self, n: int) -> list[Action]:
        """The first `n` rows put back, decoded (the preview shows them)."""
        out: list[Action] = []
        for ref in self.refs():
            out += [Action("insert", self.raw.decode(image), None) for _, image in self.raw.run_rows(ref, n - len(out))]
            if len(out) >= n:
                break
        return out

    def _key(self) -> list[str]:
        return [quote_ident(self.schema.columns[i].name) for i in self.schema.key]

    def drop(self, conn) -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {self.scratch}")
        except pymysql.MySQLError:
            pass     # the session is gone: drop_stale removes it on the next undo


def prepare(conn, changes: dict[str, TableChanges]) -> list[FastRows]:
    """Each table whose deleted rows are kept whole gets them written to its scratch copy, or split
    into rows (materialize) where that cannot be or a later write touched one of them. Returns the
    scratch copies, to be dropped at the end (FastRows.drop)."""
    made: list[FastRows] = []
    swept = False
    for table in changes.values():
        if not table.runs:
            continue
        fast = None
        try:
            if not unique_indexes(conn, table):
                with conn.cursor() as cur:
                    refused = binlog_refused(cur, table)
                if not refused:
                    if not swept:
                        drop_stale(conn)     # scratch copies of earlier undos whose process died
                        swept = True
                    fast = FastRows(table)
                    made.append(fast)
                    if not fast.fill(conn):
                        fast = None
        except pymysql.MySQLError:
            fast = None
        if fast is None:
            table.materialize()
        else:
            table.fast = fast
    return made
