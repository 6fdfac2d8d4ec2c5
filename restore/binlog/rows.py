"""Table-map and row events: which table an event changes and how many rows.

Values are never decoded here. Without full row metadata Python decoding loses signedness,
ENUM/SET strings and charsets (see BINLOG-NOTES); the applier replays the raw events through
the server instead. The planner only needs to walk each row image to count rows, which needs
column sizes, and those the table map always carries.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from restore.binlog import events as be

# MySQL column type codes as they appear in table-map events.
T_DECIMAL, T_TINY, T_SHORT, T_LONG, T_FLOAT, T_DOUBLE, T_NULL, T_TIMESTAMP = range(8)
T_LONGLONG, T_INT24, T_DATE, T_TIME, T_DATETIME, T_YEAR, T_NEWDATE, T_VARCHAR = range(8, 16)
T_BIT, T_TIMESTAMP2, T_DATETIME2, T_TIME2, T_TYPED_ARRAY = 16, 17, 18, 19, 20
T_VECTOR, T_JSON, T_NEWDECIMAL, T_ENUM, T_SET = 242, 245, 246, 247, 248
T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_BLOB = 249, 250, 251, 252
T_VAR_STRING, T_STRING, T_GEOMETRY = 253, 254, 255

_FIXED = {T_TINY: 1, T_SHORT: 2, T_INT24: 3, T_LONG: 4, T_LONGLONG: 8, T_FLOAT: 4,
          T_DOUBLE: 8, T_NULL: 0, T_TIMESTAMP: 4, T_DATE: 3, T_NEWDATE: 3, T_TIME: 3,
          T_DATETIME: 8, T_YEAR: 1}
_META_LEN = {T_FLOAT: 1, T_DOUBLE: 1, T_VARCHAR: 2, T_VAR_STRING: 2, T_BIT: 2,
             T_NEWDECIMAL: 2, T_BLOB: 1, T_TINY_BLOB: 1, T_MEDIUM_BLOB: 1, T_LONG_BLOB: 1,
             T_GEOMETRY: 1, T_JSON: 1, T_STRING: 2, T_ENUM: 2, T_SET: 2, T_TIMESTAMP2: 1,
             T_DATETIME2: 1, T_TIME2: 1, T_VECTOR: 1, T_DECIMAL: 2}
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


class RowFormatError(ValueError):
    """A row image does not fit its table map: corrupt data or a type we do not know."""


def _decimal_size(precision: int, scale: int) -> int:
    intg = precision - scale
    return (intg // 9) * 4 + _DIG2BYTES[intg % 9] + (scale // 9) * 4 + _DIG2BYTES[scale % 9]


def _column_size(ctype: int, meta: bytes) -> int:
    """Bytes a non-NULL value takes: >= 0 fixed, -k for a k-byte length prefix."""
    if ctype in _FIXED:
        return _FIXED[ctype]
    if ctype in (T_VARCHAR, T_VAR_STRING):
        return -1 if struct.unpack("<H", meta)[0] < 256 else -2
    if ctype in (T_BLOB, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_GEOMETRY, T_JSON, T_VECTOR):
        return -meta[0]
    if ctype == T_NEWDECIMAL:
        return _decimal_size(meta[0], meta[1])
    if ctype in (T_TIMESTAMP2, T_DATETIME2, T_TIME2):
        base = {T_TIMESTAMP2: 4, T_DATETIME2: 5, T_TIME2: 3}[ctype]
        return base + (meta[0] + 1) // 2
    if ctype == T_BIT:
        bits, nbytes = meta[0], meta[1]
        return nbytes + (1 if bits else 0)
    if ctype in (T_STRING, T_ENUM, T_SET):
        real_type, length = meta[0], meta[1]
        if real_type in (T_ENUM, T_SET):
            return length
        if (real_type & 0x30) != 0x30:
            length |= ((real_type & 0x30) ^ 0x30) << 4
        return -1 if length < 256 else -2
    raise RowFormatError(f"unknown column type {ctype}")


@dataclass(slots=True)
class TableMap:
    table_id: int
    db: str
    table: str
    column_types: bytes
    sizes: tuple[int, ...]
    full_name: str = ""       # "db.table", the key of per-table statistics

    _present: dict = field(default_factory=dict)

    @property
    def name(self) -> tuple[str, str]:
        return (self.db, self.table)

    def image_layout(self, bitmap: bytes) -> ImageLayout:
        """How to step over a row image carrying the columns in `bitmap` (binlog_row_image
        may leave some out)."""
        layout = self._present.get(bitmap)
        if layout is None:
            present = int.from_bytes(bitmap, "little")
            layout = self._present[bitmap] = _layout([s for i, s in enumerate(self.sizes) if present >> i & 1])
        return layout


# (NULL-bitmap bytes, the mask of its meaningful bits (the server sets the padding bits),
# size of each present column, the same as runs for a row without NULLs: (fixed bytes to step
# over, then the width of one length prefix or 0)). Counting rows walks every image of every
# row event, so the common no-NULL row takes one step per variable column.
ImageLayout = tuple[int, int, tuple[int, ...], tuple[tuple[int, int], ...]]


def _layout(sizes: list[int]) -> ImageLayout:
    runs, fixed = [], 0
    for size in sizes:
        if size >= 0:
            fixed += size
        else:
            runs.append((fixed, -size))
            fixed = 0
    if fixed or not runs:
        runs.append((fixed, 0))
    return (len(sizes) + 7) >> 3, (1 << len(sizes)) - 1, tuple(sizes), tuple(runs)


def _table_id(body: memoryview, post_header_len: int) -> tuple[int, int]:
    if post_header_len == 6:
        return struct.unpack_from("<I", body, 0)[0], 6
    return int.from_bytes(body[0:6], "little"), post_header_len


def parse_table_map(ev: be.RawEvent, post_header_len: int) -> TableMap:
    body = ev.body
    table_id, pos = _table_id(body, post_header_len)
    db_len = body[pos]
    db = bytes(body[pos + 1:pos + 1 + db_len]).decode("utf-8", "replace")
    pos += 2 + db_len
    tbl_len = body[pos]
    table = bytes(body[pos + 1:pos + 1 + tbl_len]).decode("utf-8", "replace")
    pos += 2 + tbl_len
    ncols, pos = be.read_lenenc(body, pos)
    types = bytes(body[pos:pos + ncols])
    pos += ncols
    _meta_len, pos = be.read_lenenc(body, pos)
    sizes = []
    for ctype in types:
        mlen = _META_LEN.get(ctype, 0)
        sizes.append(_column_size(ctype, bytes(body[pos:pos + mlen])))
        pos += mlen
    return TableMap(table_id, db, table, types, tuple(sizes), f"{db}.{table}")


def _skip_columns(data: bytes, pos: int, sizes: tuple[int, ...], nulls: int) -> int:
    """Steps over one row image's values when some are NULL (those take no bytes)."""
    for i, size in enumerate(sizes):
        if nulls >> i & 1:
            continue
        if size >= 0:
            pos += size
        elif size == -1:
            pos += 1 + data[pos]
        elif size == -2:
            pos += 2 + (data[pos] | data[pos + 1] << 8)
        else:
            pos += -size + int.from_bytes(data[pos:pos - size], "little")
    return pos


