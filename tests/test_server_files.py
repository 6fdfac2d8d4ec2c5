"""What real servers write (issue 10 §5): MySQL compressed transactions and partial JSON updates,
events flagged ignorable, relay logs, and tables no snapshot holds.

The MySQL 8.0.40 file of the MariaDB test suite (mariadb-test-data, std_data/mdev35643_mysql_80_binlog
.000001, written by `rpl_from_mysql80.test`) holds a compressed transaction of 100 INSERTs into a
latin1 table (so MariaDB can apply its row events) and a partial JSON update. `mariadb-binlog` cannot
read the compressed transaction; it reads the same events written out uncompressed (`_uncompressed`),
which is what the plan and the replay are compared with. Relay logs come from a real MariaDB replica.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

from restore.binlog import events as be
from restore.binlog.files import BinlogDirectory
from restore.binlog.walker import RowsStep, TxEnd, Walker
from restore.live.archiver import Archiver
from restore.live.watcher import watched_statements
from restore.mysql.dsn import Dsn
from restore.mysql.sandbox import Sandbox
from tests.support import binlog_corpus as corpus
from tests.support.db import checksums, q, target_url
from tests.support.mariadb_decode import decode, mariadb_binlog, plan_rows
from tests.support.mysql_binlog_writer import BinlogWriter

MYSQL80 = "std_data/mdev35643_mysql_80_binlog.000001"
GTID_BEFORE_PAYLOAD, PAYLOAD, AFTER_PAYLOAD = 1389, 1468, 2297   # the compressed transaction and the next one
PARTIAL_TX, PARTIAL = 3190, 3403                                  # UPDATE t2 SET b=JSON_REPLACE(...)
AURORA = 100   # the type Aurora writes flagged LOG_EVENT_IGNORABLE_F


def _framed(event: bytes, at: int) -> bytes:
    """`event` (checksummed) moved to offset `at`: its end_log_pos and CRC32 made to fit."""
    out = bytearray(event)
    out[13:17] = struct.pack("<I", at + len(out))
    out[-4:] = struct.pack("<I", zlib.crc32(out[:-4]))
    return bytes(out)


def _uncompressed(data: bytes) -> tuple[bytes, dict[int, int]]:
    """The file with each TRANSACTION_PAYLOAD replaced by the events it holds, as a server with
    binlog_transaction_compression=OFF writes them; and where each old event starts in it."""
    out, moved, pos = bytearray(data[:4]), {}, 4
    while pos < len(data):
        ts, etype, server_id, size, _, flags = be.parse_header(data, pos)
        raw = data[pos:pos + size]
        moved[pos] = len(out)
        if etype == be.TRANSACTION_PAYLOAD:
            ev = be.RawEvent("binlog.000001", pos, ts, etype, server_id, flags, raw, True)
            for inner in be.payload_events(ev):
                out += _framed(inner.data, len(out))
        else:
            out += raw if etype == be.FORMAT_DESCRIPTION else _framed(raw, len(out))
        pos += size
    return bytes(out), moved


def _mysql80(tmp_path: Path) -> tuple[Path, Path]:
    binlogs = corpus.install(MYSQL80, tmp_path / "binlogs")
    dump = corpus.synthetic_dump(tmp_path / "empty.sql", ["test"], charset="latin1")
    return binlogs, dump


def _twin(tmp_path: Path, cut: int) -> Path:
    """The MySQL file uncompressed, up to (not including) the event at `cut` of the original."""
    data, moved = _uncompressed(corpus.path(MYSQL80).read_bytes())
    twin = tmp_path / "twin" / "binlog.000001"
    twin.parent.mkdir()
    twin.write_bytes(data[:moved[cut]])
    return twin


# -- MySQL compressed transactions ------------------------------------------------------------------

def test_compressed_transaction_counts_equal_mariadb_binlog_on_the_same_events(cli, tmp_path):
    binlogs, dump = _mysql80(tmp_path)
    twin = _twin(tmp_path, PARTIAL_TX)
    r = cli("plan", "--snapshot", dump, "--binlogs", binlogs, "--stop-before", f"binlog.000001:{PARTIAL_TX}")
    assert r.code == 0, (r.doc.get("error"), r.err[-2000:])
    plan, dec = r.doc["plan"], decode(twin)
    assert (plan["transactions"], plan_rows(plan)) == (dec.transactions, dec.rows)
    assert plan_rows(plan) == {"test.t1": [105, 0, 0]}   # 4 before, 100 compressed, 1 after
    assert plan["warnings"] == [], plan["warnings"]
    # mariadb-binlog itself stops at the compressed transaction.
    refused = mariadb_binlog(corpus.path(MYSQL80), text=True)
    assert refused.returncode != 0 and "TRANSACTION_PAYLOAD" in refused.stderr


def test_compressed_transaction_events_are_at_the_payloads_position(tmp_path):
    binlogs, _ = _mysql80(tmp_path)
    steps = list(Walker(BinlogDirectory(binlogs).events(), count=True).steps())
    inner = [s for s in steps if isinstance(s, RowsStep) and s.event.pos == PAYLOAD]
    assert len(inner) == 100 and sum(s.rows for s in inner) == 100
    assert {s.event.where for s in inner} == {f"binlog.000001:{PAYLOAD}"}
    ends = [s.pos for s in steps if isinstance(s, TxEnd)]
    assert AFTER_PAYLOAD in ends   # the transaction ends after the payload event: the resume point


def test_compressed_transaction_replayed_as_mariadb_binlog_pipes_its_events(cli, target, tmp_path):
    binlogs, dump = _mysql80(tmp_path)
    r = cli("restore", "--snapshot", dump, "--binlogs", binlogs, "--stop-before", f"binlog.000001:{PARTIAL_TX}",
            "--target", target_url(target), "--yes")
    assert r.code == 0, (r.doc.get("error"), r.doc.get("restore", {}).get("verification"), r.err[-2000:])
    twin = _twin(tmp_path, PARTIAL_TX)
    with Sandbox() as piped:
        with piped.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE test CHARACTER SET latin1")
        decoded = mariadb_binlog(twin)
        assert decoded.returncode == 0, decoded.stderr.decode(errors="replace")
        fed = subprocess.run(["mariadb", *piped.client_args()], input=decoded.stdout, capture_output=True)
        assert fed.returncode == 0, fed.stderr.decode(errors="replace")
        with target.connect() as a, piped.connect() as b:
            ours, theirs = checksums(a, ["test"]), checksums(b, ["test"])
    assert ours == theirs and ours["test.t1"][0] == 105, (ours, theirs)


def test_compressed_transaction_in_the_watch_prefilter(tmp_path):
    """The watcher's prefilter decompresses the transaction and leaves out the statements of
    databases it does not watch, as it does with plain events."""
    binlogs, _ = _mysql80(tmp_path)

    def walk(dbs: set[bytes]) -> tuple[dict[str, int], int]:
        rows: dict[str, int] = {}
        ends = 0
        events = watched_statements(BinlogDirectory(binlogs).events(), dbs)
        for step in Walker(events, count=True).steps():
            if isinstance(step, RowsStep):
                rows[step.tmap.full_name] = rows.get(step.tmap.full_name, 0) + step.rows
            ends += isinstance(step, TxEnd)
        return rows, ends
    assert walk({b"test"}) == ({"test.t1": 105, "test.t2": 1}, 9)
    assert walk({b"other"}) == ({}, 9)


def test_archive_resumes_over_files_with_compressed_and_ignorable_events(tmp_path):
    """The archiver copies bytes: its check of the newest archived file must not refuse them."""
    for name, data in (("mysql", corpus.path(MYSQL80).read_bytes()), ("aurora", _aurora_like(flagged=True)[0])):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "binlog.000001").write_bytes(data)
        archiver = Archiver(Dsn.parse("mysql://root@127.0.0.1:9"), directory)
        assert archiver.resume_point() == ("binlog.000001", len(data))


# -- MySQL partial JSON updates ---------------------------------------------------------------------

def test_partial_json_update_is_counted_and_refused_into_mariadb(cli, target, tmp_path):
    binlogs, dump = _mysql80(tmp_path)
    r = cli("plan", "--snapshot", dump, "--binlogs", binlogs, "--stop-before", "end")
    assert r.code == 0, r.doc.get("error")
    assert plan_rows(r.doc["plan"]) == {"test.t1": [105, 0, 0], "test.t2": [0, 1, 0]}
    r = cli("restore", "--snapshot", dump, "--binlogs", binlogs, "--stop-before", "end",
            "--target", target_url(target), "--yes")
    assert r.code == 2 and "Traceback" not in r.err, (r.code, r.err[-2000:])
    error = r.doc["error"]
    assert error["where"] == f"binlog.000001:{PARTIAL}", error
    assert "partial JSON update of test.t2" in error["message"] and "MySQL 8" in error["message"], error
    assert f"--stop-before binlog.000001:{PARTIAL_TX}" in error["hint"], error
    # Everything before it was committed.
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM test.t1")
        assert cur.fetchone()[0] == 105


# -- events flagged ignorable -----------------------------------------------------------------------

def _aurora_like(flagged: bool) -> tuple[bytes, dict]:
    """A MySQL 5.7-style file with two events of type 100 between transactions, as Aurora writes them."""
    w = BinlogWriter()
    w.fde()
    w.event(be.PREVIOUS_GTIDS, struct.pack("<Q", 0))
    marks: dict = {}
    flags = be.LOG_EVENT_IGNORABLE_F if flagged else 0
    for gno, rows in ((1, [(1, "one"), (2, "two")]), (2, [(3, "three")])):
        w.gtid(gno)
        w.query("BEGIN")
        w.table_map(108, "shop", "items")
        w.write_rows(108, rows)
        w.xid()
        marks.setdefault("aurora", []).append(w.event(AURORA, b"\x01aurora heartbeat", flags))
    return bytes(w.data), marks


def _shop_dump(tmp_path: Path, rows: str = "") -> Path:
    dump = tmp_path / "shop.sql"
    dump.write_text(
        "-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n"
        "-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=4;\n"
        "CREATE DATABASE `shop`;\nUSE `shop`;\n"
        "CREATE TABLE `items` (\n  `id` int NOT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n);\n"
        + (f"INSERT INTO `items` VALUES {rows};\n" if rows else "") + "-- Dump completed on 2026-12-02 12:00:00\n")
    return dump


def test_ignorable_events_are_skipped_with_a_note(cli, target, tmp_path):
    data, marks = _aurora_like(flagged=True)
    (tmp_path / "binlogs").mkdir()
    (tmp_path / "binlogs" / "binlog.000001").write_bytes(data)
    dump = _shop_dump(tmp_path)
    r = cli("plan", "--snapshot", dump, "--binlogs", tmp_path / "binlogs", "--stop-before", "end")
    assert r.code == 0, r.doc.get("error")
    plan = r.doc["plan"]
    assert plan["transactions"] == 2 and plan_rows(plan) == {"shop.items": [3, 0, 0]}
    note = [w for w in plan["warnings"] if "ignorable" in w]
    assert len(note) == 1 and "skipped 2 events of type 100" in note[0], plan["warnings"]
    assert f"the first at binlog.000001:{marks['aurora'][0]}" in note[0], note
    r = cli("restore", "--snapshot", dump, "--binlogs", tmp_path / "binlogs", "--stop-before", "end",
            "--target", target_url(target), "--yes")
    assert r.code == 0, (r.doc.get("error"), r.err[-2000:])
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, name FROM shop.items ORDER BY id")
        assert cur.fetchall() == ((1, "one"), (2, "two"), (3, "three"))


def test_an_unknown_event_not_flagged_ignorable_is_refused(cli, tmp_path):
    data, marks = _aurora_like(flagged=False)
    (tmp_path / "binlogs").mkdir()
    (tmp_path / "binlogs" / "binlog.000001").write_bytes(data)
    r = cli("plan", "--snapshot", _shop_dump(tmp_path), "--binlogs", tmp_path / "binlogs", "--stop-before", "end")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.doc["error"]["where"] == f"binlog.000001:{marks['aurora'][0]}"
    assert "type 100" in r.doc["error"]["message"], r.doc["error"]


# -- relay logs -------------------------------------------------------------------------------------

def _relay_logs(tmp_path: Path) -> tuple[Path, dict, list[str]]:
    """The relay logs of a real MariaDB replica (its I/O thread only, so they stay), two files and
    the index; the source's checksums before its DROP TABLE; the relay files' names."""
    with Sandbox(binlog=True, binlog_format="ROW") as source, \
            Sandbox(server_id=2, extra_args=["--relay-log=replica-relay-bin", "--skip-slave-start"]) as replica:
        with source.connect(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE shop")   # the dump has it: the replica starts after it
            cur.execute("SHOW MASTER STATUS")
            file, pos = cur.fetchone()[:2]
            cur.execute("CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20))")
            cur.execute("INSERT INTO shop.items VALUES (1, 'one'), (2, 'two'), (3, 'three')")
            cur.execute("UPDATE shop.items SET name = 'TWO' WHERE id = 2")
        with replica.connect(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={source.port}, MASTER_USER='root', "
                        f"MASTER_PASSWORD='', MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos}, MASTER_USE_GTID=no")
            cur.execute("START SLAVE IO_THREAD")
            _caught_up(source, cur)
            cur.execute("FLUSH RELAY LOGS")
            with source.connect(autocommit=True) as sconn, sconn.cursor() as scur:
                scur.execute("INSERT INTO shop.items VALUES (4, 'four'), (5, 'five')")
                scur.execute("DELETE FROM shop.items WHERE id = 1")
                before = checksums(sconn, ["shop"])
                scur.execute("DROP TABLE shop.items")
            _caught_up(source, cur)
            cur.execute("STOP SLAVE IO_THREAD")
        relay = tmp_path / "relay"
        relay.mkdir()
        names = sorted(p.name for p in (replica.dir / "data").glob("replica-relay-bin.*"))
        for name in names:
            shutil.copyfile(replica.dir / "data" / name, relay / name)
    files = [n for n in names if not n.endswith(".index")]
    assert len(files) >= 2 and "replica-relay-bin.index" in names, names
    return relay, before, files


def _caught_up(source: Sandbox, replica_cur) -> None:
    with source.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
    for _ in range(400):   # (MASTER_POS_WAIT waits for the SQL thread, which is not running)
        replica_cur.execute("SHOW SLAVE STATUS")
        cols = [d[0] for d in replica_cur.description]
        status = dict(zip(cols, replica_cur.fetchone()))
        if (status["Master_Log_File"], int(status["Read_Master_Log_Pos"])) == (file, int(pos)):
            return
        time.sleep(0.05)
    raise AssertionError(f"the replica's I/O thread did not reach {file}:{pos}: {status}")


def test_relay_logs_of_a_replica_are_planned_and_restored(cli, target, tmp_path):
    relay, before, files = _relay_logs(tmp_path)
    dump = corpus.synthetic_dump(tmp_path / "empty.sql", ["shop"], start=f"{files[0]}:4")
    r = cli("plan", "--snapshot", dump, "--binlogs", relay, "--stop-before", "end")
    assert r.code == 0, (r.doc.get("error"), r.err[-2000:])
    plan = r.doc["plan"]
    want_tx, want_rows = 0, {}
    for name in files:   # mariadb-binlog reads relay logs too
        dec = decode(relay / name)
        want_tx += dec.transactions
        for table, counts in dec.rows.items():
            want_rows[table] = [a + b for a, b in zip(want_rows.get(table, [0, 0, 0]), counts)]
    # (the DROP TABLE at the end removes the table from mariadb-binlog's counts, not from the plan's transactions)
    assert plan["transactions"] == want_tx, (plan["transactions"], want_tx)
    assert plan_rows(plan) in ({}, want_rows), (plan_rows(plan), want_rows)
    assert not any("no snapshot holds" in w for w in plan["warnings"]), plan["warnings"]
    # The DROP TABLE is found where it lies in the relay file, at its offset there.
    r = cli("plan", "--snapshot", dump, "--binlogs", relay, "--stop-before", "auto")
    stop = r.doc["plan"]["stop"]
    assert stop["file"] in files and "DROP TABLE" in stop["statement"], stop
    data = (relay / stop["file"]).read_bytes()
    assert be.parse_header(data, stop["pos"])[1] == be.QUERY and b"DROP TABLE" in data[stop["pos"]:stop["pos"] + 200]
    assert plan_rows(r.doc["plan"]) == {"shop.items": [5, 1, 1]}
    r = cli("restore", "--snapshot", dump, "--binlogs", relay, "--stop-before", "auto",
            "--target", target_url(target), "--yes")
    assert r.code == 0, (r.doc.get("error"), r.err[-2000:])
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == before
    # Under another name, a relay log is known by the source's format description in it.
    last = tmp_path / "renamed"
    last.mkdir()
    shutil.copyfile(relay / files[-1], last / "binlog.000001")
    dump = corpus.synthetic_dump(tmp_path / "empty2.sql", ["shop"])
    r = cli("plan", "--snapshot", dump, "--binlogs", last, "--stop-before", "end")
    assert r.code == 0, (r.doc.get("error"), r.err[-2000:])
    assert r.doc["plan"]["transactions"] == decode(relay / files[-1]).transactions


def test_corpus_relay_log_read_under_its_own_name(cli, tmp_path):
    """MySQL 5.0.58's relay log (three format descriptions' worth of source events), as a replica
    names it, with its index: counts equal mariadb-binlog's."""
    rel = "std_data/bug33029-slave-relay-bin.000001"
    relay = corpus.install(rel, tmp_path / "relay", name="slave-relay-bin.000001")
    (relay / "slave-relay-bin.index").write_text("./slave-relay-bin.000001\n")
    dec = decode(corpus.path(rel))
    dump = corpus.synthetic_dump(tmp_path / "empty.sql", sorted(dec.databases), start="slave-relay-bin.000001:4")
    r = cli("plan", "--snapshot", dump, "--binlogs", relay, "--stop-before", "end")
    assert r.code == 0, r.doc.get("error")
    assert (r.doc["plan"]["transactions"], plan_rows(r.doc["plan"])) == (dec.transactions, dec.rows)


