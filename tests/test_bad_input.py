"""Bad input stops the run with an error naming file and position, and loses nothing."""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

from restore.binlog import events as be
from restore.binlog.files import BinlogDirectory
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, copy_binlogs, dump, master_status, target_url


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A source with one database, a dump, 30 row-format transactions over three binlog files."""
    work = tmp_path_factory.mktemp("bad")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        conn = src.connect()
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE shop")
            cur.execute("CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(30), qty INT)")
            cur.execute("INSERT INTO shop.items VALUES (1, 'first', 1)")
        snap = dump(src, work / "shop.sql", ["shop"])
        with conn.cursor() as cur:
            for i in range(2, 32):
                cur.execute("INSERT INTO shop.items VALUES (%s, %s, %s)", (i, f"item {i}", i))
                if i % 10 == 0:
                    cur.execute("FLUSH BINARY LOGS")
        before = checksums(conn, ["shop"])
        end = master_status(conn)
        binlogs = copy_binlogs(src, work / "binlogs")
    yield {"snap": snap, "binlogs": binlogs, "before": before, "end": end, "work": work}


def _copy(small, tmp_path) -> Path:
    dest = tmp_path / "binlogs"
    shutil.copytree(small["binlogs"], dest)
    return dest


def _write_rows_events(directory: Path) -> list[be.RawEvent]:
    reader = BinlogDirectory(directory)
    return [ev for ev in reader.events() if ev.type in be.WRITE_ROWS]


def _plan(cli, small, binlogs, *extra):
    return cli("plan", "--snapshot", small["snap"], "--binlogs", binlogs, "--stop-before", "end", *extra)


@pytest.mark.mysql
def test_clean_input_plans_all_transactions(cli, small):
    res = _plan(cli, small, small["binlogs"])
    assert res.code == 0, res
    assert res.plan["transactions"] == 30
    assert res.plan["tables"]["shop.items"]["predicted_rows"] == 31


@pytest.mark.mysql
def test_crc_mismatch_names_file_and_position(cli, small, tmp_path):
    binlogs = _copy(small, tmp_path)
    victim = _write_rows_events(binlogs)[12]
    path = binlogs / victim.file
    data = bytearray(path.read_bytes())
    data[victim.pos + be.HEADER_LEN + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    res = _plan(cli, small, binlogs)
    assert res.code == 2, res
    assert "CRC32" in res.error["message"]
    assert res.error["where"] == f"{victim.file}:{victim.pos}"
    assert res.error["hint"]


@pytest.mark.mysql
def test_missing_file_in_sequence(cli, small, tmp_path):
    binlogs = _copy(small, tmp_path)
    (binlogs / "binlog.000002").unlink()
    res = _plan(cli, small, binlogs)
    assert res.code == 2, res
    assert "binlog.000002 is missing" in res.error["message"]


@pytest.mark.mysql
def test_truncated_middle_file_is_an_error(cli, small, tmp_path):
    binlogs = _copy(small, tmp_path)
    path = binlogs / "binlog.000002"
    path.write_bytes(path.read_bytes()[:-7])
    res = _plan(cli, small, binlogs)
    assert res.code == 2, res
    assert "binlog.000002 is truncated" in res.error["message"]
    assert res.error["where"].startswith("binlog.000002:")


@pytest.mark.mysql
def test_middle_file_cut_at_an_event_boundary_is_refused(cli, small, tmp_path):
    """binlog.000002 copied short but at an event boundary: nothing to call corrupt, yet it lacks the
    ROTATE a server ends a file with, and binlog.000003's GTID list shows the transaction cut off
    (tests/test_gtid_gaps.py has the rest)."""
    binlogs = _copy(small, tmp_path)
    xid = [ev for ev in BinlogDirectory(binlogs).events() if ev.type == be.XID and ev.file == "binlog.000002"][-2]
    path = binlogs / "binlog.000002"
    path.write_bytes(path.read_bytes()[:xid.end])
    res = _plan(cli, small, binlogs)
    assert res.code == 2, res
    assert res.error["where"] == f"binlog.000002:{xid.end}" and "GTID list of binlog.000003" in res.error["message"]


@pytest.mark.mysql
def test_not_a_binlog(cli, small, tmp_path):
    binlogs = _copy(small, tmp_path)
    (binlogs / "binlog.000002").write_bytes(b"\x1f\x8b" + b"gzip data" * 10)
    res = _plan(cli, small, binlogs)
    assert res.code == 2, res
    assert "not a binlog file" in res.error["message"] and res.error["where"] == "binlog.000002:0"


@pytest.mark.mysql
def test_unknown_event_type_is_refused(cli, small, tmp_path):
    binlogs = _copy(small, tmp_path)
    victim = _write_rows_events(binlogs)[3]
    path = binlogs / victim.file
    data = bytearray(path.read_bytes())
    event = bytearray(data[victim.pos:victim.pos + len(victim.data)])
    event[4] = be.QUERY_COMPRESSED  # a real type we must not replay; CRC recomputed to match
    struct.pack_into("<I", event, len(event) - 4, zlib.crc32(bytes(event[:-4])))
    data[victim.pos:victim.pos + len(event)] = event
    path.write_bytes(bytes(data))
    res = _plan(cli, small, binlogs)
    assert res.code == 2, res
    assert "compressed" in res.error["message"]
    assert res.error["where"] == f"{victim.file}:{victim.pos}"


def test_truncated_last_file_keeps_everything_complete(cli, small, tmp_path, target):
    """A crashed server's last file: the half-written event is reported, the rest restored."""
    binlogs = _copy(small, tmp_path)
    last = sorted(p for p in binlogs.iterdir() if p.name != "binlog.index")[-1]
    events = list(BinlogDirectory(binlogs).events())
    xids = [ev for ev in events if ev.type == be.XID]
    # Cut inside the last transaction's row event: that transaction must not be applied.
    last_rows = [ev for ev in events if ev.type in be.WRITE_ROWS][-1]
    last.write_bytes(last.read_bytes()[:last_rows.pos + 20])
    res = cli("restore", "--snapshot", small["snap"], "--binlogs", binlogs, "--stop-before", "end",
              "--target", target_url(target), "--yes")
    assert res.code == 0, res
    assert any("truncated" in w for w in res.plan["warnings"]), res.plan["warnings"]
    assert res.plan["end"] == {"file": xids[-2].file, "pos": xids[-2].end}
    rows = res.doc["restore"]["verification"]["tables"]["shop.items"]["rows"]
    assert rows == small["before"]["shop.items"][0] - 1


