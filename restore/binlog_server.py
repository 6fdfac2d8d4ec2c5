"""Reads binlogs from a live server through the replication protocol (COM_BINLOG_DUMP).

We ask for raw events rather than decoded ones (as mysql-replication's stream reader gives):
the applier replays raw row events byte for byte, the archiver stores them unchanged, and a
decoder that drops unknown event types would lose data silently.
"""
from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import pymysql

from . import binlog_events as be
from .dsn import Dsn
from .errors import BinlogError
from .flavor import Flavor

COM_BINLOG_DUMP = 0x12
BINLOG_DUMP_NON_BLOCK = 0x01
BINLOG_SEND_ANNOTATE_ROWS_EVENT = 0x02  # MariaDB leaves its annotate events out unless asked


class ServerBinlogs:
    truncation = None  # a live server never has a half-written event visible to us

    def __init__(self, dsn: Dsn, *, blocking: bool = False, server_id: int | None = None,
                 heartbeat: float = 1.0) -> None:
        self.dsn = dsn
        self.blocking = blocking
        self.server_id = server_id or random.randint(0x10000000, 0x7FFFFFFF)
        self.heartbeat = heartbeat
        self.connection: pymysql.connections.Connection | None = None

    def describe(self) -> str:
        return self.dsn.redacted()

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

    def first_file(self) -> str:
        logs = self.binary_logs()
        if not logs:
            raise BinlogError(f"{self.describe()} has no binary logs", hint="enable log_bin on the source")
        return logs[0][0]

    def events(self, start_file: str | None = None, start_pos: int = 4) -> Iterator[be.RawEvent]:
        names = [name for name, _ in self.binary_logs()]
        start_file = start_file or names[0]
        if start_file not in names:
            raise BinlogError(f"binlog {start_file} is no longer on {self.describe()} (purged?); "
                              f"the server has {names[0]} .. {names[-1]}", where=f"{start_file}:{start_pos}",
                              hint="use the archived copy: pass --binlogs the archive directory")
        conn = self.dsn.connect()
        self.connection = conn
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
            yield from self._read(conn, start_file, checksum)
        finally:
            self.connection = None
            try:
                conn.close()
            except pymysql.err.Error:  # stop() closed it from another thread already
                pass

    def _read(self, conn, current: str, checksum: bool) -> Iterator[be.RawEvent]:
        while True:
            try:
                pkt = conn._read_packet()
            except (pymysql.err.MySQLError, OSError, ValueError, AttributeError) as exc:
                # (a socket closed under us by stop() surfaces as OSError/ValueError)
                raise BinlogError(f"{self.describe()}: binlog stream broke after {current}: {exc.args[-1] if exc.args else exc}",
                                  where=current, hint="check the source server and the user's REPLICATION SLAVE grant") from None
            if pkt.is_eof_packet():
                return
            data = pkt.get_all_data()[1:]
            ts, etype, server_id, size, next_pos, flags = be.parse_header(data)
            if etype == be.ROTATE:
                ev = be.RawEvent(current, next_pos - size if next_pos else 0, ts, etype, server_id, flags, data,
                                 checksum)
                if next_pos and not flags & be.LOG_EVENT_ARTIFICIAL_F:
                    yield ev  # a real rotate closes the file (the archiver copies it)
                current = be.parse_rotate(ev)[0]
                continue
            if etype == be.FORMAT_DESCRIPTION:
                checksum = be.parse_format_description(data).checksum
            if checksum and not be.crc_ok(data):
                raise BinlogError(f"{current}: CRC32 mismatch in the event ending at {next_pos}",
                                  where=f"{current}:{next_pos - size}", hint="the server's binlog is damaged")
            if next_pos == 0:
                if etype != be.FORMAT_DESCRIPTION:
                    continue  # artificial events the server makes up for a dump start
                pos = 4
            else:
                pos = next_pos - size
            if etype in (be.HEARTBEAT, be.HEARTBEAT_V2):
                continue
            yield be.RawEvent(current, pos, ts, etype, server_id, flags, data, checksum)
