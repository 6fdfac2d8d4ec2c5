"""Rows kept whole (restore.undo.fast) put back inside the undo's transaction, and every one of
them checked against its scratch copy before the commit. A row not held as logged rolls the undo
back, named; nothing is committed unchecked.

Two ways to check, the cheaper one for the table:

- by sums: the table's `CHECKSUM TABLE ... EXTENDED` (a CRC32 per row, summed, in the
  transaction's own view) taken before the rows go in and after; the difference must equal the
  sum of the scratch copies' checksums, which MyISAM keeps as it writes them (CHECKSUM=1) and gives
  at no cost. The table is scanned twice, about 0.2 s per million rows, so this is taken only
  where the table holds at most SCAN_FACTOR times as many rows as go back (a forgotten WHERE
  emptied it, most often).
- by key: each part, once put back, is compared by another session reading the transaction's
  uncommitted rows (the transaction holds them locked: what it reads is what commits) while the
  next part goes in; one LEFT JOIN on the primary key per part (restore.undo.verify_rows), about
  1.4 s of the server's time per million rows, most of it the look-up by key.

Sums that disagree are settled by key: a row not held exactly is refused, and anything else (a
transaction committed meanwhile under READ COMMITTED, a checksum the server computes its own way)
has cost only the comparison.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from restore.errors import RestoreError
from restore.undo.verify_rows import compare, missing_rows

if TYPE_CHECKING:
    from restore.undo.fast import FastRows
    from restore.undo.inverse import TableUndo

SCAN_FACTOR = 4   # the table's rows a whole-table checksum may scan per row put back (a scan costs a fifth of a look-up)
_SUMS = 1 << 32   # CHECKSUM TABLE sums its per-row CRC32s in 32 bits


def put_back(fast: FastRows, conn, table: TableUndo) -> None:
    """Send the rows of `fast` back on `conn` (its transaction open) and check them all; raises
    RestoreError, for the caller to roll back, when a row is not held as logged. (Every row goes in
    as a new one or its key stops the statement, restore.undo.apply.binlog_refused: all rows held
    exactly is all rows put back.)"""
    scratch = _scratch_sum(conn, fast)
    before = None if scratch is None else _table_sum(conn, fast)
    if before is None:
        _put_back_by_key(fast, conn, table)
        return
    for refs in fast.part_refs:
        fast.raw.send(conn, iter(refs))
    after = _checksum(conn, fast.schema.ident)
    if after is not None and (after - before - scratch) % _SUMS == 0:
        return
    _refuse(fast, conn, table, [_missing(conn, fast, i) for i in range(len(fast.parts))])


def _put_back_by_key(fast: FastRows, conn, table: TableUndo) -> None:
    checker = fast.connect()
    try:
        with checker.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
        with ThreadPoolExecutor(1, thread_name_prefix="restore-undo-verify") as pool:
            checked = []
            for i, refs in enumerate(fast.part_refs):
                fast.raw.send(conn, iter(refs))
                checked.append(pool.submit(_missing, checker, fast, i))
            found = [f.result() for f in checked]
        _refuse(fast, checker, table, found)
    finally:
        checker.close()


def _missing(session, fast: FastRows, part: int) -> int:
    """How many rows of the part's scratch copy the table does not hold exactly."""
    with session.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) {missing_rows(fast.schema, fast.parts[part][1])}")
        return cur.fetchone()[0]


def _refuse(fast: FastRows, session, table: TableUndo, found: list[int]) -> None:
    """Raise, naming up to five rows per part, when `found` counts rows not held exactly."""
    if not any(found):
        return
    with session.cursor() as cur:
        problems = [p for (_, ident), n, k in zip(fast.parts, fast.counts, found) if k
                    for p in compare(session, cur, table, ident, n)]
    name = fast.schema.full_name
    first = next((p for p in problems if p["key"]), problems[0])
    raise RestoreError(f"{name}: {sum(found)} row(s) put back are not held as logged (first: {first['key']}, "
                       f"intended {first['intended']}, held {first['target']}); the undo was rolled back: "
                       "nothing was changed", where=name,
                       hint="the table's definition or the server's settings change the rows as they are "
                            "written: compare the table with the binlog's and put the rows back by hand")


def _scratch_sum(conn, fast: FastRows) -> int | None:
    """The scratch copies' live checksums, summed; None where one has none (it stayed InnoDB)."""
    with conn.cursor() as cur:
        cur.execute(f"CHECKSUM TABLE {', '.join(ident for _, ident in fast.parts)} QUICK")
        sums = [row[1] for row in cur.fetchall()]
    return None if any(v is None for v in sums) else sum(sums)


def _table_sum(conn, fast: FastRows) -> int | None:
    """The table's checksum before the rows go in, or None where comparing by key is cheaper."""
    limit = SCAN_FACTOR * fast.count
    if limit < 0:
        return None
    with conn.cursor() as cur:   # counted, not estimated (a table's statistics may be far behind), up to the limit
        cur.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {fast.schema.ident} LIMIT {limit + 1}) AS t")
        if cur.fetchone()[0] > limit:
            return None
    return _checksum(conn, fast.schema.ident)


def _checksum(conn, ident: str) -> int | None:
    with conn.cursor() as cur:
        cur.execute(f"CHECKSUM TABLE {ident} EXTENDED")
        return cur.fetchone()[1]

