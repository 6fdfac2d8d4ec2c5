"""The archiver: a raw copy of the server's binlogs, byte-identical, resumable after kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from restore.binlog.files import BinlogDirectory
from restore.errors import BinlogError
from restore.live.archiver import Archiver
from restore.mysql.sandbox import Sandbox
from tests.support.binlog_archive import archived_files, insert_traffic, server_binlog_files
from tests.support.db import checksums, dump, target_url


def _archived_bytes(d: Path) -> int:
    return sum(len(b) for b in archived_files(d).values())


def _wait_for_growth(d: Path, than: int, timeout: float = 30) -> int:
    """Wait until the archive holds more than `than` bytes, so a kill lands mid-copy rather than
    before the process has even started (a slow interpreter start would make the test vacuous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        size = _archived_bytes(d)
        if size > than:
            return size
        time.sleep(0.05)
    raise AssertionError(f"the archiver copied nothing new into {d} within {timeout} s")


@pytest.mark.mysql
def test_copy_is_byte_identical_and_resumable(tmp_path):
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        insert_traffic(src, 300, flush_every=100)
        arch = Archiver(src.dsn, tmp_path / "archive")
        assert arch.copy() > 0
        insert_traffic(src, 120, flush_every=50)
        arch.copy()
        assert archived_files(tmp_path / "archive") == server_binlog_files(src)


@pytest.mark.mysql
def test_kill_minus_nine_then_restart_is_byte_identical(tmp_path):
    archive = tmp_path / "archive"
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        insert_traffic(src, 50)
        cmd = [sys.executable, "-m", "bot.cli", "archive", "--source", src.url, "--dir", str(archive)]
        for round_ in range(3):
            # measured right before this round's archiver starts: the previous one kept copying
            # after its growth was seen, so an older figure is exceeded already and the wait would
            # return (and the kill land) before this archiver has copied anything
            copied = _archived_bytes(archive)
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            insert_traffic(src, 400, flush_every=150)
            _wait_for_growth(archive, copied)
            insert_traffic(src, 100)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and archived_files(archive) != server_binlog_files(src):
            time.sleep(0.2)
        proc.terminate()
        proc.wait(timeout=10)
        assert archived_files(archive) == server_binlog_files(src)


def test_restore_from_archive_equals_restore_from_server(cli, tmp_path, target):
    with Sandbox(binlog=True, binlog_format="MIXED") as src:
        insert_traffic(src, 10)
        snap = dump(src, tmp_path / "club.sql", ["club"])
        insert_traffic(src, 200, flush_every=70)
        with src.connect() as conn, conn.cursor() as cur:
            before = checksums(conn, ["club"])
            cur.execute("DROP DATABASE club")
        Archiver(src.dsn, tmp_path / "archive").copy()
        live = cli("plan", "--snapshot", snap, "--binlogs", src.url)
        archived = cli("restore", "--snapshot", snap, "--binlogs", tmp_path / "archive",
                       "--target", target_url(target), "--yes")
    assert archived.code == 0, archived
    for key in ("stop", "transactions", "tables", "end"):
        assert archived.plan[key] == live.plan[key], key
    with target.connect() as conn:
        assert checksums(conn, ["club"]) == before


def _flush_and_purge(src: Sandbox, to: str | None = None, timeout: float = 15) -> str:
    """FLUSH BINARY LOGS, then purge every file before `to` (default: the new current file).

    MariaDB keeps a file until its binlog checkpoint is written (about a second after the
    flush) and says nothing when it keeps one, so the purge is repeated until the file is gone."""
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        to = to or cur.fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            cur.execute(f"PURGE BINARY LOGS TO '{to}'")
            cur.execute("SHOW BINARY LOGS")
            if cur.fetchone()[0] == to:
                return to
            assert time.monotonic() < deadline, f"the server kept the files before {to} for {timeout} s"
            time.sleep(0.05)


@pytest.mark.mysql
def test_purged_before_archived_is_a_named_gap(tmp_path):
    troubles: list[str] = []
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        insert_traffic(src, 20)
        arch = Archiver(src.dsn, tmp_path / "archive", on_trouble=troubles.append)
        arch.copy()
        insert_traffic(src, 60, flush_every=20)
        newest = _flush_and_purge(src)
        insert_traffic(src, 5)
        arch.copy()
        server = server_binlog_files(src)
    assert len(troubles) == 1, troubles
    assert "gap" in troubles[0] and "binlog.000001" in troubles[0] and "snapshot" in troubles[0]
    # the alert is raised, and the archive goes on with what the server still has
    assert archived_files(tmp_path / "archive")[newest] == server[newest]


@pytest.mark.mysql
def test_purged_partial_file_is_a_named_gap_and_archiving_goes_on(tmp_path):
    """The server still has binlog.000002 (the very next file), but the archived binlog.000001
    stopped before its end: the tail written after the archiver stopped is gone with the purge."""
    archive = tmp_path / "archive"
    troubles: list[str] = []
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        insert_traffic(src, 20)
        arch = Archiver(src.dsn, archive, on_trouble=troubles.append)
        arch.copy()  # binlog.000001 as far as it goes now: no ROTATE at its end yet
        partial = (archive / "binlog.000001").read_bytes()
        insert_traffic(src, 30)  # the tail the archive never sees
        _flush_and_purge(src, "binlog.000002")
        insert_traffic(src, 10)
        arch.copy()
        arch.copy()  # the same gap is not reported twice
        # binlog.000002 archived up to its ROTATE is complete: purging it is no gap
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("FLUSH BINARY LOGS")
        arch.copy()
        second = server_binlog_files(src)["binlog.000002"]
        _flush_and_purge(src, "binlog.000003")
        insert_traffic(src, 5)
        arch.copy()
        third = server_binlog_files(src)["binlog.000003"]
    assert len(troubles) == 1, troubles
    alert = troubles[0]
    assert "gap" in alert and "binlog.000001" in alert and f"{len(partial)}" in alert, alert
    assert "backup" in alert or "snapshot" in alert, alert
    files = archived_files(archive)
    assert files["binlog.000001"] == partial  # neither rewritten nor cut
    assert files["binlog.000002"] == second and files["binlog.000003"] == third
    # A restore reading the archive refuses to run across the gap, naming where it is...
    with pytest.raises(BinlogError) as crossed:
        list(BinlogDirectory(archive).events("binlog.000001"))
    assert crossed.value.where == f"binlog.000001:{len(partial)}" and "lost binlog" in str(crossed.value)
    assert sum(1 for _ in BinlogDirectory(archive).events("binlog.000002")) > 10  # ...but may start after it
    # Without the archiver's marker (a copy made by hand), binlog.000002's GTID list still shows the gap.
    (archive / "binlog.000001.gap").unlink()
    with pytest.raises(BinlogError) as crossed:
        list(BinlogDirectory(archive).events("binlog.000001"))
    assert crossed.value.where == f"binlog.000001:{len(partial)}" and "GTID list" in str(crossed.value)
    # A replay that stops inside the archived part never crosses the gap: it may read that far.
    (archive / "binlog.000001.gap").write_text("the archiver's note\n")
    events = BinlogDirectory(archive).events("binlog.000001")
    assert next(events).file == "binlog.000001"
