"""Binlog event framing and the small event bodies (MySQL 5.6+/8.x and MariaDB 10.x).

An event is a 19-byte header (timestamp, type, server_id, size, next position, flags) and a
body, plus a 4-byte CRC32 when the format description announces checksums. The engine keeps
every event's raw bytes: row events are replayed through the server's own `BINLOG` statement,
which is exact for every column type, and the archiver copies bytes unchanged.
"""
from __future__ import annotations

import struct
import threading
import zlib
from dataclasses import dataclass
from typing import NamedTuple

from restore.errors import BinlogError

HEADER_LEN = 19
MAGIC = b"\xfebin"

# Event types (shared numbering; MariaDB's own types start at 160).
UNKNOWN = 0
START_V3 = 1
QUERY = 2
STOP = 3
ROTATE = 4
INTVAR = 5
LOAD = 6
SLAVE = 7
CREATE_FILE = 8
APPEND_BLOCK = 9
EXEC_LOAD = 10
DELETE_FILE = 11
NEW_LOAD = 12
RAND = 13
USER_VAR = 14
FORMAT_DESCRIPTION = 15
XID = 16
BEGIN_LOAD_QUERY = 17
EXECUTE_LOAD_QUERY = 18
TABLE_MAP = 19
PRE_GA_WRITE_ROWS = 20
PRE_GA_UPDATE_ROWS = 21
PRE_GA_DELETE_ROWS = 22
WRITE_ROWS_V1 = 23
UPDATE_ROWS_V1 = 24
DELETE_ROWS_V1 = 25
INCIDENT = 26
HEARTBEAT = 27
IGNORABLE = 28
ROWS_QUERY = 29
WRITE_ROWS_V2 = 30
UPDATE_ROWS_V2 = 31
DELETE_ROWS_V2 = 32
MYSQL_GTID = 33
ANONYMOUS_GTID = 34
PREVIOUS_GTIDS = 35
TRANSACTION_CONTEXT = 36
VIEW_CHANGE = 37
XA_PREPARE = 38
PARTIAL_UPDATE_ROWS = 39
TRANSACTION_PAYLOAD = 40
HEARTBEAT_V2 = 41
GTID_TAGGED = 42
ANNOTATE_ROWS = 160
BINLOG_CHECKPOINT = 161
MARIADB_GTID = 162
GTID_LIST = 163
START_ENCRYPTION = 164
QUERY_COMPRESSED = 165
WRITE_ROWS_COMPRESSED_V1 = 166
UPDATE_ROWS_COMPRESSED_V1 = 167
DELETE_ROWS_COMPRESSED_V1 = 168
WRITE_ROWS_COMPRESSED = 169
UPDATE_ROWS_COMPRESSED = 170
DELETE_ROWS_COMPRESSED = 171

WRITE_ROWS = frozenset({WRITE_ROWS_V1, WRITE_ROWS_V2})
# MySQL's PARTIAL_UPDATE_ROWS (binlog_row_value_options=PARTIAL_JSON) is an UPDATE whose after-image
# may hold a JSON column as a diff: counted as an update, replayed only into MySQL.
UPDATE_ROWS = frozenset({UPDATE_ROWS_V1, UPDATE_ROWS_V2, PARTIAL_UPDATE_ROWS})
DELETE_ROWS = frozenset({DELETE_ROWS_V1, DELETE_ROWS_V2})
ROWS_EVENTS = WRITE_ROWS | UPDATE_ROWS | DELETE_ROWS

# Events that carry no data change and no replay context: safe to pass over.
PASSIVE = frozenset({
    START_V3, STOP, ROTATE, FORMAT_DESCRIPTION, HEARTBEAT, HEARTBEAT_V2, IGNORABLE, ROWS_QUERY,
    PREVIOUS_GTIDS, TRANSACTION_CONTEXT, VIEW_CHANGE, ANNOTATE_ROWS, BINLOG_CHECKPOINT,
    GTID_LIST,
})

# Every type number a server of ours writes; others are damage, unless flagged ignorable. (No server
# writes UNKNOWN, 0: a header of zeros, or a misread one, is damage.)
KNOWN_TYPES = frozenset(range(START_V3, GTID_TAGGED + 1)) | frozenset(range(ANNOTATE_ROWS, DELETE_ROWS_COMPRESSED + 1))

