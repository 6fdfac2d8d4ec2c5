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

and every row put back is checked against them inside the undo's transaction, before its commit
(restore.undo.fast_apply).

Used only where the rows can go back by BINLOG at all and the table has no unique index but its
primary key (a row put back could collide on one: restore.undo.unique looks row by row). Anything
the server refuses here sends the table the row-by-row way: never an error of its own.
"""
from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pymysql

from restore.mysql.quote import quote_ident, quote_qualified
from restore.target.checkpoint import SCHEMA
from restore.undo.apply import BATCH, binlog_refused, key_in
from restore.undo.changes import TableChanges
from restore.undo.inverse import Action, shown
from restore.undo.raw import SIZE_BITS
from restore.undo.unique import unique_indexes
from restore.undo.verify_rows import PREFIX, drop_stale, unlogged

T = TypeVar("T")
STALE_SHOWN = 100     # stale rows named per table (the preview refuses on the first)
# The scratch copies take no part in any transaction: MyISAM writes them without the undo and
# redo logs and the buffer pool InnoDB would give them (see _lighten).
SCRATCH_ENGINE = "MyISAM"
# Images per scratch copy. The parts are written by WRITERS sessions at once (as many parts for each)
# and, where they are compared by key, each while the next one is put back (restore.undo.fast_apply).
# Each part costs its DDL: at 1,000,000 rows (~50 MB) two parts were written in 0.67-0.77 s against
# 0.89-1.10 s for one, and six put back 0.3 s slower than one.
PART_BYTES = 16 << 20
MAX_PARTS = 8
WRITERS = 2           # sessions writing the scratch copies at once


class FastRows:
    """One table's deleted rows kept whole, written to scratch copies of the table: one, or up to
    MAX_PARTS (the pieces in order, cut by bytes) written by WRITERS sessions at once."""

    def __init__(self, changes: TableChanges, connect: Callable[[], object]) -> None:
        self.changes, self.connect = changes, connect
        self.schema, self.raw = changes.schema, changes.raw
        self.parts: list[tuple[str, str]] = []      # (name, quoted ident) of each scratch copy
        self.part_refs: list[list[int]] = []        # the pieces each one holds
        self.counts: list[int] = []
        self.count = 0
        self.sessions: dict[int, object] = {}     # writer (1, ...) -> its session (_at_once); 0 is the caller's

    def refs(self) -> Iterator[int]:
        """The pieces, in the binlog's order (restore.undo.raw sends them)."""
        return self.changes.run_refs()

    def fill(self, conn) -> bool:
        """Write the scratch copies; False when a later write touched one of their keys."""
        schema = self.schema
        self.part_refs = _parts(list(self.refs()))
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(SCHEMA)}")
        for _ in self.part_refs:     # named before any is made: drop() finds every one a session began
            name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
            self.parts.append((name, quote_qualified(SCHEMA, name)))

        def write(c, i: int) -> int:
            # each session makes its own copies: their CREATE/ALTERs run at once, as the writes do
            name, ident = self.parts[i]
            with c.cursor() as cur:
                cur.execute(f"CREATE TABLE {ident} LIKE {schema.ident}")
                _lighten(cur, self.parts[i])
                logged = unlogged(cur)
                try:
                    cur.execute(self.raw.fde_statement())
                    self.raw.for_table(SCHEMA, name).send(c, iter(self.part_refs[i]))
                finally:
                    if logged:
                        cur.execute("SET SESSION sql_log_bin = 1")
                cur.execute(f"SELECT COUNT(*) FROM {ident}")
                return cur.fetchone()[0]
        self.counts = self._at_once(conn, write)
        self.count = sum(self.counts)
        keys = list(self.changes.later_keys())
        with conn.cursor() as cur:
            for _, ident in self.parts:
                for i in range(0, len(keys), BATCH):
                    cur.execute(f"SELECT 1 FROM {ident} WHERE {key_in(conn, schema, keys[i:i + BATCH])} LIMIT 1")
                    if cur.fetchone():
                        return False
        return True

    def _at_once(self, conn, job: Callable[[object, int], T]) -> list[T]:
        """job(session, part) for every scratch copy, WRITERS sessions at once, each taking every
        WRITERS-th part: the first on `conn`, the others each on a session of its own, from a
        thread (the server runs them on as many cores). Those sessions are opened once and kept
        until drop(): fill and look use them."""
        out: list = [None] * len(self.parts)
        failed: list[BaseException] = []
        writers = min(WRITERS, len(self.parts))

        def turn(c, w: int) -> None:
            for i in range(w, len(self.parts), writers):
                out[i] = job(c, i)

        def other(w: int) -> None:
            try:
                c = self.sessions.get(w)
                if c is None:
                    c = self.sessions[w] = self.connect()
                turn(c, w)
            except BaseException as exc:     # handed to the caller
                failed.append(exc)
        threads = [threading.Thread(target=other, args=(w,), name="restore-undo-scratch", daemon=True)
                   for w in range(1, writers)]
        for t in threads:
            t.start()
        try:
            turn(conn, 0)
        finally:
            for t in threads:
                t.join()
        if failed:
            raise failed[0]
        return out

    def look(self, conn, digest, stale: list[dict]) -> None:
        """restore.undo.apply.look for these rows: every one an insert, so a row the target holds at
        one of their keys is stale."""
        digest.update(b"\0kept whole %d %d" % (self.count, self.raw.crc))
        schema = self.schema
        on = " AND ".join(f"s.{k} = t.{k}" for k in self._key())

        def held(c, i: int) -> list[tuple]:
            with c.cursor() as cur:
                cur.execute(f"SELECT {', '.join('s.' + k for k in self._key())} FROM {self.parts[i][1]} AS s "
                            f"JOIN {schema.ident} AS t ON {on} LIMIT {STALE_SHOWN}")
                return [tuple(r) for r in cur.fetchall()]
        keys = [key for part in self._at_once(conn, held) for key in part]
        if not keys:
            return
        intended = {}
        for _, ident in self.parts:
            intended.update(self.rows(conn, ident, keys))
        now = self.rows(conn, schema.ident, keys)
        for key in keys:
            digest.update(repr((key, now.get(key))).encode())
            stale.append({"table": schema.full_name, "key": schema.key_text(intended[key]), "action": "insert",
                          "binlog_end": None, "target": shown(now.get(key))})

    def rows(self, conn, ident: str, keys: list[tuple]) -> dict[tuple, tuple]:
        """The rows of `ident` (a scratch copy or the table) at `keys`, by key."""
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
        for c in self.sessions.values():
            try:
                c.close()
            except pymysql.MySQLError:
                pass
        self.sessions.clear()
        try:
            with conn.cursor() as cur:
                for _, ident in self.parts:
                    cur.execute(f"DROP TABLE IF EXISTS {ident}")
        except pymysql.MySQLError:
            pass     # the session is gone: drop_stale removes them on the next undo


