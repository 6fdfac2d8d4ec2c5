"""Kept physical backups: `take_physical_backup` (mariadb-backup --backup, the credentials on a
pipe), listed with their coordinates, a killed one never listed as good, and the drill restoring
the newest physical backup plus the binlog archive exactly (its tables against the source's).
The same for a compressed one (`compress = true`: one mbstream.zst file), which retention counts
as the newest base, and a truncated copy of which is refused naming the file.

Also the verify checksum of a table with generated columns: the same rows give the same value
whatever the server's history (CHECKSUM TABLE does not: it reads those columns from a stale
row buffer, MDEV-22943).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from restore.errors import SnapshotError
from restore.hooks import NullHooks
from restore.live.archiver import Archiver
from restore.live.backups import half_written, list_backups, take_physical_backup
from restore.live.drill import BackupDrill, newest_snapshot
from restore.mysql.sandbox import Sandbox
from restore.plan.snapshot import read_snapshots
from restore.plan import physical_base
from restore.replay.verify import table_checksums

pytestmark = [pytest.mark.mysql,
              pytest.mark.skipif(shutil.which("mariadb-backup") is None, reason="mariadb-backup is not installed "
                                 "(./dev setup installs it)")]
PASSWORD = "s3cret 'with' \"quotes\""


@pytest.fixture(autouse=True)
def _no_spare_copy():
    yield
    physical_base._drop_spare()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(sandbox, its DSN as a backup user with a password, backup dir, archive dir)."""
    base = tmp_path_factory.mktemp("keep-physical")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.members (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL)")
            cur.execute("CREATE TABLE club.lines (id INT PRIMARY KEY, qty INT, twice INT AS (qty * 2) VIRTUAL, "
                        "kept INT AS (qty + 1) PERSISTENT)")
            cur.executemany("INSERT INTO club.members VALUES (%s, %s)", [(i, f"멤버 {i}") for i in range(200)])
            cur.executemany("INSERT INTO club.lines (id, qty) VALUES (%s, %s)", [(i, i) for i in range(50)])
            for host in ("localhost", "127.0.0.1"):
                cur.execute(f"CREATE USER 'bk'@'{host}' IDENTIFIED BY %s", (PASSWORD,))
                cur.execute(f"GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SELECT ON *.* TO 'bk'@'{host}'")
        dsn = replace(src.dsn, user="bk", password=PASSWORD)
        take_physical_backup(dsn, base / "backups")
        take_physical_backup(dsn, base / "compressed", compress=True)
        with src.connect(autocommit=True) as conn, conn.cursor() as cur:   # traffic after the backup
            cur.executemany("INSERT INTO club.members VALUES (%s, %s)", [(i, "late") for i in range(200, 260)])
            cur.execute("UPDATE club.lines SET qty = qty + 100 WHERE id % 3 = 0")
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("DELETE FROM club.members WHERE id < 20")
        Archiver(src.dsn, base / "archive").copy()
        yield src, dsn, base / "backups", base / "archive"


@pytest.fixture(scope="module")
def compressed(source):
    return source[2].parent / "compressed"


def test_a_physical_backup_is_listed_with_its_coordinates(source):
    _src, _dsn, backups, _archive = source
    (listed,) = [b for b in list_backups(backups) if b.readable]
    assert listed.kind == "physical" and listed.databases == ("club",) and listed.path.name.endswith("-physical")
    info = next(p for p in (listed.path / "mariadb_backup_binlog_info", listed.path / "xtrabackup_binlog_info")
                if p.is_file()).read_text().split()
    assert (listed.binlog_file, listed.binlog_pos) == (info[0], int(info[1]))
    assert "physical" in listed.describe() and f"{info[0]}:{info[1]}" in listed.describe()


def _drill_is_exact(directory, ending: str, source) -> None:
    """The drill restores the newest backup of `directory` (its name ends with `ending`) exactly."""
    src, _dsn, _backups, archive = source
    snapshot = newest_snapshot(directory)
    assert snapshot is not None and snapshot.name.endswith(ending)
    report = BackupDrill(snapshot, archive, src.dsn, hooks=NullHooks()).run()["drill"]
    assert report["verdict"] == "OK"
    checks = report["checksums"]
    assert not checks.get("differ") and {"club.members", "club.lines"} <= set(checks["equal"]), checks


def test_the_drill_restores_the_newest_physical_backup_exactly(source):
    _drill_is_exact(source[2], "-physical", source)


