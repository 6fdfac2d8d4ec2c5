"""The replication-protocol reader (`restore.binlog.server`) against a real server.

Its own packet framer reads the COM_BINLOG_DUMP stream: these pin what it must get right — every
event byte-identical to the server's files (also one longer than a 16 MiB packet, also across a
rotation), CRC errors, the server's error packets, heartbeats, `close()` from another thread and a
server that stops answering.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from restore.binlog import events as be
from restore.binlog.server import ServerBinlogs
from restore.errors import BinlogError
from restore.mysql.sandbox import Sandbox

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server

BIG = 20 * 1024 * 1024  # one row event longer than a 16 MiB protocol packet


@pytest.fixture(scope="module")
def src():
    with Sandbox(binlog=True, binlog_format="ROW") as server:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE s")
            cur.execute("CREATE TABLE s.t (id INT PRIMARY KEY, b LONGBLOB)")
            cur.execute("INSERT INTO s.t SELECT seq, REPEAT('a', seq) FROM s.seq_1_to_300")
            cur.execute(f"INSERT INTO s.t VALUES (1000, REPEAT('b', {BIG}))")
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("UPDATE s.t SET b = 'x' WHERE id < 100")
            cur.execute("DELETE FROM s.t WHERE id = 1000")
        yield server


def _file_bytes(src: Sandbox, name: str) -> bytes:
    return (src.binlog_dir / name).read_bytes()


def test_stream_is_byte_identical_to_the_files(src):
    events = list(ServerBinlogs(src.dsn).events())
    files = {name: _file_bytes(src, name) for name in {ev.file for ev in events}}
    assert sorted(files) == ["binlog.000001", "binlog.000002"]
    ends: dict[str, int] = {}
    for ev in events:
        raw = files[ev.file][ev.pos:ev.pos + len(ev.data)]
        if ev.type == be.FORMAT_DESCRIPTION:
            # the only difference allowed: the open file's "in use" flag, set after its CRC was computed
            assert ev.pos == 4 and raw[:17] == ev.data[:17] and raw[18:] == ev.data[18:], ev.where
            assert be.crc_ok(ev.data) and be.crc_ok(raw)
        else:
            assert raw == ev.data, ev.where
            assert ev.pos == ends[ev.file], f"{ev.where} does not follow the event before it"
        ends[ev.file] = ev.end
    assert ends == {name: len(data) for name, data in files.items()}  # nothing left out at either end
    big = [ev for ev in events if ev.type in be.WRITE_ROWS and len(ev.data) > BIG]
    assert len(big) == 1 and len(big[0].data) > 0xFFFFFF
    assert [ev.type for ev in events if ev.type == be.ROTATE] == [be.ROTATE]
    assert not any(ev.type in (be.HEARTBEAT, be.HEARTBEAT_V2) for ev in events)


def test_start_in_the_middle_of_a_file(src):
    events = list(ServerBinlogs(src.dsn).events("binlog.000002"))
    later = list(ServerBinlogs(src.dsn).events("binlog.000002", events[3].pos))
    # the server repeats the file's format description first; then exactly the events from there on
    assert later[0].type == be.FORMAT_DESCRIPTION and later[0].pos == 4
    assert [(e.pos, e.data) for e in later[1:]] == [(e.pos, e.data) for e in events[3:]]


def test_a_position_inside_an_event_is_the_servers_error_naming_file_and_position(src):
    with pytest.raises(BinlogError) as err:
        list(ServerBinlogs(src.dsn).events("binlog.000001", 5))
    assert "binlog.000001:5" in str(err.value) and "error 1236" in str(err.value), err.value
    assert "password" not in str(err.value)


def test_corrupt_event_on_the_server_is_a_crc_error(tmp_path):
    with Sandbox(binlog=True, binlog_format="ROW") as server:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE c")
            cur.execute("CREATE TABLE c.t (id INT PRIMARY KEY, v VARCHAR(100))")
            cur.execute("INSERT INTO c.t SELECT seq, REPEAT('v', 90) FROM c.seq_1_to_50")
            cur.execute("FLUSH BINARY LOGS")
        events = list(ServerBinlogs(server.dsn).events("binlog.000001"))
        victim = next(ev for ev in events if ev.type in be.WRITE_ROWS)
        path = server.binlog_dir / "binlog.000001"
        data = bytearray(path.read_bytes())
        data[victim.pos + len(victim.data) // 2] ^= 0x01  # one bit in the middle of the rows
        path.write_bytes(data)
        with pytest.raises(BinlogError) as err:
            for ev in ServerBinlogs(server.dsn).events("binlog.000001"):
                assert ev.pos < victim.pos, f"{ev.where} came through after the damaged event"
    assert "CRC32 mismatch" in str(err.value) and err.value.where == victim.where, err.value


def _follow(reader: ServerBinlogs, start: tuple[str, int], into: list, errors: list) -> threading.Thread:
    def run() -> None:
        try:
            for ev in reader.events(*start):
                into.append((time.monotonic(), ev))
        except BinlogError as exc:
            errors.append((time.monotonic(), exc))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _end(src: Sandbox) -> tuple[str, int]:
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    return row[0], int(row[1])


def test_blocking_stream_skips_heartbeats_and_close_ends_it_at_once(src):
    reader = ServerBinlogs(src.dsn, blocking=True, heartbeat=0.2)
    got: list = []
    errors: list = []
    thread = _follow(reader, _end(src), got, errors)
    time.sleep(1.5)  # idle: the server sends heartbeats
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO s.t VALUES (5000, 'live')")
    deadline = time.monotonic() + 10
    while not any(ev.type == be.XID for _, ev in got) and time.monotonic() < deadline:
        time.sleep(0.02)
    types = [ev.type for _, ev in got]
    assert types[0] == be.FORMAT_DESCRIPTION and be.XID in types, types
    assert not {be.HEARTBEAT, be.HEARTBEAT_V2} & set(types)
    # a long heartbeat period: only close() can wake the reader
    reader2 = ServerBinlogs(src.dsn, blocking=True, heartbeat=30)
    thread2 = _follow(reader2, _end(src), [], errors)
    time.sleep(1.0)
    t0 = time.monotonic()
    reader.close()
    reader2.close()
    thread.join(timeout=5)
    thread2.join(timeout=5)
    assert not thread.is_alive() and not thread2.is_alive()
    assert time.monotonic() - t0 < 1.0
    assert errors == []  # a stop is not an error


def test_close_before_the_stream_starts_returns_at_once(src):
    reader = ServerBinlogs(src.dsn, blocking=True, heartbeat=30)
    reader.close()
    t0 = time.monotonic()
    assert list(reader.events(*_end(src))) == []
    assert time.monotonic() - t0 < 2.0


def test_a_server_that_stops_answering_times_out():
    with Sandbox(binlog=True, binlog_format="ROW") as server:
        reader = ServerBinlogs(server.dsn, blocking=True, heartbeat=0.3, timeout=2.0)
        got: list = []
        errors: list = []
        thread = _follow(reader, _end(server), got, errors)
        time.sleep(1.0)  # heartbeats keep it alive well past the first second
        assert not errors and thread.is_alive()
        os.kill(server.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            thread.join(timeout=10)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert not thread.is_alive() and len(errors) == 1
        at, exc = errors[0]
        assert 1.5 <= at - t0 <= 4.0, at - t0
        assert "no data from the server for 2 s" in str(exc) and "heartbeat" in str(exc), exc