# What we cannot apply exactly, with the reason the operator sees.
UNSUPPORTED = {
    QUERY_COMPRESSED: "a compressed statement (MariaDB log_bin_compress=ON)",
    WRITE_ROWS_COMPRESSED_V1: "compressed row events (MariaDB log_bin_compress=ON)",
    UPDATE_ROWS_COMPRESSED_V1: "compressed row events (MariaDB log_bin_compress=ON)",
    DELETE_ROWS_COMPRESSED_V1: "compressed row events (MariaDB log_bin_compress=ON)",
    WRITE_ROWS_COMPRESSED: "compressed row events (MariaDB log_bin_compress=ON)",
    UPDATE_ROWS_COMPRESSED: "compressed row events (MariaDB log_bin_compress=ON)",
    DELETE_ROWS_COMPRESSED: "compressed row events (MariaDB log_bin_compress=ON)",
    START_ENCRYPTION: "an encrypted binlog (encrypt_binlog=ON); it can only be read through the server",
    XA_PREPARE: "an XA transaction",
    INCIDENT: "an INCIDENT event: the source server itself marked its binlog as incomplete here",
    BEGIN_LOAD_QUERY: "LOAD DATA in statement format",
    EXECUTE_LOAD_QUERY: "LOAD DATA in statement format",
    APPEND_BLOCK: "LOAD DATA in statement format",
    CREATE_FILE: "LOAD DATA in statement format",
    EXEC_LOAD: "LOAD DATA in statement format",
    DELETE_FILE: "LOAD DATA in statement format",
    LOAD: "LOAD DATA in statement format",
    NEW_LOAD: "LOAD DATA in statement format",
    PRE_GA_WRITE_ROWS: "a pre-GA row event (MySQL 5.1.0-5.1.15)",
    PRE_GA_UPDATE_ROWS: "a pre-GA row event (MySQL 5.1.0-5.1.15)",
    PRE_GA_DELETE_ROWS: "a pre-GA row event (MySQL 5.1.0-5.1.15)",
    GTID_TAGGED: "a tagged GTID (MySQL 8.3+)",
}

STMT_END_F = 0x0001  # rows-event flag: last event of its statement
LOG_EVENT_ARTIFICIAL_F = 0x0020
# A reader that does not know the event's type may pass over it (MySQL 5.6+; Aurora writes type 100 so).
LOG_EVENT_IGNORABLE_F = 0x0080

_HEADER = struct.Struct("<IBIIIH")


@dataclass(slots=True)
class RawEvent:
    """One event as it lies in the file: `pos` is where it starts, `end` where the next starts."""

    file: str
    pos: int
    timestamp: int
    type: int
    server_id: int
    flags: int
    data: bytes          # the whole event, header and checksum included
    checksum: bool       # data ends with a 4-byte CRC32

    @property
    def end(self) -> int:
        return self.pos + len(self.data)

    @property
    def body(self) -> memoryview:
        mv = memoryview(self.data)
        return mv[HEADER_LEN:len(mv) - 4] if self.checksum else mv[HEADER_LEN:]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.pos}"


@dataclass(slots=True)
class InnerEvent(RawEvent):
    """An event of a MySQL compressed transaction (TRANSACTION_PAYLOAD): `pos` is the payload
    event's, as `mysqlbinlog` reports it, and `end` where the event after the payload starts.
    `data` is as a plain event of the file: when the file has checksums, a CRC32 is appended (the
    server drops an event's last four bytes in a `BINLOG` statement after a format description
    announcing checksums)."""

    outer_end: int = 0

    @property
    def end(self) -> int:
        return self.outer_end


# parse_header(buf, offset=0) -> (timestamp, type, server_id, size, next_pos, flags).
# The bound C method itself, not a wrapper: it runs once for every event read.
parse_header = _HEADER.unpack_from


LOG_EVENT_BINLOG_IN_USE_F = 0x0001
# CRC-32 of a message followed by its own CRC (little-endian) is this constant: checking an
# event needs one crc32() over its bytes as they are, no slicing off of the last four.
CRC32_RESIDUE = 0x2144DF1C


def crc_ok(data: bytes) -> bool:
    expected = struct.unpack_from("<I", data, len(data) - 4)[0]
    if data[4] == FORMAT_DESCRIPTION and data[17] & LOG_EVENT_BINLOG_IN_USE_F:
        # The server sets "in use" on an open file's format description after computing
        # its checksum (and clears it on close): check it as written.
        clean = bytearray(data[:-4])
        clean[17] &= ~LOG_EVENT_BINLOG_IN_USE_F & 0xFF
        return zlib.crc32(clean) == expected
    return zlib.crc32(memoryview(data)[:-4]) == expected


