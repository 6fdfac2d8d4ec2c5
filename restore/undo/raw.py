"""Deleted rows kept as the binlog logged them, and written back as the server's own row events.

A DELETE's before-image (the row's NULL bitmap and values, exactly as in its DELETE_ROWS event) is
what the server held; a WRITE_ROWS event carrying the same bytes, under the same table map, is
what the server would log for putting that very row back. So the common case of an undo (a row a
DELETE removed that nothing wrote again) needs neither decoding nor re-encoding: the reader keeps
the image's bytes and decodes only the key (restore.undo.changes), and the apply sends
`BINLOG '<table map + WRITE_ROWS>'` statements built from them (restore.undo.apply), as
`mariadb-binlog --flashback | mariadb` does, but only for the rows nothing wrote again, inside the
undo's one transaction. An image is decoded in full only where something asks for its values (the
preview's sample, a conflict, a unique-index check, the INSERT fallback).

The server applies such an event strictly (slave_exec_mode=STRICT and no slave_type_conversions,
checked before: else the rows go back by INSERT): a row holding the key already fails the
statement with a duplicate-key error, and a table whose columns differ from the table map fails it
too. It never overwrites and never converts, so each row goes back byte for byte as the server
held it; that every one went in as a new row is checked by the table's row count inside the
transaction, and after the commit the same statements, their table map naming a scratch copy of
the table, let the server compare every row with the target's (restore.undo.verify_rows).

The images themselves are not held in memory nor in the SQLite store: each event's images go in
one piece to a spill file in the undo's scratch directory (restore.undo.store), and the store keeps
per row `offset << 24 | size` (an int: copying a million of them between its tables is cheap).
Most often not even per row: `keep_run` keeps an event's images as one such reference without
looking at any of them, and the server counts and checks them (restore.undo.fast); they are split
into rows (`run_rows`) only where a later write touches one.
"""
from __future__ import annotations

import base64
import copy
import zlib
from collections.abc import Iterable, Iterator

from restore.binlog import events as be
from restore.binlog.row_images import column_count
from restore.binlog.rows import TableMap, image_values
from restore.replay.sender import Sender, SendFailure
from restore.undo.store import Store
from restore.undo.values import TableSchema, decode_row, decode_value

_WRITE_OF = {be.DELETE_ROWS_V1: be.WRITE_ROWS_V1, be.DELETE_ROWS_V2: be.WRITE_ROWS_V2}
EVENT_BYTES = 64 << 10          # row images per WRITE_ROWS event
# A kept image is referred to as `offset << SIZE_BITS | size` in the spill file (an int in the
# Store: a million of them copied between its tables cost little), or as its bytes when it is big.
SIZE_BITS = 24
_BIG = 1 << SIZE_BITS
STATEMENT_BYTES = 2 << 20       # event bytes per BINLOG statement (base64 makes it 4/3 of that on the wire)


