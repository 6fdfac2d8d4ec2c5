"""Reads binlogs from a live server through the replication protocol (COM_BINLOG_DUMP).

We ask for raw events rather than decoded ones (as mysql-replication's stream reader gives):
the applier replays raw row events byte for byte, the archiver stores them unchanged, and a
decoder that drops unknown event types would lose data silently.

pymysql opens the connection and sends the dump request; the stream that follows is read by
`_Stream`, a lean MySQL packet framer on the connection's socket (big `recv_into` buffer, one
copy per event): the watcher reads every event of a busy server, and pymysql's per-packet work
cost it more than twice the CPU (bench/README.md, alert_latency).
"""
from __future__ import annotations

import random
import socket
import struct
import zlib
from collections.abc import Callable, Iterator

import pymysql

from restore.binlog import events as be
from restore.binlog.gtid_continuity import TRACKED, GtidContinuity, GtidGap
from restore.errors import BinlogError
from restore.mysql.dsn import Dsn
from restore.mysql.flavor import Flavor

COM_BINLOG_DUMP = 0x12
BINLOG_DUMP_NON_BLOCK = 0x01
BINLOG_SEND_ANNOTATE_ROWS_EVENT = 0x02  # MariaDB leaves its annotate events out unless asked

MAX_PACKET = 0xFFFFFF          # a payload this long continues in the next packet
CRC_RESIDUE = 0x2144DF1C       # zlib.crc32(data + its own little-endian CRC32) for every intact event
BUFFER = 1 << 20               # bytes asked of the socket per recv
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236

_HEADER = struct.Struct("<IBIIIH")   # the event header (binlog_events.parse_header)
_U32 = struct.Struct("<I").unpack_from
_SPECIAL = frozenset({be.ROTATE, be.FORMAT_DESCRIPTION, be.HEARTBEAT, be.HEARTBEAT_V2})
_GONE = "could not find first log file name"  # the server's 1236 text when the file asked for is not in its index
# ... and when the file is there but shorter than the position asked for (RESET MASTER wrote it anew,
# or a crash lost its unsynced tail): MariaDB says "impossible position", MySQL "position > file size".
_PAST_END = ("impossible position", "position > file size")


class BinlogGone(BinlogError):
    """The file asked for is no longer on the server (purged, or the binlog was reset): retrying
    the same position can never work, so a follower has to decide where to go on."""

    def __init__(self, message: str, *, file: str, pos: int, hint: str | None = None,
                 past_end: bool = False) -> None:
        super().__init__(message, where=f"{file}:{pos}", hint=hint)
        self.file, self.pos = file, pos
        self.past_end = past_end  # the file is still there, only shorter than `pos`