@dataclass(frozen=True, slots=True)
class FormatDescription:
    binlog_version: int
    server_version: str
    header_len: int
    post_header_len: bytes
    checksum: bool
    problem: str = ""   # why the event cannot be a usable v4 format description ("" when it is)

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.server_version.lower()

    def post_header(self, event_type: int) -> int:
        if 0 < event_type <= len(self.post_header_len):
            return self.post_header_len[event_type - 1]
        return 0


def parse_format_description(data: bytes) -> FormatDescription:
    """Never raises: an event too short to be one comes back with `problem` set, for the reader
    that knows its file and position (the Walker) to refuse."""
    body = data[HEADER_LEN:]
    if len(body) < 62:   # version, server version, timestamp, header length, 5 post-header lengths
        return FormatDescription(0, "", 0, b"", False, f"a format description event of {len(data)} bytes is too short")
    version = struct.unpack_from("<H", body, 0)[0]
    server_version = body[2:52].split(b"\0", 1)[0].decode("ascii", "replace")
    header_len = body[56]
    # The checksum algorithm byte sits just before the (always present) 4-byte checksum
    # field on servers that know checksums (MySQL 5.6.1+, MariaDB 5.3+).
    rest = body[57:]
    checksum_alg = rest[-5] if _knows_checksums(server_version) else 0
    post = bytes(rest[:-5]) if _knows_checksums(server_version) else bytes(rest)
    problem = ""
    if version != 4 or header_len != HEADER_LEN:
        problem = (f"binlog format version {version} with {header_len}-byte event headers (server {server_version!r}); "
                   f"restore-bot reads version 4 with {HEADER_LEN}-byte headers (MySQL 5.0+, MariaDB)")
    return FormatDescription(version, server_version, header_len, post, checksum_alg == 1, problem)


def _knows_checksums(server_version: str) -> bool:
    digits = server_version.split("-", 1)[0].split(".")
    try:
        major, minor, patch = (int("".join(c for c in d if c.isdigit()) or 0) for d in digits[:3])
    except ValueError:
        return True
    if "mariadb" in server_version.lower():
        return (major, minor) >= (5, 3)
    return (major, minor, patch) >= (5, 6, 1)


_TYPE_NAMES = {value: name for name, value in list(globals().items())
               if name.isupper() and isinstance(value, int) and 0 <= value < 256
               and name != "HEADER_LEN" and not name.endswith("_F")}


def type_name(event_type: int) -> str:
    """`WRITE_ROWS_V2`, `QUERY`, ... or `type 72` for a number no server uses."""
    return _TYPE_NAMES.get(event_type, f"type {event_type}")


def parse_rotate(ev: RawEvent) -> tuple[str, int]:
    body = ev.body
    pos = struct.unpack_from("<Q", body, 0)[0]
    return bytes(body[8:]).decode("utf-8", "replace"), pos


class Gtid(NamedTuple):
    """A transaction id: MariaDB `domain-server-seq` or MySQL `uuid:n`.

    A named tuple, not a frozen dataclass: equally immutable and hashable, and made in a quarter of
    the time (a frozen dataclass's __init__ sets each field through object.__setattr__); one is made
    for every transaction of every plan and replay."""

    text: str
    domain: int = 0
    server: int = 0
    seq: int = 0
    uuid: str = ""
    standalone: bool = False   # MariaDB: a DDL or non-transactional group with no XID
    xa: bool = False

    def __str__(self) -> str:
        return self.text


MARIADB_FL_STANDALONE = 0x01
MARIADB_FL_GROUP_COMMIT_ID = 0x02
MARIADB_FL_PREPARED_XA = 0x40
MARIADB_FL_COMPLETED_XA = 0x80


_MARIADB_GTID = struct.Struct("<QIB").unpack_from   # seq_no, domain, flags at the body's start


def parse_mariadb_gtid(ev: RawEvent) -> Gtid:
    seq, domain, flags = _MARIADB_GTID(ev.data, HEADER_LEN)
    server = ev.server_id
    return Gtid(f"{domain}-{server}-{seq}", domain, server, seq, "", bool(flags & MARIADB_FL_STANDALONE),
                bool(flags & (MARIADB_FL_PREPARED_XA | MARIADB_FL_COMPLETED_XA)))