def _lighten(cur, part: tuple[str, str]) -> None:
    """A scratch copy made cheap to write: MyISAM, and no index (nothing looks a row up in it: the
    comparisons scan it and look the rows up in the table), with the live checksum MyISAM keeps as
    it writes (CHECKSUM=1: read at no cost, restore.undo.fast_apply). One ALTER where the server
    takes it (each ALTER rebuilds the table: the two took ~50 ms a copy, profiled at 200,000 rows);
    else each step, left out where the server refuses it (an option or a key MyISAM does not take;
    an AUTO_INCREMENT column needs its key)."""
    name, ident = part
    cur.execute("SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s", (SCHEMA, name))
    drops = ["DROP PRIMARY KEY" if index == "PRIMARY" else f"DROP INDEX {quote_ident(index)}"
             for (index,) in cur.fetchall()]
    engine = [f"ENGINE={SCRATCH_ENGINE}", "CHECKSUM=1"]
    for steps in ([*engine, *drops], engine, drops):
        try:
            if steps:
                cur.execute(f"ALTER TABLE {ident} {', '.join(steps)}")
                if len(steps) == len(engine) + len(drops):
                    return     # all of it in the first ALTER
        except pymysql.MySQLError:
            pass


def _parts(refs: list[int]) -> list[list[int]]:
    """The pieces in order, cut into parts of about PART_BYTES each: at least one, at most MAX_PARTS,
    and past WRITERS a multiple of it (each writer as much to write)."""
    sizes = [ref & ((1 << SIZE_BITS) - 1) for ref in refs]
    n = max(1, min(MAX_PARTS, sum(sizes) // PART_BYTES))
    if n > WRITERS:
        n -= n % WRITERS
    share = sum(sizes) / n
    parts: list[list[int]] = [[]]
    run = 0
    for ref, size in zip(refs, sizes):
        if run >= share * len(parts) and len(parts) < n:
            parts.append([])
        parts[-1].append(ref)
        run += size
    return parts


def prepare(conn, changes: dict[str, TableChanges], connect: Callable[[], object]) -> list[FastRows]:
    """Each table whose deleted rows are kept whole gets them written to its scratch copy, or split
    into rows (materialize) where that cannot be or a later write touched one of them. Returns the
    scratch copies, to be dropped at the end (FastRows.drop). `connect`: another session on the
    target (a second scratch copy is written and compared from it at the same time)."""
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
                    fast = FastRows(table, connect)
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
