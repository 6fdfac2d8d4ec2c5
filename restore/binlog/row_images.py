"""Judging a mass UPDATE from its row images: does it destroy information?

A whole-table UPDATE can be a disaster (`SET password = 'x'`, `SET email = NULL`) or routine work
(a backfill setting a new column from another, `SET n = n + 1`). The binlog's before and after
images tell them apart without decoding any value to Python: two column values are equal exactly
when their bytes are. For each column the statement changed, count the distinct values it held
before and the distinct values it holds after:

- it destroys information when the column held diverse values (3 or more) and they are replaced
  by one value, NULL, or a few (at most max(3, a tenth of them)): `certain`;
- otherwise (the column held one or two values, or the new values keep the old ones apart) it is
  `suspect`: listed, never an automatic stop.

Only the rows of the candidate statement are looked at, and only up to a sample of them.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from restore.binlog import events as be
from restore.binlog.rows import TableMap, image_values, partial_rows

DIVERSE = 3        # distinct values before from which a column is "diverse"
DISTINCT_CAP = 1000  # counting stops here: enough to tell "few" from "many"


@dataclass
class ColumnChange:
    index: int
    before: set[bytes | None] = field(default_factory=set)
    after: set[bytes | None] = field(default_factory=set)
    changed_rows: int = 0

    @property
    def destroys(self) -> bool:
        return destroys(len(self.before), len(self.after))


def destroys(before: int, after: int) -> bool:
    """A column that held `before` distinct values and holds `after` now lost information."""
    return before >= DIVERSE and after < before and after <= max(DIVERSE, before // 10)


@dataclass
class UpdateVerdict:
    severity: str                 # "certain" or "suspect"
    detail: str                   # why, in words
    partial_images: bool = False
    rows_looked_at: int = 0


def column_count(data: bytes, post_header_len: int) -> tuple[int, int]:
    """A rows event's column count and the offset just after it (a v2 event's extra data skipped)."""
    pos = be.HEADER_LEN + post_header_len
    if post_header_len == 10:
        pos += struct.unpack_from("<H", data, pos - 2)[0] - 2
    return be.read_lenenc(data, pos)


def update_images(ev: be.RawEvent, post_header_len: int, tmap: TableMap):
    """(before, after, full) for every row of an UPDATE rows event; `full`: both images carry
    every column (binlog_row_image=FULL)."""
    data = ev.data
    ncols, pos = column_count(data, post_header_len)
    nbm = (ncols + 7) >> 3
    if ev.type == be.PARTIAL_UPDATE_ROWS:   # MySQL PARTIAL_JSON: a shared image between the two
        yield from partial_rows(ev, pos, nbm, tmap)
        return
    bitmaps = []
    for _ in range(2):
        bits = int.from_bytes(data[pos:pos + nbm], "little")
        bitmaps.append([i for i in range(ncols) if bits >> i & 1])
        pos += nbm
    full = all(len(b) == ncols for b in bitmaps)
    end = len(data) - 4 if ev.checksum else len(data)
    sizes = tmap.sizes
    while pos < end:
        before, pos = image_values(data, pos, sizes, bitmaps[0])
        after, pos = image_values(data, pos, sizes, bitmaps[1])
        yield before, after, full


def judge_update(events: Sequence[tuple[be.RawEvent, int, TableMap]], column_names: Sequence[str] = ()) -> UpdateVerdict:
    """The verdict on one statement's UPDATE row events of one table (a sample of them)."""
    changes: dict[int, ColumnChange] = {}
    before_all: dict[int, set] = {}
    rows = 0
    for ev, post, tmap in events:
        for before, after, full in update_images(ev, post, tmap):
            if not full:
                return UpdateVerdict("certain", "the row images are partial (binlog_row_image is not FULL), so what "
                                                "the UPDATE overwrote cannot be told: taken as destructive",
                                     partial_images=True, rows_looked_at=rows)
            rows += 1
            for col, old in before.items():
                seen = before_all.setdefault(col, set())
                if len(seen) < DISTINCT_CAP:
                    seen.add(old)
                new = after.get(col)
                if new != old:
                    change = changes.get(col)
                    if change is None:
                        change = changes[col] = ColumnChange(col)
                    change.changed_rows += 1
                    if len(change.after) < DISTINCT_CAP:
                        change.after.add(new)
    for col, change in changes.items():
        # Diversity before counts every row the statement touched, changed in this column or not.
        change.before = before_all.get(col, set())

    def name(col: int) -> str:
        return column_names[col] if col < len(column_names) and column_names[col] else f"column {col + 1}"

    def values(n: int) -> str:
        return f"{n}{'+' if n >= DISTINCT_CAP else ''} distinct value{'s' if n != 1 else ''}"

    if not changes:
        return UpdateVerdict("suspect", "it changed no value", rows_looked_at=rows)
    destroyed = [c for c in changes.values() if c.destroys]
    if destroyed:
        parts = [f"{name(c.index)} held {values(len(c.before))}, now {values(len(c.after))}"
                 + (" (NULL)" if c.after == {None} else "") for c in destroyed]
        return UpdateVerdict("certain", "overwrites what cannot be recovered: " + "; ".join(parts), rows_looked_at=rows)
    parts = []
    for c in changes.values():
        b, a = len(c.before), len(c.after)
        why = "held one or two values before" if b < DIVERSE else "the new values keep the old ones apart"
        parts.append(f"{name(c.index)} ({values(b)} before, {values(a)} after: {why})")
    return UpdateVerdict("suspect", "rewrites without destroying information: " + "; ".join(parts), rows_looked_at=rows)