def parse_mysql_gtid(ev: RawEvent) -> Gtid | None:
    body = ev.body
    if ev.type == ANONYMOUS_GTID:
        return None
    sid = bytes(body[1:17]).hex()
    gno = struct.unpack_from("<q", body, 17)[0]
    uuid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}"
    return Gtid(f"{uuid}:{gno}", seq=gno, uuid=uuid)


def parse_gtid_list(ev: RawEvent) -> list[Gtid]:
    """MariaDB GTID_LIST, written at the start of every binlog file: the binlog state when the file
    began, i.e. the last GTID logged before it for each (domain, server_id) pair."""
    body = ev.body
    count = struct.unpack_from("<I", body, 0)[0] & 0x0FFFFFFF  # the top 4 bits are flags
    out = []
    for i in range(count):
        domain, server, seq = struct.unpack_from("<IIQ", body, 4 + 16 * i)
        out.append(Gtid(f"{domain}-{server}-{seq}", domain, server, seq))
    return out


def parse_previous_gtids(ev: RawEvent) -> dict[str, list[tuple[int, int]]]:
    """MySQL PREVIOUS_GTIDS, written at the start of every binlog file: every GTID logged before the
    file, as uuid -> inclusive (first, last) ranges. ValueError for a tagged set (MySQL 8.3+)."""
    body = ev.body
    n_sids = struct.unpack_from("<Q", body, 0)[0]
    if n_sids >> 56:
        raise ValueError("a tagged GTID set (MySQL 8.3+), which this tool does not read")
    pos, out = 8, {}
    for _ in range(n_sids):
        sid = bytes(body[pos:pos + 16]).hex()
        uuid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}"
        n_intervals = struct.unpack_from("<Q", body, pos + 16)[0]
        pos += 24
        for _ in range(n_intervals):
            start, end = struct.unpack_from("<qq", body, pos)   # end is exclusive
            out.setdefault(uuid, []).append((start, end - 1))
            pos += 16
    return out


def parse_intvar(ev: RawEvent) -> tuple[int, int]:
    """(kind, value): kind 1 is LAST_INSERT_ID, 2 is INSERT_ID."""
    kind, value = struct.unpack_from("<BQ", ev.body, 0)
    return kind, value


def parse_rand(ev: RawEvent) -> tuple[int, int]:
    return struct.unpack_from("<QQ", ev.body, 0)


def parse_xid(ev: RawEvent) -> int:
    return struct.unpack_from("<Q", ev.body, 0)[0]


