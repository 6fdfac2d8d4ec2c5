"""Where an undo keeps its per-row state: a scratch SQLite file, so memory does not grow with the
rows the transaction changed (a million-row DELETE holds a million before-images).

The file lives in a directory `restore-bot-undo-<pid>-<hex>` that this process holds locked
(restore.mysql.leftovers.OwnedDir): removed at close, and by the next restore-bot start's sweep when
the process was killed (kill -9 included), so no scratch file outlives its owner for long.

Rows are stored pickled: the decoded values (int, Decimal, str, bytes, datetime, timedelta...) come
back as the very objects, so every comparison stays Python's exact equality. A key is the pickle
of its values; equal keys of one column type pickle to equal bytes (a DECIMAL's scale is the
column's, never the value's); a one-integer key is stored as that integer (key_blob).
"""
from __future__ import annotations

import os
import pickle
import sqlite3
from collections.abc import Iterator

from restore.mysql.leftovers import OwnedDir, sweep

_SCHEMA = (
    # tables with a primary key: per key, the row before the undone transaction, right after it,
    # and at the binlog's end (NULL: no row), and the later transactions that wrote it
    # (a rowid table: its rowid order is the binlog's order, the order the undo shows and applies);
    # `raw`: instead of `orig`, a deleted row's image as logged (restore.undo.raw)
    "CREATE TABLE st (t INTEGER, k BLOB, orig BLOB, now BLOB, cur BLOB, later TEXT NOT NULL DEFAULT '', raw BLOB, "
    "UNIQUE (t, k))",
    # tables without one: whole rows, + inserted / - deleted by the transaction, and by later ones
    "CREATE TABLE nk (t INTEGER, row BLOB, delta INTEGER NOT NULL DEFAULT 0, later INTEGER NOT NULL DEFAULT 0, "
    "UNIQUE (t, row))",
    "CREATE TABLE pairs (t INTEGER, before BLOB, after BLOB, n INTEGER NOT NULL, UNIQUE (t, before, after))",
    "CREATE INDEX pairs_after ON pairs (t, after)",
    # the inverse: one row per action, in the order it is applied and shown; `observed` is what the
    # target held when the preview looked; `raw`: `row` is an image as logged, not a pickle
    "CREATE TABLE act (t INTEGER, seq INTEGER, kind TEXT NOT NULL, k BLOB NOT NULL, row BLOB NOT NULL, "
    "expected BLOB, sets BLOB, count INTEGER NOT NULL, observed BLOB, raw INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (t, seq))",
    "CREATE INDEX act_key ON act (t, k)",
    # a table's deleted rows kept whole per DELETE_ROWS event, not row by row (restore.undo.fast):
    # `ref` as restore.undo.raw refers to them; and the later writes to such a table, held until it
    # is known whether they touch those rows
    "CREATE TABLE runs (t INTEGER, ref INTEGER NOT NULL)",
    "CREATE TABLE lw (t INTEGER, tx TEXT NOT NULL, before BLOB, after BLOB)",
)

dumps = pickle.dumps


def loads(blob: bytes | None):
    return None if blob is None else pickle.loads(blob)


def key_blob(key: tuple) -> int | bytes:
    """A key as stored: a one-integer key as the integer itself, so that keys coming in order (a
    DELETE logs its rows in primary-key order) append to the index instead of landing all over it
    (at a million rows, the difference between a cached index and one read back from disk)."""
    if len(key) == 1 and type(key[0]) is int and -(1 << 63) <= key[0] < 1 << 63:
        return key[0]
    return pickle.dumps(key)


def key_value(stored: int | bytes) -> tuple:
    return (stored,) if type(stored) is int else pickle.loads(stored)


class Store:
    """One undo's scratch database. Writes go in one SQLite transaction (nothing here must survive a
    crash: the file is thrown away), with savepoints for what a rolled-back binlog transaction did."""

    def __init__(self, base_dir: str | None = None) -> None:
        sweep(base_dir)      # what killed undos left behind
        self._dir = OwnedDir("restore-bot-undo", base_dir)
        try:
            self.path = self._dir.path / "undo.sqlite"
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in ("journal_mode = DELETE", "synchronous = OFF", "cache_size = -8192", "temp_store = FILE"):
                self.db.execute(f"PRAGMA {pragma}")
            for sql in _SCHEMA:
                self.db.execute(sql)
            self.db.execute("BEGIN")
            # bytes kept as they are (restore.undo.raw: deleted rows' images), appended, read by offset
            self._spill = open(self._dir.path / "rows.bin", "w+b", buffering=0)
            self._spill_end = 0
        except BaseException:
            self._dir.remove()
            raise

    def savepoint(self, name: str) -> None:
        self.db.execute(f"SAVEPOINT {name}")

    def release(self, name: str, *, rollback: bool = False) -> None:
        if rollback:
            self.db.execute(f"ROLLBACK TO {name}")
        self.db.execute(f"RELEASE {name}")

    def query(self, sql: str, args: tuple = (), size: int = 2000) -> Iterator[tuple]:
        """The rows of `sql`, fetched `size` at a time: never the whole result in memory."""
        cur = self.db.execute(sql, args)
        while True:
            rows = cur.fetchmany(size)
            if not rows:
                return
            yield from rows

    def spill(self, data: bytes) -> int:
        """Keep `data` in the scratch directory's spill file: where it starts there."""
        at = self._spill_end
        self._spill.write(data)
        self._spill_end += len(data)
        return at

    def spilled(self, at: int, size: int) -> bytes:
        return os.pread(self._spill.fileno(), size, at)

    def close(self) -> None:
        try:
            self._spill.close()
            self.db.close()
        finally:
            self._dir.remove()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
