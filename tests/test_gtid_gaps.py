"""Gaps found by GTIDs: a middle binlog file cut at a commit, shown by the next file's GTID list.

A file that lost its last transactions (and its ROTATE) to a crash of the copy or a copy cut short
is complete at every event, so nothing in it looks damaged; only the next file's GTID list (MariaDB
GTID_LIST, MySQL PREVIOUS_GTIDS) tells that transactions were logged in between. Plan and restore
refuse to run across it, the archiver marks it and the watcher reports it; a file that ends early
with nothing missing (a server crash between transactions) is only warned about.
"""
from __future__ import annotations

import shutil
import struct
import threading
import time
from pathlib import Path

import pytest

from restore.binlog import events as be
from restore.binlog.files import BinlogDirectory
from restore.binlog.gtid_continuity import GtidContinuity
from restore.binlog.server import ServerBinlogs
from restore.errors import BinlogError
from restore.live.archiver import Archiver
from restore.live.watcher import Watcher
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, copy_binlogs, dump
from tests.support.mysql_binlog_writer import UUID, BinlogWriter, previous_gtids

MIDDLE = "binlog.000002"


def _write(conn, first: int, last: int) -> None:
    with conn.cursor() as cur:
        for i in range(first, last + 1):
            cur.execute("INSERT INTO shop.items VALUES (%s, %s)", (i, f"item {i}"))


def _build(src: Sandbox, work: Path) -> dict:
    """binlog.000001: schema, row 1, the dump, rows 2-10; .000002: rows 11-20 (a second dump at its
    end); .000003: rows 21-30; .000004: rows 31-35."""
    conn = src.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(30))")
        cur.execute("INSERT INTO shop.items VALUES (1, 'first')")
    snap = dump(src, work / "shop.sql", ["shop"])
    _write(conn, 2, 10)
    conn.cursor().execute("FLUSH BINARY LOGS")
    _write(conn, 11, 20)
    late = dump(src, work / "shop_late.sql", ["shop"])   # starts at the very end of binlog.000002
    conn.cursor().execute("FLUSH BINARY LOGS")
    _write(conn, 21, 30)
    conn.cursor().execute("FLUSH BINARY LOGS")
    _write(conn, 31, 35)
    return {"snap": snap, "late": late, "before": checksums(conn, ["shop"])}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("gtidgaps")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        out = _build(src, work)
        out["binlogs"] = copy_binlogs(src, work / "binlogs")
    return out


def _events(directory: Path, file: str, etype: int) -> list[be.RawEvent]:
    """The events of one type in `file`, read as far as that file goes."""
    out = []
    for ev in BinlogDirectory(directory).events(file):
        if ev.file != file:
            break
        if ev.type == etype:
            out.append(ev)
    return out


def _cut(directory: Path, file: str, at: int) -> None:
    path = directory / file
    path.write_bytes(path.read_bytes()[:at])


def _cut_after_fifth_commit(directory: Path) -> tuple[int, list[str]]:
    """binlog.000002 cut at the end of its fifth transaction's XID: (end, GTIDs of the lost five)."""
    xids = _events(directory, MIDDLE, be.XID)
    gtids = [be.parse_mariadb_gtid(ev).text for ev in _events(directory, MIDDLE, be.MARIADB_GTID)]
    assert len(xids) == len(gtids) == 10
    _cut(directory, MIDDLE, xids[4].end)
    return xids[4].end, gtids[5:]


def _copy(built, tmp_path) -> Path:
    return Path(shutil.copytree(built["binlogs"], tmp_path / "binlogs"))


def _plan(cli, snap, binlogs, *extra):
    return cli("plan", "--snapshot", snap, "--binlogs", binlogs, "--stop-before", "end", *extra)


def _assert_gap(res, end: int, lost: list[str]) -> None:
    assert res.code == 2, res
    err = res.error
    assert err["error"] == "BinlogError", err
    assert err["where"] == f"{MIDDLE}:{end}", err
    first, last = lost[0], lost[-1].rsplit("-", 1)[1]
    assert f"{first}..{first.rsplit('-', 1)[0]}-{last}" in err["message"], err   # 0-1-17..0-1-21
    assert MIDDLE in err["message"] and str(end) in err["message"] and "binlog.000003" in err["message"], err
    assert "copy the complete" in err["hint"] and "base backup" in err["hint"] and "--stop-before" in err["hint"], err


@pytest.mark.mysql
def test_unaltered_files_plan_and_restore(cli, built):
    res = _plan(cli, built["snap"], built["binlogs"])
    assert res.code == 0, res
    assert res.plan["transactions"] == 34
    assert not [w for w in res.plan["warnings"] if "ROTATE" in w], res.plan["warnings"]
    res = cli("restore", "--snapshot", built["snap"], "--binlogs", built["binlogs"], "--stop-before", "end",
              "--target", "sandbox", "--yes")
    assert res.code == 0, res