def read_lenenc(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """A length-encoded integer at `pos`: (value, position after it)."""
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return buf[pos + 1] | buf[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16, pos + 4
    if first == 0xFE:
        return struct.unpack_from("<Q", buf, pos + 1)[0], pos + 9
    raise ValueError(f"bad length-encoded integer 0x{first:02x}")


# -- MySQL 8 compressed transactions (TRANSACTION_PAYLOAD, binlog_transaction_compression=ON) ----
# The body is a header of (type, length, value) fields, each a length-encoded integer, up to a 0,
# then the payload: the transaction's events back to back (no CRC32 of their own, end_log_pos 0),
# compressed as one zstd frame or not at all. See MySQL's binary_log::codecs::binary::Transaction_payload.
_PAYLOAD_SIZE, _PAYLOAD_COMPRESSION, _PAYLOAD_UNCOMPRESSED = 1, 2, 3
_COMPRESSION_ZSTD, _COMPRESSION_NONE = 0, 255
_PAYLOAD_WHOLE = 64 << 20   # a transaction up to this size (uncompressed) is decompressed in one piece
_PAYLOAD_READ = 1 << 20     # a larger one this many bytes at a time


class PayloadError(BinlogError):
    """A compressed transaction that cannot be read; `event` is the TRANSACTION_PAYLOAD event."""

    def __init__(self, event: RawEvent, detail: str) -> None:
        super().__init__(
            f"{event.file}: the compressed transaction (TRANSACTION_PAYLOAD event) at position {event.pos} "
            f"cannot be read: {detail}", where=event.where,
            hint=(f"stop before it with --stop-before {event.where}; its CRC32 matches, so the file is most likely "
                  "intact: report this (with the file) as a restore-bot bug") if event.checksum else
                 (f"copy {event.file} again from the server or the archive; if the server's copy is damaged too, "
                  f"stop before it with --stop-before {event.where}"))
        self.event = event


def parse_payload_header(ev: RawEvent) -> tuple[int, int, int, int]:
    """(compression type, payload size, uncompressed size, where the payload starts in ev.data)."""
    body = ev.body
    pos, fields = 0, {}
    try:
        while True:
            kind, pos = read_lenenc(body, pos)
            if kind == 0:
                break
            length, pos = read_lenenc(body, pos)
            if kind in (_PAYLOAD_SIZE, _PAYLOAD_COMPRESSION, _PAYLOAD_UNCOMPRESSED):
                fields[kind], pos = read_lenenc(body, pos)
            else:
                pos += length   # a field of a later version: skipped, as the server does
    except (IndexError, ValueError, struct.error) as exc:
        raise PayloadError(ev, f"its header does not decode ({type(exc).__name__}: {exc})") from None
    payload = len(body) - pos
    compression = fields.get(_PAYLOAD_COMPRESSION, _COMPRESSION_NONE)
    size = fields.get(_PAYLOAD_SIZE, payload)
    if size != payload:
        raise PayloadError(ev, f"its header announces {size} bytes of payload, the event holds {payload}")
    if compression not in (_COMPRESSION_ZSTD, _COMPRESSION_NONE):
        raise PayloadError(ev, f"compression type {compression} is unknown (MySQL writes 0, zstd)")
    return compression, size, fields.get(_PAYLOAD_UNCOMPRESSED, size) or size, HEADER_LEN + pos


def payload_events(ev: RawEvent):
    """The events of a TRANSACTION_PAYLOAD event, as InnerEvents, decompressed a piece at a time.
    Raises PayloadError (naming the payload event) for anything that does not add up."""
    compression, size, expected, start = parse_payload_header(ev)
    payload = memoryview(ev.data)[start:start + size]
    return _inner_events(ev, compression, payload, expected)


def _inner_events(ev: RawEvent, compression: int, payload: memoryview, expected: int):
    if compression == _COMPRESSION_NONE:
        chunks = (bytes(payload),)
    elif expected <= _PAYLOAD_WHOLE:
        chunks = (_zstd(ev, payload, expected),)
    else:
        chunks = _zstd_chunks(ev, payload)
    file, pos, end, checksum = ev.file, ev.pos, ev.end, ev.checksum
    unpack, crc32, hlen = _HEADER.unpack_from, zlib.crc32, HEADER_LEN
    buf, off, total = b"", 0, 0
    for chunk in chunks:
        buf, off = (buf[off:] + chunk if off < len(buf) else chunk), 0
        have = len(buf)
        while have - off >= hlen:
            ts, etype, server_id, ev_size, _, flags = unpack(buf, off)
            if ev_size < hlen:
                raise PayloadError(ev, f"its event at offset {total} of the transaction says it is {ev_size} bytes long")
            if have - off < ev_size:
                break
            if etype == TRANSACTION_PAYLOAD:
                raise PayloadError(ev, f"it holds another compressed transaction (at offset {total})")
            if checksum:   # the size grows by the CRC32 appended
                data = buf[off:off + 9] + (ev_size + 4).to_bytes(4, "little") + buf[off + 13:off + ev_size]
                data += crc32(data).to_bytes(4, "little")
            else:
                data = buf[off:off + ev_size]
            off += ev_size
            total += ev_size
            yield InnerEvent(file, pos, ts, etype, server_id, flags, data, checksum, end)
    if len(buf) - off:
        raise PayloadError(ev, f"its last event is cut short: {len(buf) - off} bytes after offset {total}")
    if total != expected:
        raise PayloadError(ev, f"it holds {total} bytes of events, its header announces {expected}")


_decompressors = threading.local()   # one per thread: making one costs more than a small transaction


def _zstd(ev: RawEvent, payload: memoryview, expected: int) -> bytes:
    import zstandard  # only binlogs of MySQL 8.0.20+ with binlog_transaction_compression=ON need it
    try:
        dctx = getattr(_decompressors, "dctx", None)
        if dctx is None:
            dctx = _decompressors.dctx = zstandard.ZstdDecompressor()
        return dctx.decompress(payload, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise PayloadError(ev, f"zstd: {exc}") from None


def _zstd_chunks(ev: RawEvent, payload: memoryview):
    """A large transaction a piece at a time: memory stays at a piece plus one event."""
    import zstandard
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(payload, read_across_frames=True)
        while chunk := reader.read(_PAYLOAD_READ):
            yield chunk
    except zstandard.ZstdError as exc:
        raise PayloadError(ev, f"zstd: {exc}") from None