_UPDATE_ROWS, _PARTIAL_UPDATE_ROWS, _HEADER_LEN = be.UPDATE_ROWS, be.PARTIAL_UPDATE_ROWS, be.HEADER_LEN


def count_rows(ev: be.RawEvent, post_header_len: int, tmap: TableMap) -> int:
    """Rows in a WRITE/UPDATE/DELETE rows event (an UPDATE row is one before+after pair).
    Runs for every row event of every plan: the common case (fewer than 251 columns, layouts
    already seen) takes no call but the dict lookups."""
    data = ev.data
    pos = _HEADER_LEN + post_header_len
    if post_header_len == 10:  # v2 rows event: a variable-length extra-data block follows
        pos += (data[pos - 2] | data[pos - 1] << 8) - 2
    ncols = data[pos]
    if ncols < 0xFB:
        pos += 1
    else:
        ncols, pos = be.read_lenenc(data, pos)
    if ncols != len(tmap.sizes):
        raise RowFormatError(f"row event has {ncols} columns, its table map {len(tmap.sizes)}")
    if not ncols:  # a row image of no column takes no byte: the loop below would never end
        raise RowFormatError(f"table map of {tmap.db}.{tmap.table} has no column")
    nbm = (ncols + 7) >> 3
    seen = tmap._present
    bitmap = data[pos:pos + nbm]
    layout = seen.get(bitmap) or tmap.image_layout(bitmap)
    pos += nbm
    etype = ev.type
    if etype in _UPDATE_ROWS:
        if etype == _PARTIAL_UPDATE_ROWS:
            return _count_partial(ev, pos - nbm, nbm, tmap)   # from the first bitmap again
        bitmap = data[pos:pos + nbm]
        images: tuple[ImageLayout, ...] = (layout, seen.get(bitmap) or tmap.image_layout(bitmap))
        pos += nbm
    else:
        images = (layout,)
    end = len(data) - 4 if ev.checksum else len(data)
    rows = 0
    try:
        while pos < end:
            for null_bytes, mask, sizes, runs in images:
                nulls = (data[pos] if null_bytes == 1 else int.from_bytes(data[pos:pos + null_bytes], "little")) & mask
                pos += null_bytes
                if nulls:
                    pos = _skip_columns(data, pos, sizes, nulls)
                    continue
                for fixed, width in runs:
                    pos += fixed
                    if width == 1:
                        pos += 1 + data[pos]
                    elif width == 2:
                        pos += 2 + (data[pos] | data[pos + 1] << 8)
                    elif width:
                        pos += width + int.from_bytes(data[pos:pos + width], "little")
            rows += 1
    except IndexError:
        pos = end + 1
    if pos != end:
        raise RowFormatError(f"row data of {tmap.db}.{tmap.table} does not fit its table map")
    return rows