@pytest.mark.mysql
def test_a_start_after_the_last_gtid_of_a_file_counts_the_gtids_before_it(cli, built):
    """The late dump starts at the end of binlog.000002: no GTID of it is replayed, yet the next
    file's list announces them all. They are counted although the scan starts past them."""
    res = _plan(cli, built["late"], built["binlogs"])
    assert res.code == 0, res
    assert res.plan["transactions"] == 15


@pytest.mark.mysql
def test_middle_file_cut_at_a_commit_is_refused_by_plan_and_restore(cli, built, tmp_path):
    binlogs = _copy(built, tmp_path)
    end, lost = _cut_after_fifth_commit(binlogs)
    _assert_gap(_plan(cli, built["snap"], binlogs), end, lost)
    res = cli("restore", "--snapshot", built["snap"], "--binlogs", binlogs, "--stop-before", "end",
              "--target", "sandbox", "--yes")
    _assert_gap(res, end, lost)
    # The hint's way out: a replay that stops inside the cut file never crosses the gap.
    last_kept = _events(binlogs, MIDDLE, be.MARIADB_GTID)[-1]
    res = _plan(cli, built["snap"], binlogs, "--stop-before", f"{MIDDLE}:{last_kept.pos}")
    assert res.code == 0, res
    assert res.plan["transactions"] == 9 + 4


@pytest.mark.mysql
def test_a_file_ending_early_with_nothing_missing_only_warns(cli, built, tmp_path):
    """The server crashed after its last commit was flushed: the file lacks its ROTATE only."""
    binlogs = _copy(built, tmp_path)
    rotate = _events(binlogs, MIDDLE, be.ROTATE)[-1]
    _cut(binlogs, MIDDLE, rotate.pos)
    res = _plan(cli, built["snap"], binlogs)
    assert res.code == 0, res
    assert res.plan["transactions"] == 34
    warned = [w for w in res.plan["warnings"] if f"{MIDDLE} ends at position {rotate.pos} without a ROTATE" in w]
    assert warned and "shows no transaction missing" in warned[0], res.plan["warnings"]


@pytest.mark.mysql
def test_continuity_is_fed_real_events(built, tmp_path):
    """The shared class on its own, fed the events of real files, as the watcher and archiver feed it."""
    binlogs = _copy(built, tmp_path)
    end, lost = _cut_after_fifth_commit(binlogs)
    gtids = GtidContinuity()
    gap = None
    for path in sorted(binlogs.glob("binlog.0*")):
        last = None
        for ev in BinlogDirectory(binlogs).events(path.name):   # each file read on its own
            if ev.file != path.name:
                break
            if ev.type in (be.MARIADB_GTID, be.GTID_LIST):
                gap = gap or gtids.feed(ev.type, ev.data, ev.file, ev.pos, ev.checksum)
            last = ev
        gtids.file_ended(path.name, last.end, last.type == be.ROTATE)
    assert gap is not None and (gap.file, gap.end, gap.rotated, gap.next_file) == (MIDDLE, end, False, "binlog.000003")
    assert gap.missing == [f"{lost[0]}..0-1-{lost[-1].rsplit('-', 1)[1]}"]


# -- MariaDB: several server_ids in one domain (a failover) ------------------------------------------

def _gtid_list_event(entries: list[tuple[int, int, int]]) -> bytes:
    body = struct.pack("<I", len(entries)) + b"".join(struct.pack("<IIQ", d, s, n) for d, s, n in entries)
    return _event(be.GTID_LIST, body)


def _mariadb_gtid_event(domain: int, server: int, seq: int) -> bytes:
    return _event(be.MARIADB_GTID, struct.pack("<QIB", seq, domain, 0) + b"\0" * 6, server)


def _event(etype: int, body: bytes, server: int = 1) -> bytes:
    return struct.pack("<IBIIIH", 0, etype, server, be.HEADER_LEN + len(body), 0, 0) + body


def test_failover_in_a_domain_is_compared_by_seq_no():
    gtids = GtidContinuity()
    # file 1 begins with server 1 at 0-1-10; server 2 took over and logged 11..14
    assert gtids.feed(be.GTID_LIST, _gtid_list_event([(0, 1, 10)]), "b.1", 256, False) is None
    for seq in range(11, 15):
        gtids.feed(be.MARIADB_GTID, _mariadb_gtid_event(0, 2, seq), "b.1", 300, False)
    gtids.file_ended("b.1", 900, True)
    # the old primary's entry stays in the list with its lower seq_no: nothing missing
    assert gtids.feed(be.GTID_LIST, _gtid_list_event([(0, 1, 10), (0, 2, 14)]), "b.2", 256, False) is None
    gtids.feed(be.MARIADB_GTID, _mariadb_gtid_event(0, 2, 15), "b.2", 300, False)
    gtids.file_ended("b.2", 700, False)
    gap = gtids.feed(be.GTID_LIST, _gtid_list_event([(0, 1, 10), (0, 2, 18), (1, 3, 4)]), "b.3", 256, False)
    assert gap is not None and (gap.file, gap.end) == ("b.2", 700)
    assert gap.missing == ["0-2-16..0-2-18", "domain 1 up to 1-3-4"]


