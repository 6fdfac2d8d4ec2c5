"""MySQL 8 binlog files built byte by byte (no MySQL server can run here): a format description
with an 8.0 server version, uuid:n GTID events, v2 row events, PREVIOUS_GTIDS bodies."""
from __future__ import annotations

import struct
import zlib

from restore.binlog import events as be

UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
POST_HEADER = {be.QUERY: 13, be.ROTATE: 8, be.FORMAT_DESCRIPTION: 98, be.XID: 0, be.TABLE_MAP: 8,
               be.WRITE_ROWS_V2: 10, be.UPDATE_ROWS_V2: 10, be.DELETE_ROWS_V2: 10, be.MYSQL_GTID: 42,
               be.ANONYMOUS_GTID: 42, be.PREVIOUS_GTIDS: 0, be.TRANSACTION_PAYLOAD: 40}


class BinlogWriter:
    def __init__(self) -> None:
        self.data = bytearray(be.MAGIC)
        self.ts = 1_692_400_000

    def event(self, etype: int, body: bytes, flags: int = 0) -> int:
        pos = len(self.data)
        size = be.HEADER_LEN + len(body) + 4
        header = struct.pack("<IBIIIH", self.ts, etype, 1, size, pos + size, flags)
        raw = header + body
        self.data += raw + struct.pack("<I", zlib.crc32(raw))
        self.ts += 1
        return pos

    def inner(self, build) -> bytes:
        """What `build(self)` writes, as the events of a compressed transaction hold them: no CRC32,
        end_log_pos 0. Nothing is added to the file."""
        mark = len(self.data)
        build(self)
        written, out, at = bytes(self.data[mark:]), b"", 0
        del self.data[mark:]
        while at < len(written):
            size = struct.unpack_from("<I", written, at + 9)[0]
            event = bytearray(written[at:at + size - 4])
            event[9:17] = struct.pack("<II", size - 4, 0)
            out += event
            at += size
        return out

    def payload(self, events: bytes, compressed: bytes | None = None, compression: int = 0) -> int:
        """A TRANSACTION_PAYLOAD event holding `events` (zstd unless `compression` is 255, none)."""
        import zstandard
        data = events if compression == 255 else (compressed if compressed is not None
                                                   else zstandard.ZstdCompressor().compress(events))

        def field(kind: int, value: int) -> bytes:
            assert value < 251 or value < 1 << 16
            packed = bytes([value]) if value < 251 else b"\xfc" + struct.pack("<H", value)
            return bytes([kind, len(packed)]) + packed
        header = field(2, compression) + (field(3, len(events)) if compression != 255 else b"") + field(1, len(data))
        return self.event(be.TRANSACTION_PAYLOAD, header + b"\0" + data)

    def fde(self) -> None:
        version = b"8.0.36".ljust(50, b"\0")
        post = bytes(POST_HEADER.get(t, 0) for t in range(1, 42))
        self.event(be.FORMAT_DESCRIPTION, struct.pack("<H", 4) + version + struct.pack("<IB", 0, 19) + post + b"\x01")

    def gtid(self, gno: int) -> int:
        sid = bytes.fromhex(UUID.replace("-", ""))
        return self.event(be.MYSQL_GTID, b"\x01" + sid + struct.pack("<q", gno) + b"\x02" + b"\0" * 16)

    def query(self, sql: str, db: str = "shop") -> int:
        status = b"\x00" + struct.pack("<I", 0) + b"\x01" + struct.pack("<Q", 0) + b"\x04" + struct.pack("<HHH", 45, 45, 8)
        head = struct.pack("<IIBHH", 7, 0, len(db), 0, len(status))
        return self.event(be.QUERY, head + status + db.encode() + b"\0" + sql.encode())

    def table_map(self, table_id: int, db: str, table: str) -> int:
        # two columns: INT, VARCHAR(20) (metadata: max length 80 bytes)
        body = table_id.to_bytes(6, "little") + b"\x01\x00"
        body += bytes([len(db)]) + db.encode() + b"\0" + bytes([len(table)]) + table.encode() + b"\0"
        body += b"\x02" + bytes([3, 15]) + b"\x02" + struct.pack("<H", 80) + b"\x00"
        return self.event(be.TABLE_MAP, body)

    def write_rows(self, table_id: int, rows: list[tuple[int, str]], etype: int = be.WRITE_ROWS_V2) -> int:
        body = table_id.to_bytes(6, "little") + struct.pack("<H", 1) + struct.pack("<H", 2)  # STMT_END, no extra
        body += b"\x02" + b"\x03"
        for ident, text in rows:
            body += b"\x00" + struct.pack("<i", ident) + bytes([len(text)]) + text.encode()
        return self.event(etype, body)

    def xid(self) -> int:
        return self.event(be.XID, struct.pack("<Q", 99))


def previous_gtids(ranges: dict[str, list[tuple[int, int]]]) -> bytes:
    """A PREVIOUS_GTIDS body: n_sids, then per uuid its 16 bytes and [start, end) intervals."""
    body = struct.pack("<Q", len(ranges))
    for uuid, rs in ranges.items():
        body += bytes.fromhex(uuid.replace("-", "")) + struct.pack("<Q", len(rs))
        body += b"".join(struct.pack("<qq", lo, hi + 1) for lo, hi in rs)
    return body
