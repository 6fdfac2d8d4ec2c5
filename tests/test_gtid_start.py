"""Dumps that record only a GTID position: the binlog files given must reach back to it.

Such a dump's replay starts at the first binlog file present. That file's GTID list (MariaDB
GTID_LIST; MySQL PREVIOUS_GTIDS, see test_mysql_events.py) says what was logged before it: anything
the dump does not hold is in an older file, and without that file the restore would be short.
"""
from __future__ import annotations

import re
import shutil

import pytest

from restore.binlog.events import Gtid
from restore.binlog.gtid import GtidSet
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, copy_binlogs, databases, dump, target_url


def _gtid_only(snap, path):
    """The same dump without its CHANGE MASTER comment: only `gtid_slave_pos` says where it stands."""
    body = re.sub(r"-- CHANGE MASTER TO [^\n]*\n", "", snap.read_text())
    assert "gtid_slave_pos='0-1-" in body
    path.write_text(body)
    return path


def _new_shop(src, rows) -> None:
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.items (id INT PRIMARY KEY, v INT)")
        _items(cur, rows)


def _items(cur, ids, domain=None, server=None):
    if domain is not None:
        cur.execute(f"SET SESSION gtid_domain_id = {domain}")
    if server is not None:
        cur.execute(f"SET SESSION server_id = {server}")
    for i in ids:
        cur.execute("INSERT INTO shop.items VALUES (%s, %s)", (i, i))


@pytest.fixture(scope="module")
def gap(tmp_path_factory):
    """shop: row 1 in the dump; rows 2..11 in binlog.000001 (the file that goes missing); 12..14 in .000002."""
    work = tmp_path_factory.mktemp("gtid-gap")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        _new_shop(src, [1])
        snap = _gtid_only(dump(src, work / "shop.sql", ["shop"]), work / "shop-gtid.sql")
        with src.connect() as conn, conn.cursor() as cur:
            _items(cur, range(2, 12))
            cur.execute("FLUSH BINARY LOGS")
            _items(cur, range(12, 15))
            before = checksums(conn, ["shop"])
            cur.execute("DROP DATABASE shop")
        full = copy_binlogs(src, work / "all")
        purged = copy_binlogs(src, work / "purged")
        (purged / "binlog.000001").unlink()
        with src.connect() as conn, conn.cursor() as cur:   # the live source purges it too
            cur.execute("PURGE BINARY LOGS TO 'binlog.000002'")
        yield {"snap": snap, "full": full, "purged": purged, "before": before, "live": target_url(src)}


def test_missing_older_file_is_refused_before_anything_is_written(gap, target, cli):
    res = cli("restore", "--snapshot", gap["snap"], "--binlogs", gap["purged"], "--target", target_url(target), "--yes")
    assert res.code == 2 and res.doc["ok"] is False, res
    err = res.error
    assert err["error"] == "PlanError", err
    assert err["where"].startswith("binlog.000002:"), err
    assert "binlog.000002" in err["message"] and "0-1-3" in err["message"], err
    assert "domain 0 seq_no 4 to 13 (up to 0-1-13)" in err["message"] and "shop" in err["message"], err
    assert "shop-gtid.sql" in err["message"], err
    assert "copy the older binlog files" in err["hint"] and str(gap["purged"]) in err["hint"], err
    with target.connect() as conn:
        assert "shop" not in databases(conn)


def test_with_every_file_the_same_dump_restores_exactly(gap, target, cli):
    res = cli("restore", "--snapshot", gap["snap"], "--binlogs", gap["full"], "--target", target_url(target), "--yes")
    assert res.code == 0 and res.doc["ok"], res
    assert res.plan["replay_from"] == {"file": "binlog.000001", "pos": 4}, res.plan["replay_from"]
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == gap["before"]


@pytest.mark.mysql
def test_live_source_that_purged_the_file_is_refused(gap, cli):
    res = cli("plan", "--snapshot", gap["snap"], "--binlogs", gap["live"])
    assert res.code == 2, res
    assert res.error["where"].startswith("binlog.000002:"), res
    assert "domain 0 seq_no 4 to 13" in res.error["message"], res
    assert "purged" in res.error["hint"] and "archive" in res.error["hint"], res