class ServerBinlogs:
    truncation = None  # a live server never has a half-written event visible to us

    def __init__(self, dsn: Dsn, *, blocking: bool = False, server_id: int | None = None,
                 heartbeat: float = 1.0, timeout: float | None = None,
                 on_flowing: Callable[[], None] | None = None, flowing_after: tuple[str, int] | None = None,
                 on_gap: Callable[[GtidGap], None] | None = None) -> None:
        """`timeout`: seconds without a byte from the server before the stream counts as dead
        (default: 10 heartbeats, at least 10 s, when blocking; 120 s otherwise). `on_flowing`: called
        once per `events()` stream, at its first event ending past `flowing_after` (file, pos) or its
        first heartbeat (the server has sent all there is): the stream is really up, not just accepted,
        and a reader that failed on an event at `flowing_after` got past it. `on_gap`: called with a gap
        the GTID lists reveal between two files (gtid_continuity), and the stream goes on; without it
        the gap is a BinlogError."""
        self.dsn = dsn
        self.blocking = blocking
        self.server_id = server_id or random.randint(0x10000000, 0x7FFFFFFF)
        self.heartbeat = heartbeat
        self.timeout = timeout if timeout is not None else max(10.0, 10 * heartbeat) if blocking else 120.0
        self.connection: pymysql.connections.Connection | None = None
        self._sock: socket.socket | None = None
        self._closing = False
        self.on_flowing = on_flowing
        self.flowing_after = flowing_after
        self.on_gap = on_gap
        self._start = ("", 0)
        self._reached = lambda: None

    def describe(self) -> str:
        return self.dsn.redacted()

    def close(self) -> None:
        """Ends a running `events()` from another thread: it returns soon, without an error."""
        self._closing = True
        sock = self._sock
        if sock is not None:
            try:  # wakes a recv blocked on it (close() alone would not)
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def binary_logs(self) -> list[tuple[str, int]]:
        conn = self.dsn.connect()
        try:
            with conn.cursor() as cur:
                try:
                    cur.execute("SHOW BINARY LOGS")
                except pymysql.err.MySQLError as exc:
                    raise BinlogError(f"{self.describe()}: cannot list binary logs: {exc.args[-1]}",
                                      hint="enable log_bin on the source and grant the user REPLICATION CLIENT/SLAVE") from None
                return [(r[0], int(r[1])) for r in cur.fetchall()]
        finally:
            conn.close()

    def reached(self) -> tuple[str, int] | None:
        """(file, end) of the last event `events()` gave out (its start, before the first); None before it ran."""
        return self._reached()

    def first_file(self) -> str:
        logs = self.binary_logs()
        if not logs:
            raise BinlogError(f"{self.describe()} has no binary logs", hint="enable log_bin on the source")
        return logs[0][0]

    def events(self, start_file: str | None = None, start_pos: int = 4, *,
               gtids: GtidContinuity | None = None) -> Iterator[be.RawEvent]:
        """Every event from `start_file:start_pos` on. `gtids`: the GTID state of the file before the
        start, when the caller read it elsewhere (the archiver, from its copy)."""
        names = [name for name, _ in self.binary_logs()]
        start_file = start_file or names[0]
        if start_file not in names:
            raise BinlogGone(f"binlog {start_file} is no longer on {self.describe()} (purged?); "
                             f"the server has {names[0]} .. {names[-1]}", file=start_file, pos=start_pos,
                             hint="use the archived copy: pass --binlogs the archive directory")
        self._start = (start_file, start_pos)
        conn = self.dsn.connect()
        self.connection = conn
        self._sock = conn._sock
        try:
            if self._closing:
                return
            try:
                flavor = Flavor.detect(conn)
                with conn.cursor() as cur:
                    cur.execute("SELECT @@global.binlog_checksum")
                    checksum = str(cur.fetchone()[0]).upper() == "CRC32"
                    cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
                    cur.execute("SET @source_binlog_checksum = @@global.binlog_checksum")
                    if flavor.is_mariadb:
                        cur.execute("SET @mariadb_slave_capability = 4")
                    if self.blocking:
                        cur.execute(f"SET @master_heartbeat_period = {int(self.heartbeat * 1e9)}")
                flags = 0 if self.blocking else BINLOG_DUMP_NON_BLOCK
                if flavor.is_mariadb:
                    flags |= BINLOG_SEND_ANNOTATE_ROWS_EVENT
                payload = struct.pack("<IHI", start_pos, flags, self.server_id) + start_file.encode()
                conn._execute_command(COM_BINLOG_DUMP, payload)
            except (pymysql.err.MySQLError, OSError) as exc:
                if self._closing:
                    return
                raise BinlogError(f"{self.describe()}: cannot start the binlog stream at {start_file}:{start_pos}: "
                                  f"{exc.args[-1] if exc.args else exc}", where=f"{start_file}:{start_pos}",
                                  hint="check the source server and the user's REPLICATION SLAVE grant") from None
            stream = _Stream(self, conn._sock, conn._next_seq_id)
            yield from self._read(stream, start_file, start_pos, checksum, gtids or GtidContinuity())
        finally:
            self.connection = self._sock = None
            try:
                conn.close()
            except Exception:  # the socket is shut down or broken already
                pass

    def _read(self, stream: "_Stream", current: str, pos: int, checksum: bool,
              gtids: GtidContinuity) -> Iterator[be.RawEvent]:
        """Events from the stream: artificial ones and heartbeats left out, CRCs checked.

        A packet holding one whole event is taken straight from the stream's buffer here (one copy,
        no call): that is nearly every event. Anything else — the buffer running dry, an event
        longer than a packet, the end, an error — goes through `_Stream.packet()`."""
        unpack, crc32, u32 = _HEADER.unpack_from, zlib.crc32, _U32
        special, RawEvent = _SPECIAL, be.RawEvent
        flowing = self.on_flowing  # called once, then None: one test per event until then
        after = self.flowing_after or ("", 0)
        buf, view = stream.buf, stream.view
        start = end = 0
        seq = stream.seq
        where = lambda: f"{current}:{pos}"  # noqa: E731
        self._reached = lambda: (current, pos)
        # A stream started inside a file has not seen that file's GTID list: GtidContinuity then
        # judges only what the file logged after the start (unless the caller fed it the rest).
        tracked = TRACKED
        while True:
            data = None
            if end - start >= 4:
                word = u32(buf, start)[0]
                length = word & MAX_PACKET
                if end - start >= 4 + length and length != MAX_PACKET and word >> 24 == seq and length \
                        and buf[start + 4] == 0:
                    seq = (seq + 1) & 0xFF
                    data = bytes(view[start + 5:start + 4 + length])  # the event, without the 0x00 marker
                    start += 4 + length
            if data is None:
                stream.start, stream.end, stream.seq = start, end, seq
                data = stream.packet(where)
                if data is None:
                    return
                start, end, seq = stream.start, stream.end, stream.seq
            ts, etype, server_id, size, next_pos, flags = unpack(data)
            if size != len(data):
                raise BinlogError(f"{current}: the event after {pos} says it is {size} bytes long but the server "
                                  f"sent {len(data)}", where=f"{current}:{pos}", hint="the server's binlog is damaged")
            if etype in special or next_pos == 0:
                if etype == be.ROTATE:
                    ev = RawEvent(current, next_pos - size if next_pos else 0, ts, etype, server_id, flags, data,
                                  checksum)
                    real = next_pos and not flags & be.LOG_EVENT_ARTIFICIAL_F
                    if real:
                        yield ev  # a real rotate closes the file (the archiver copies it)
                    name, new_pos = be.parse_rotate(ev)
                    if name != current:
                        gtids.file_ended(current, next_pos if real else pos, bool(real))
                    current, pos = name, new_pos
                    continue
                if etype == be.FORMAT_DESCRIPTION:
                    checksum = be.parse_format_description(data).checksum
                    if checksum and not be.crc_ok(data):  # (its in-use flag is set after its CRC)
                        raise _crc_error(current, next_pos, size)
                    if next_pos == 0:  # the server repeats the file's own for a dump start
                        yield RawEvent(current, 4, ts, etype, server_id, flags, data, checksum)
                        continue
                elif checksum and crc32(data) != CRC_RESIDUE:
                    raise _crc_error(current, next_pos, size)
                if etype == be.HEARTBEAT or etype == be.HEARTBEAT_V2:
                    if flowing is not None:  # a keep-alive: up, with nothing new to send
                        flowing()
                        flowing = None
                    continue
                if next_pos == 0:
                    continue  # artificial events the server makes up for a dump start
            elif checksum and crc32(data) != CRC_RESIDUE:
                raise _crc_error(current, next_pos, size)
            if etype in tracked:
                gap = gtids.feed(etype, data, current, next_pos - size, checksum)
                if gap is not None:
                    if self.on_gap is None:
                        raise gap.error(self.describe())
                    self.on_gap(gap)
            pos = next_pos
            # Not on a format description (a server failing on a damaged file sends the file's one
            # first), nor on events up to `after` (a reader failing on one gets them again each
            # retry): either would look like a recovery on every retry.
            if flowing is not None and etype != be.FORMAT_DESCRIPTION and (current, next_pos) > after:
                flowing()
                flowing = None
            yield RawEvent(current, next_pos - size, ts, etype, server_id, flags, data, checksum)