def test_relay_log_damage_is_still_found(cli, tmp_path):
    """Only the position check is relaxed: a relay log whose event sizes do not add up is refused."""
    rel = "std_data/bug33029-slave-relay-bin.000001"
    data = bytearray(corpus.path(rel).read_bytes())
    at = 1285                                   # a QUERY event of the source: make it 3 bytes longer
    data[at + 9:at + 13] = struct.pack("<I", struct.unpack_from("<I", data, at + 9)[0] + 3)
    (tmp_path / "relay").mkdir()
    (tmp_path / "relay" / "slave-relay-bin.000001").write_bytes(bytes(data))
    dump = corpus.synthetic_dump(tmp_path / "empty.sql", ["test"], start="slave-relay-bin.000001:4")
    r = cli("plan", "--snapshot", dump, "--binlogs", tmp_path / "relay", "--stop-before", "end")
    assert r.code == 2 and "Traceback" not in r.err, (r.code, r.err[-2000:])
    assert r.doc["error"]["where"].startswith("slave-relay-bin.000001:"), r.doc["error"]


# -- tables no snapshot holds -----------------------------------------------------------------------

def test_a_table_no_snapshot_holds_is_warned_about_and_inexact(cli, tmp_path):
    """MySQL 5.1's update-full-row.binlog writes test.ba, created before the file began."""
    binlogs = corpus.install("suite/binlog/std_data/update-full-row.binlog", tmp_path / "binlogs")
    dump = corpus.synthetic_dump(tmp_path / "empty.sql", ["test"])
    r = cli("plan", "--snapshot", dump, "--binlogs", binlogs, "--stop-before", "end")
    assert r.code == 0, r.doc.get("error")
    ba = r.doc["plan"]["tables"]["test.ba"]
    assert ba["exact"] is False and ba["predicted_rows"] is None and "no snapshot holds" in ba["note"], ba
    assert any(w.startswith("test.ba is written by the binlog, but no snapshot holds it") for w in r.doc["plan"]["warnings"])


def test_no_negative_predicted_count(cli, tmp_path):
    """The binlog deletes two rows of a table the dump holds one row of."""
    w = BinlogWriter()
    w.fde()
    w.event(be.PREVIOUS_GTIDS, struct.pack("<Q", 0))
    w.gtid(1)
    w.query("BEGIN")
    w.table_map(108, "shop", "items")
    w.write_rows(108, [(1, "one"), (2, "two")], etype=be.DELETE_ROWS_V2)
    w.xid()
    (tmp_path / "binlogs").mkdir()
    (tmp_path / "binlogs" / "binlog.000001").write_bytes(bytes(w.data))
    r = cli("plan", "--snapshot", _shop_dump(tmp_path, "(1,'one')"), "--binlogs", tmp_path / "binlogs",
            "--stop-before", "end")
    assert r.code == 0, r.doc.get("error")
    items = r.doc["plan"]["tables"]["shop.items"]
    assert items["deleted"] == 2 and items["predicted_rows"] is None and items["exact"] is False, items
    assert any("shop.items" in w and "more than the snapshot" in w for w in r.doc["plan"]["warnings"])