@pytest.mark.parametrize("compress", [False, True])
def test_a_killed_physical_backup_is_never_listed_as_good(source, tmp_path, compress):
    src, dsn, _backups, _archive = source
    out = tmp_path / "backups"
    code = (f"from restore.live.backups import take_physical_backup; from restore.mysql.dsn import Dsn; "
            f"take_physical_backup(Dsn(user='root', password=None, host='127.0.0.1', port={src.port}, "
            f"unix_socket={str(src.socket)!r}), {str(out)!r}, compress={compress})")
    with src.connect(autocommit=True) as lock, lock.cursor() as cur:
        cur.execute("BACKUP STAGE START")   # one session at a time: the backup's own waits on ours
        child = subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd(), start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not half_written(out):
                assert child.poll() is None and time.monotonic() < deadline, "the backup did not start"
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        cur.execute("BACKUP STAGE END")
    listed = list_backups(out)
    assert [(b.kind, b.readable) for b in listed] == [("physical", False)]
    ending = "-physical.mbstream.zst.partial" if compress else "-physical.partial"
    assert "half-written" in listed[0].problem and listed[0].path.name.endswith(ending)
    assert newest_snapshot(out) is None
    time.sleep(1)   # another second: another name
    good = take_physical_backup(dsn, out, compress=compress)
    assert newest_snapshot(out) == good.path and [b.readable for b in list_backups(out)] == [True, False]


def test_a_compressed_physical_backup_is_one_file_listed_with_the_coordinates(source, compressed):
    _src, _dsn, backups, _archive = source
    (plain,) = [b for b in list_backups(backups) if b.readable]
    (listed,) = list_backups(compressed)
    assert listed.readable and listed.kind == "physical" and listed.path.name.endswith("-physical.mbstream.zst")
    assert listed.path.is_file() and not list(compressed.glob("*.partial"))
    # No write between the two backups: the same coordinates, the same databases.
    assert (listed.binlog_file, listed.binlog_pos, listed.databases) == (plain.binlog_file, plain.binlog_pos,
                                                                          ("club",))
    assert listed.size == listed.path.stat().st_size < plain.size
    assert "physical" in listed.describe() and f"{plain.binlog_file}:{plain.binlog_pos}" in listed.describe()


def test_retention_counts_a_compressed_backup_as_the_newest_base(source, compressed, tmp_path):
    src, _dsn, _backups, archive = source
    copy = tmp_path / "archive"
    shutil.copytree(archive, copy)
    files = sorted(p.name for p in copy.glob("binlog.[0-9]*"))
    assert len(files) >= 2
    backup = list_backups(compressed)[0]
    kept_from = files.index(backup.binlog_file)
    removed = Archiver(src.dsn, copy, keep_days=0, backup_dir=compressed).apply_retention()
    assert removed == files[:kept_from]
    assert sorted(p.name for p in copy.glob("binlog.[0-9]*")) == files[kept_from:]


def test_the_drill_restores_a_compressed_physical_backup_exactly(source, compressed):
    _drill_is_exact(compressed, "-physical.mbstream.zst", source)
    assert not list(Path(tempfile.gettempdir()).glob(f"restore-bot-backup-{os.getpid()}-*[!k]")), \
        "the unpacked copy outlived the drill"


def test_a_truncated_compressed_backup_is_refused_naming_the_file(compressed, tmp_path):
    whole = list_backups(compressed)[0].path
    cut = tmp_path / whole.name
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    (listed,) = list_backups(tmp_path)
    assert not listed.readable and "truncated" in listed.problem and cut.name in listed.problem
    with pytest.raises(SnapshotError, match="truncated") as refused:
        read_snapshots([str(cut)])
    assert str(cut) in refused.value.message and refused.value.where == str(cut)


def test_generated_columns_checksum_the_same_whatever_the_server_did_before(source):
    src, _dsn, _backups, _archive = source
    with src.connect(autocommit=True) as conn, conn.cursor() as cur:
        first = table_checksums(conn, ["club"])["club.lines"]
        cur.execute("SELECT * FROM club.members")
        cur.fetchall()
        cur.execute("FLUSH TABLES")
        assert table_checksums(conn, ["club"])["club.lines"] == first
        cur.execute("CREATE TABLE club.copy LIKE club.lines")
        cur.execute("INSERT INTO club.copy (id, qty) SELECT id, qty FROM club.lines")
        assert table_checksums(conn, ["club"])["club.copy"] == first
        cur.execute("UPDATE club.copy SET qty = 7 WHERE id = 1")
        assert table_checksums(conn, ["club"])["club.copy"] != first
        cur.execute("DROP TABLE club.copy")