def _crc_error(current: str, next_pos: int, size: int) -> BinlogError:
    return BinlogError(f"{current}: CRC32 mismatch in the event ending at {next_pos}",
                       where=f"{current}:{next_pos - size}", hint="the server's binlog is damaged")


class _Stream:
    """The packets of a COM_BINLOG_DUMP answer: 4-byte headers (length, sequence number), payloads of
    16 MiB - 1 continued in the next packet; each payload is 0x00 + one event, 0xFE at the end of a
    non-blocking dump, or 0xFF + an error. `buf[start:end]` holds what was received and not used yet."""

    def __init__(self, owner: ServerBinlogs, sock: socket.socket, seq: int) -> None:
        self.owner = owner
        self.sock = sock
        self.seq = seq
        self.buf = bytearray(BUFFER)
        self.view = memoryview(self.buf)
        self.start = self.end = 0
        sock.settimeout(owner.timeout)

    def packet(self, where) -> bytes | None:
        """The next event's bytes (without the 0x00 marker), from `start` on; None at the end of the
        stream or after `close()`. `where()` names the position for messages."""
        try:
            return self._packet(where)
        except _Closed:
            return None

    def _packet(self, where) -> bytes | None:
        parts = []
        while True:
            self._fill(4, where)
            word = _U32(self.buf, self.start)[0]
            length, seq = word & MAX_PACKET, word >> 24
            if seq != self.seq and not parts and length:
                self._fill(5, where)  # an error packet may come out of step (MariaDB shutting down sends 0)
                if self.buf[self.start + 4] == 0xFF:
                    seq = self.seq
            if seq != self.seq:
                raise BinlogError(f"{self.owner.describe()}: binlog stream out of step after {where()} "
                                  f"(packet {seq}, expected {self.seq})", where=where(),
                                  hint="a proxy between us and the server may be mangling the stream; connect directly")
            self.seq = (seq + 1) & 0xFF
            self.start += 4
            parts.append(self._take(length, where))
            if length < MAX_PACKET:
                break
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if not data:
            raise BinlogError(f"{self.owner.describe()}: empty packet in the binlog stream after {where()}",
                              where=where(), hint="check the source server")
        if data[0] == 0:
            return data[1:]
        if data[0] == 0xFE:
            return None  # the end of a non-blocking dump
        if data[0] == 0xFF:
            raise self._error(data, where)
        raise BinlogError(f"{self.owner.describe()}: unexpected packet 0x{data[0]:02x} in the binlog stream after "
                          f"{where()}", where=where(), hint="check the source server")

    def _take(self, n: int, where) -> bytes:
        """The next n bytes: from the buffer, then straight from the socket when they do not fit."""
        have = self.end - self.start
        if n <= have or n <= len(self.buf) // 2:
            self._fill(n, where)
            out = bytes(self.view[self.start:self.start + n])
            self.start += n
            return out
        out = bytearray(n)
        out[:have] = self.view[self.start:self.end]
        self.start = self.end = 0
        view, got = memoryview(out), have
        while got < n:
            got += self._recv(view[got:], where)
        return bytes(out)

    def _fill(self, n: int, where) -> None:
        """Make sure at least n bytes are buffered from `start` on."""
        while self.end - self.start < n:
            if self.start:
                have = self.end - self.start
                self.buf[:have] = self.view[self.start:self.end]
                self.start, self.end = 0, have
            self.end += self._recv(self.view[self.end:], where)

    def _recv(self, into: memoryview, where) -> int:
        owner = self.owner
        try:
            got = self.sock.recv_into(into) if not owner._closing else 0
        except TimeoutError:
            raise BinlogError(f"{owner.describe()}: no data from the server for {owner.timeout:.0f} s after {where()}"
                              + (f" (it sends a heartbeat every {owner.heartbeat:g} s)" if owner.blocking else ""),
                              where=where(), hint="the server is down or unreachable; it is retried") from None
        except OSError as exc:
            if owner._closing:
                got = 0
            else:
                raise BinlogError(f"{owner.describe()}: binlog stream broke after {where()}: {exc.strerror or exc}",
                                  where=where(), hint="check the source server and the user's REPLICATION SLAVE grant") from None
        if got:
            return got
        if owner._closing:
            raise _Closed
        raise BinlogError(f"{owner.describe()}: the server closed the binlog stream after {where()}",
                          where=where(), hint="check the source server (restarted? the dump thread killed?)")

    def _error(self, data: bytes, where) -> BinlogError:
        code = int.from_bytes(data[1:3], "little")
        text = data[9:] if data[3:4] == b"#" else data[3:]
        message = text.decode("utf-8", "replace")
        if code == ER_MASTER_FATAL_ERROR_READING_BINLOG and _GONE in message.lower():
            file, pos = self.owner._start  # (only ever said at the dump's start)
            return BinlogGone(f"{self.owner.describe()}: the server no longer has binlog {file} (purged?): "
                              f"error {code}: {message}", file=file, pos=pos,
                              hint="use the archived copy (--binlogs DIR), or start from a later dump")
        if code == ER_MASTER_FATAL_ERROR_READING_BINLOG and any(t in message.lower() for t in _PAST_END):
            file, pos = self.owner._start
            return BinlogGone(f"{self.owner.describe()}: binlog {file} on the server ends before position {pos} "
                              f"(the binlog was reset, or a crash lost its end): error {code}: {message}",
                              file=file, pos=pos, past_end=True,
                              hint="start from the beginning of the file, or from a position the server has")
        hint = ("the file is gone or damaged on the server (purged?): use the archived copy (--binlogs DIR), or "
                "start from a later dump" if code == ER_MASTER_FATAL_ERROR_READING_BINLOG
                else "check the source server and the user's REPLICATION SLAVE grant")
        return BinlogError(f"{self.owner.describe()}: the server ended the binlog stream at {where()} with error "
                           f"{code}: {message}", where=where(), hint=hint)


class _Closed(Exception):
    """close() was called: `packets()` ends quietly."""