class RawTable:
    """One table's deleted rows as logged: its table map and the layout of the first DELETE_ROWS
    event of the undone transaction that deleted from it. Only rows of events with the same table
    map and the same layout are kept raw (`fits`); the others are decoded as before."""

    def __init__(self, store: Store, schema: TableSchema, fde: be.RawEvent, table_map: be.RawEvent, tmap: TableMap,
                 event: be.RawEvent, post: int, tm_post: int) -> None:
        self.store, self.schema, self.tmap, self.post = store, schema, tmap, post
        self.fde = fde.data
        self.table_map = table_map.data
        self._tm_post = tm_post
        self._tm_shape = bytes(table_map.body[tm_post:])     # the table map but its table id
        self.checksum = event.checksum
        self.type = event.type
        self.crc = 0            # of the pieces keep_run kept, in order (the preview's id covers them)
        self.tag = b""          # what the statements start with (the scratch copy's say so: see for_table)
        ncols, pos = column_count(event.data, post)
        self.ncols = ncols
        self.present = list(range(ncols))
        self.head = bytearray(event.data[:be.HEADER_LEN])
        self.head[4] = _WRITE_OF[event.type]
        # post-header (table id, flags, v2 extra data), column count and the columns bitmap
        self.prefix = bytearray(event.data[be.HEADER_LEN:pos + ((ncols + 7) >> 3)])
        self._flags_at = 4 if post == 6 else 6
        nbm = (ncols + 7) >> 3
        self._nbm, self._mask, _, self._runs = tmap.image_layout(((1 << ncols) - 1).to_bytes(nbm, "little"))
        # a one-column key at a fixed offset of a row without NULLs (fixed-size columns before it): read there
        self._key_at = None
        if len(schema.key) == 1 and all(s >= 0 for s in tmap.sizes[:schema.key[0] + 1]):
            i = schema.key[0]
            self._key_at = (nbm + sum(tmap.sizes[:i]), tmap.sizes[i], schema.columns[i], tmap.column_types[i])

    @staticmethod
    def eligible(event: be.RawEvent, post: int, schema: TableSchema) -> bool:
        """A DELETE_ROWS event (not compressed) of a table with a primary key, its images of
        every column (else restore.undo.changes refuses it)."""
        if event.type not in _WRITE_OF or not schema.key:
            return False
        ncols, pos = column_count(event.data, post)
        nbm = (ncols + 7) >> 3
        return event.data[pos:pos + nbm] == ((1 << ncols) - 1).to_bytes(nbm, "little")

    def fits(self, event: be.RawEvent, table_map: be.RawEvent, tm_post: int) -> bool:
        """An event of the same table map (but its id) and layout as the first one."""
        return (event.type == self.type and event.checksum == self.checksum
                and bytes(table_map.body[tm_post:]) == self._tm_shape
                and column_count(event.data, self.post)[0] == self.ncols)

    def keep(self, event: be.RawEvent) -> list[tuple[tuple, int | bytes]]:
        """Every row image of a DELETE_ROWS event, kept: its primary key, and a reference to its
        bytes (Ref) in the Store's spill file, where the event's images go in one piece."""
        data = event.data
        rows = list(self._rows(data, *self._span(event)))
        if not rows:
            return []
        first = rows[0][0]
        base = self.store.spill(data[first:rows[-1][1]]) - first
        return [(key, (base + start) << SIZE_BITS | (stop - start) if stop - start < _BIG else data[start:stop])
                for start, stop, key in rows]

    def keep_run(self, event: be.RawEvent) -> int | None:
        """A DELETE_ROWS event's images kept in one piece, none of them looked at (restore.undo.fast
        has the server count and check them): a reference to them all, as `keep` gives per row;
        None when they are too big for one (kept row by row then), 0 when there are none."""
        start, end = self._span(event)
        if end - start >= _BIG:
            return None
        if start == end:
            return 0            # no row: nothing to keep
        body = event.data[start:end]
        self.crc = zlib.crc32(body, self.crc)
        return self.store.spill(body) << SIZE_BITS | (end - start)

    def run_rows(self, ref: int, limit: int | None = None) -> list[tuple[tuple, int | bytes]]:
        """The rows of a piece `keep_run` kept, as `keep` gives them (the first `limit` only)."""
        at, size = ref >> SIZE_BITS, ref & (_BIG - 1)
        data = self.store.spilled(at, size)
        out = []
        for start, stop, key in self._rows(data, 0, size):
            out.append((key, (at + start) << SIZE_BITS | (stop - start)))
            if limit is not None and len(out) >= limit:
                break
        return out

    def _span(self, event: be.RawEvent) -> tuple[int, int]:
        """Where a DELETE_ROWS event's row images start and end."""
        data = event.data
        ncols, pos = column_count(data, self.post)
        return pos + ((ncols + 7) >> 3), len(data) - 4 if event.checksum else len(data)

    def image(self, ref: int | bytes) -> bytes:
        if type(ref) is not int:
            return ref
        return self.store.spilled(ref >> SIZE_BITS, ref & (_BIG - 1))

    def _rows(self, data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, tuple]]:
        """Where every row image in data[pos:end] starts and ends, and its primary key decoded. A
        row without NULLs is stepped over by the table's layout (restore.binlog.rows.ImageLayout),
        the others value by value."""
        sizes, present, schema = self.tmap.sizes, self.present, self.schema
        nbm, mask, runs, key_at = self._nbm, self._mask, self._runs, self._key_at
        while pos < end:
            if key_at is not None and not int.from_bytes(data[pos:pos + nbm], "little") & mask:
                stop = pos + nbm
                for fixed, width in runs:
                    stop += fixed
                    if width:
                        stop += width + int.from_bytes(data[stop:stop + width], "little")
                at, size, col, logged = key_at
                yield pos, stop, (decode_value(col, data[pos + at:pos + at + size], schema, logged),)
            else:
                image, stop = image_values(data, pos, sizes, present)
                yield pos, stop, self.key(image)
            pos = stop

    def key(self, image: dict[int, bytes | None]) -> tuple:
        """The primary key's values of an image, decoded as restore.undo.values.decode_row would."""
        schema, sizes, types = self.schema, self.tmap.sizes, self.tmap.column_types
        out = []
        for i in schema.key:
            b = image[i]
            size = sizes[i]
            out.append(None if b is None else
                       decode_value(schema.columns[i], bytes(b[-size:] if size < 0 else b), schema, types[i]))
        return tuple(out)

    def decode(self, ref: int | bytes) -> tuple:
        """A kept image's decoded row."""
        return decode_row(self.schema, self.tmap, image_values(self.image(ref), 0, self.tmap.sizes, self.present)[0])

    def for_table(self, db: str, name: str) -> RawTable:
        """The same rows written to another table of the same definition (the verification's
        scratch copy, restore.undo.verify_rows): its table map names `db`.`name`, all else alike."""
        data, post = self.table_map, be.HEADER_LEN + self._tm_post
        end = len(data) - 4 if self.checksum else len(data)
        at = post + 1 + data[post] + 1          # past the database's name and its NUL
        at += 1 + data[at] + 1                  # past the table's
        names = b"".join(len(n).to_bytes(1, "little") + n + b"\0" for n in (db.encode(), name.encode()))
        head = bytearray(data[:be.HEADER_LEN])
        body = data[be.HEADER_LEN:post] + names + data[at:end]
        head[9:13] = (be.HEADER_LEN + len(body) + (4 if self.checksum else 0)).to_bytes(4, "little")
        event = bytes(head) + body
        if self.checksum:
            event += zlib.crc32(event).to_bytes(4, "little")
        other = copy.copy(self)
        other.table_map, other.prefix, other.head = event, bytearray(self.prefix), bytearray(self.head)
        other.tag = b"/* restore-bot undo: scratch copy */ "     # told apart from the apply's in the process list
        return other

    def fde_statement(self) -> bytes:
        return b"BINLOG '" + base64.b64encode(self.fde) + b"'"

    def statements(self, refs: Iterable[int | bytes]) -> Iterator[tuple[bytes, int]]:
        """`BINLOG` statements writing the images `refs` back: (statement, rows it carries). Each
        holds the table map and WRITE_ROWS events, its last one ending the statement."""
        events: list[bytes] = []
        size = count = 0
        for rows, n in self._runs_of(refs):
            events.append(rows)
            size += len(rows)
            count += n
            if size >= STATEMENT_BYTES:
                yield self._statement(events), count
                events, size, count = [], 0, 0
        if events:
            yield self._statement(events), count

    def send(self, conn, refs: Iterable[int | bytes]) -> int:
        """Send the statements writing `refs` back over `conn` (the format description sent before
        in its session); returns the rows they carry. Sent from a thread of its own: the next
        statement is read and encoded while the server runs one. A statement's error is raised."""
        sender = Sender(conn)
        want = 0
        try:
            for sql, rows in self.statements(refs):
                sender.submit([sql], None, None)
                want += rows
            sender.drain()
        except SendFailure as exc:
            raise exc.failed.error from None
        finally:
            sender.close()
        return want

    def _runs_of(self, refs: Iterable[int | bytes]) -> Iterator[tuple[bytes, int]]:
        """The images `refs` point to, images adjacent in the spill file read in one piece of at
        most about EVENT_BYTES (a WRITE_ROWS event's images): (bytes, images in them)."""
        start = end = n = 0
        for ref in refs:
            if type(ref) is not int:
                if n:
                    yield self.store.spilled(start, end - start), n
                    n = 0
                yield ref, 1
                continue
            at, size = ref >> SIZE_BITS, ref & (_BIG - 1)
            if n and (at != end or end - start >= EVENT_BYTES):
                yield self.store.spilled(start, end - start), n
                n = 0
            if not n:
                start = at
            end = at + size
            n += 1
        if n:
            yield self.store.spilled(start, end - start), n

    def _statement(self, bodies: list[bytes]) -> bytes:
        parts = [self.table_map]
        for i, body in enumerate(bodies):
            parts.append(self._event(body, last=i == len(bodies) - 1))
        return self.tag + b"BINLOG '" + base64.b64encode(b"".join(parts)) + b"'"

    def _event(self, rows: bytes, *, last: bool) -> bytes:
        prefix = self.prefix
        # flags: only STMT_END_F on the statement's last event (foreign and unique checks as an INSERT's)
        prefix[self._flags_at:self._flags_at + 2] = (be.STMT_END_F if last else 0).to_bytes(2, "little")
        size = be.HEADER_LEN + len(prefix) + len(rows) + (4 if self.checksum else 0)
        head = self.head
        head[9:13] = size.to_bytes(4, "little")
        out = b"".join((head, prefix, rows))
        if self.checksum:    # the server drops an event's last four bytes when the FDE announces checksums
            out += zlib.crc32(out).to_bytes(4, "little")
        return out