@pytest.mark.mysql
def test_compressed_binlog_refused(cli, tmp_path):
    with Sandbox(binlog=True, binlog_format="ROW",
                 extra_args=["--log-bin-compress=ON", "--log-bin-compress-min-len=10"]) as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE z")
            cur.execute("CREATE TABLE z.t (id INT PRIMARY KEY, v TEXT)")
        snap = dump(src, tmp_path / "z.sql", ["z"])
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO z.t VALUES (1, REPEAT('x', 500))")
        res = cli("plan", "--snapshot", snap, "--binlogs", src.binlog_dir, "--stop-before", "end")
    assert res.code == 2, res
    assert "compressed" in res.error["message"]
    assert res.error["where"].startswith("binlog.000001:")
    assert "--stop-before" in res.error["hint"]


@pytest.mark.mysql
def test_encrypted_binlog_refused_offline(cli, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("1;" + "a1" * 32 + "\n")
    args = ["--plugin-load-add=file_key_management", f"--file-key-management-filename={keys}",
            "--encrypt-binlog=ON"]
    with Sandbox(binlog=True, binlog_format="ROW", extra_args=args) as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE e")
            cur.execute("CREATE TABLE e.t (id INT PRIMARY KEY)")
        snap = dump(src, tmp_path / "e.sql", ["e"])
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO e.t VALUES (1)")
        res = cli("plan", "--snapshot", snap, "--binlogs", src.binlog_dir, "--stop-before", "end")
    assert res.code == 2, res
    assert "encrypted" in res.error["message"]
    assert res.error["where"].startswith("binlog.000001:")
    assert "mysql://" in res.error["hint"]


def test_duplicate_entry_names_table_key_and_position(cli, tmp_path, target):
    """A dump whose recorded position is older than its data: the replay collides, and says so."""
    # Point the dump at the transaction before its real position: row id 1 is inserted twice.
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE shop")
            cur.execute("CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(30), qty INT)")
            cur.execute("INSERT INTO shop.items VALUES (1, 'first', 1)")
            early = master_status(conn)[1]
            cur.execute("INSERT INTO shop.items VALUES (2, 'second', 2)")
        snap = dump(src, tmp_path / "shop.sql", ["shop"])
        bad = tmp_path / "shop-off.sql"
        body = snap.read_text()
        real = int(body.split("MASTER_LOG_POS=")[1].split(";")[0])
        bad.write_text(body.replace(f"MASTER_LOG_POS={real}", f"MASTER_LOG_POS={early}"))
        res = cli("restore", "--snapshot", bad, "--binlogs", src.binlog_dir, "--stop-before", "end",
                  "--target", target_url(target), "--yes")
        insert = [ev for ev in BinlogDirectory(src.binlog_dir).events() if ev.type in be.WRITE_ROWS][-1]
    assert res.code == 2, res
    msg = res.error["message"]
    assert "duplicate" in msg.lower() and "shop.items" in msg and "PRIMARY" in msg and "'2'" in msg
    assert res.error["where"] == f"{insert.file}:{insert.pos}"
    assert "writing to the target" in res.error["hint"] and "coordinates" in res.error["hint"]


@pytest.mark.mysql
def test_password_never_echoed(cli, small):
    res = cli("restore", "--snapshot", small["snap"], "--binlogs", small["binlogs"],
              "--target", "mysql://restore:s3cretPW@127.0.0.1:1", "--yes")
    assert res.code == 2, res
    assert "s3cretPW" not in res.raw and "s3cretPW" not in res.err
    assert "127.0.0.1:1" in res.error["message"]


@pytest.mark.mysql
@pytest.mark.parametrize("spec", ["binlog.000001:99999999", "0-1-999999"])
def test_unknown_stop_spec(cli, small, spec):
    res = cli("plan", "--snapshot", small["snap"], "--binlogs", small["binlogs"], "--stop-before", spec)
    assert res.code == 2, res
    assert spec in res.error["message"]


@pytest.mark.mysql
def test_malformed_spec(cli, small):
    res = cli("plan", "--snapshot", small["snap"], "--binlogs", small["binlogs"], "--stop-before", "yesterday-ish")
    assert res.code == 2, res
    assert "SPEC" in res.error["message"] and "FILE:POS" in res.error["hint"]