# -- MySQL PREVIOUS_GTIDS, on a byte-built MySQL 8 binlog ---------------------------------------------

def _mysql_file(path: Path, previous: dict, gnos: list[int], *, rotate_to: str | None) -> None:
    w = BinlogWriter()
    w.fde()
    w.event(be.PREVIOUS_GTIDS, previous_gtids(previous))
    for gno in gnos:
        w.gtid(gno)
        w.query("BEGIN")
        w.table_map(108, "shop", "items")
        w.write_rows(108, [(gno, f"row {gno}")])
        w.xid()
    if rotate_to:
        w.event(be.ROTATE, struct.pack("<Q", 4) + rotate_to.encode())
    path.write_bytes(bytes(w.data))


@pytest.mark.parametrize("kept, missing", [(range(4, 15), None), (range(4, 9), f"{UUID}:9-14")])
def test_mysql_previous_gtids_show_a_file_cut_short(tmp_path, kept, missing):
    _mysql_file(tmp_path / "binlog.000001", {UUID: [(1, 3)]}, list(kept), rotate_to=None)
    _mysql_file(tmp_path / "binlog.000002", {UUID: [(1, 14)]}, [15, 16], rotate_to=None)
    binlogs = BinlogDirectory(tmp_path)
    if missing is None:
        assert sum(1 for _ in binlogs.events()) > 20
        assert [(n, checked) for n, _, checked in binlogs.unended] == [("binlog.000001", True)]
        return
    with pytest.raises(BinlogError) as err:
        list(binlogs.events())
    size = (tmp_path / "binlog.000001").stat().st_size
    assert err.value.where == f"binlog.000001:{size}"
    assert missing in err.value.message and "log_replica_updates" in err.value.hint
    # a start inside the first file, past its GTIDs: they are counted all the same
    last = _events(tmp_path, "binlog.000001", be.XID)[4]
    with pytest.raises(BinlogError):
        list(BinlogDirectory(tmp_path).events("binlog.000001", last.end))


# -- a live server: the replication protocol, the archiver and the watcher -----------------------------

class _Positions:
    def __init__(self, file: str, pos: int) -> None:
        self.saved = (file, pos)

    def load(self):
        return self.saved

    def save(self, file: str, pos: int) -> None:
        self.saved = (file, pos)


@pytest.mark.mysql
def test_live_server_whose_middle_file_was_cut(cli, tmp_path):
    """A middle file cut on the server's own disk (a file copied back badly, say): the server streams
    it as it is. Plan through the DSN refuses; the archiver marks and reports; the watcher reports."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        built = _build(src, tmp_path)
        end, lost = _cut_after_fifth_commit(Path(src.binlog_dir))
        # plan through the replication protocol
        _assert_gap(_plan(cli, built["snap"], src.url + f"?unix_socket={src.socket}"), end, lost)
        with pytest.raises(BinlogError) as err:
            list(ServerBinlogs(src.dsn).events("binlog.000001"))
        assert err.value.where == f"{MIDDLE}:{end}"
        # the archiver: a marker beside the cut copy, one alert, and the rest archived
        troubles: list[str] = []
        archive = tmp_path / "archive"
        arch = Archiver(src.dsn, archive, on_trouble=troubles.append)
        arch.copy()
        arch.copy()
        gap_alerts = [t for t in troubles if "binlog gap" in t]
        assert len(gap_alerts) == 1 and MIDDLE in gap_alerts[0] and str(end) in gap_alerts[0], troubles
        assert (archive / (MIDDLE + ".gap")).exists()
        newest = "binlog.000004"  # archived to its end (the server's copy differs in its FDE's in-use flag)
        assert (archive / newest).stat().st_size == (Path(src.binlog_dir) / newest).stat().st_size
        with pytest.raises(BinlogError) as err:
            list(BinlogDirectory(archive).events("binlog.000001"))
        assert err.value.where == f"{MIDDLE}:{end}"
        # the archiver resuming inside the cut file (its copy ends there) still finds it
        shutil.rmtree(archive)
        arch = Archiver(src.dsn, archive, on_trouble=troubles.append)
        for name in ("binlog.000001", MIDDLE):
            (archive / name).write_bytes((Path(src.binlog_dir) / name).read_bytes())
        troubles.clear()
        arch.copy()
        assert [t for t in troubles if "binlog gap" in t and f"{MIDDLE} " in t], troubles
        assert (archive / (MIDDLE + ".gap")).exists()
        # the watcher, following from binlog.000001
        told: list[str] = []
        watcher = Watcher(src.dsn, _Positions("binlog.000001", 4), lambda alert: None, on_trouble=told.append)
        thread = threading.Thread(target=watcher.run_forever, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not [t for t in told if "binlog gap" in t] and time.monotonic() < deadline:
            time.sleep(0.1)
        watcher.stop()
        thread.join(timeout=10)
        gaps = [t for t in told if "binlog gap" in t]
        assert len(gaps) == 1 and MIDDLE in gaps[0] and lost[0] in gaps[0] and "NOT watched" in gaps[0], told