PARTIAL_JSON_UPDATES = 1   # value_options bit: some JSON columns of the after-image are diffs


def partial_rows(ev: be.RawEvent, pos: int, nbm: int, tmap: TableMap):
    """The rows of a MySQL PARTIAL_UPDATE_ROWS event (binlog_row_value_options=PARTIAL_JSON), from
    `pos`, where the column bitmaps start: for each row, the before-image's values, where the
    after-image starts, and its values, as ({column: bytes or None}, ...). Each row is a before-image,
    a "shared image" (value_options, a length-encoded integer, and when it has PARTIAL_JSON_UPDATES
    a bitmap with one bit per JSON column of the table: 1 = that column's after value is a diff),
    then the after-image. A diff is a 4-byte length and the diff vector (MySQL's
    Json_diff_vector::write_binary), so it steps over like a full JSON value."""
    data = ev.data
    sizes = tmap.sizes
    ncols = len(sizes)
    bitmaps = []
    for _ in range(2):
        bits = int.from_bytes(data[pos:pos + nbm], "little")
        bitmaps.append([i for i in range(ncols) if bits >> i & 1])
        pos += nbm
    json_index = {}
    for col, ctype in enumerate(tmap.column_types):
        if ctype == T_JSON:
            json_index[col] = len(json_index)
    jbytes = (len(json_index) + 7) >> 3
    end = len(data) - 4 if ev.checksum else len(data)
    while pos < end:
        before, pos = image_values(data, pos, sizes, bitmaps[0])
        options, pos = be.read_lenenc(data, pos)
        partial = 0
        if options & PARTIAL_JSON_UPDATES:
            partial = int.from_bytes(data[pos:pos + jbytes], "little")
            pos += jbytes
        after, pos = image_values(data, pos, sizes, bitmaps[1], partial, json_index)
        if partial:
            # A diff keeps what it does not touch: the value after is the one before plus the diff.
            for col, index in json_index.items():
                if partial >> index & 1 and after.get(col) is not None:
                    after[col] = (before.get(col) or b"") + b"\0" + after[col]
        if pos > end:
            raise RowFormatError(f"row data of {tmap.db}.{tmap.table} does not fit its table map")
        yield before, after, len(bitmaps[0]) == ncols and len(bitmaps[1]) == ncols


def image_values(data: bytes, pos: int, sizes: Sequence[int], present: list[int], partial: int = 0,
                 json_index: dict[int, int] | None = None) -> tuple[dict[int, bytes | None], int]:
    """One row image: {column index: its value's bytes, or None for NULL}, and where it ends.
    `partial`: the PARTIAL_UPDATE_ROWS bits of JSON columns (numbered by `json_index`) held as a diff."""
    nbytes = (len(present) + 7) >> 3
    nulls = int.from_bytes(data[pos:pos + nbytes], "little")
    if pos + nbytes > len(data):
        raise RowFormatError("a row image runs past the end of its event")
    pos += nbytes
    out: dict[int, bytes | None] = {}
    for bit, col in enumerate(present):
        if nulls >> bit & 1:
            out[col] = None
            continue
        size = sizes[col]
        if partial and col in json_index and partial >> json_index[col] & 1:  # type: ignore[operator]
            size = -4
        start = pos
        if size >= 0:
            pos += size
        else:
            pos += -size + int.from_bytes(data[pos:pos - size], "little")
        out[col] = data[start:pos]
    return out, pos


def _count_partial(ev: be.RawEvent, pos: int, nbm: int, tmap: TableMap) -> int:
    rows = 0
    for _ in partial_rows(ev, pos, nbm, tmap):
        rows += 1
    return rows