def test_dump_taken_after_the_first_file_began_needs_no_older_file(tmp_path, target, cli):
    """No false alarm: the first file's GTID list equals the dump's position, or is behind it."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        _new_shop(src, [1, 2])
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("FLUSH BINARY LOGS")
        exact = _gtid_only(dump(src, tmp_path / "a.sql", ["shop"]), tmp_path / "exact.sql")
        with src.connect() as conn, conn.cursor() as cur:
            _items(cur, [3, 4])
        behind = _gtid_only(dump(src, tmp_path / "b.sql", ["shop"]), tmp_path / "behind.sql")
        with src.connect() as conn, conn.cursor() as cur:
            _items(cur, [5, 6])
            before = checksums(conn, ["shop"])
            cur.execute("DROP DATABASE shop")
        binlogs = copy_binlogs(src, tmp_path / "binlogs")
        (binlogs / "binlog.000001").unlink()
    for snap in (exact, behind):
        res = cli("restore", "--snapshot", snap, "--binlogs", binlogs, "--target", target_url(target), "--yes",
                  "--existing", "keep-aside")
        assert res.code == 0 and res.doc["ok"] and not res.plan["warnings"], (snap, res)
        with target.connect() as conn:
            assert checksums(conn, ["shop"]) == before


@pytest.mark.mysql
def test_another_server_id_or_domain_after_the_dump_is_caught(tmp_path, cli):
    """After the dump, a failover (server_id 2 continues domain 0) and a second domain write into the
    file that goes missing. The dump's own server (0-1-3) is unchanged in the next file's GTID list:
    only looking at every server_id and every domain shows what is missing."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        _new_shop(src, [1])
        snap = _gtid_only(dump(src, tmp_path / "shop.sql", ["shop"]), tmp_path / "shop-gtid.sql")
        with src.connect() as conn, conn.cursor() as cur:
            _items(cur, [2, 3], server=2)          # 0-2-4, 0-2-5
            _items(cur, [4], domain=1, server=1)   # 1-1-1
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("FLUSH BINARY LOGS")
            _items(cur, [5])
        binlogs = copy_binlogs(src, tmp_path / "binlogs")
        shutil.move(binlogs / "binlog.000001", tmp_path / "binlog.000001")
        res = cli("plan", "--snapshot", snap, "--binlogs", binlogs)
        assert res.code == 2, res
        msg = res.error["message"]
        assert "domain 0 seq_no 4 to 5 (up to 0-2-5)" in msg, msg
        assert "domain 1 up to 1-1-1" in msg, msg
        shutil.move(tmp_path / "binlog.000001", binlogs / "binlog.000001")
        res = cli("plan", "--snapshot", snap, "--binlogs", binlogs)
        assert res.code == 0 and res.plan["transactions"] == 4, res


def test_gtid_set_missing_compares_every_domain_and_server():
    dump_pos = GtidSet.parse("0-1-100,1-2-7")
    state = GtidSet.from_gtid_list([Gtid("0-1-100", 0, 1, 100), Gtid("0-2-60", 0, 2, 60), Gtid("1-2-7", 1, 2, 7)])
    assert dump_pos.missing(state) == []                     # an old primary's lower seq_no is no gap
    later = GtidSet.from_gtid_list([Gtid("0-1-100", 0, 1, 100), Gtid("0-2-101", 0, 2, 101), Gtid("2-3-1", 2, 3, 1)])
    assert dump_pos.missing(later) == ["domain 0 seq_no 101 (up to 0-2-101)",
                                       "domain 2 up to 2-3-1 (the dump's position has nothing of domain 2)"]
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    mysql_dump = GtidSet.parse(f"{uuid}:1-5:9")
    assert mysql_dump.missing(GtidSet.from_ranges({uuid: [(1, 5)]})) == []
    assert mysql_dump.missing(GtidSet.from_ranges({uuid: [(1, 12)]})) == [f"{uuid}:6-8:10-12"]
