"""kill -9 of `restore-bot restore` in each phase, then the same command again: it resumes and
ends exact (CHECKSUM TABLE equal to the source's just before the disaster).

From a physical backup into a DSN target the phases are: copy and prepare of the backup,
replay in a local sandbox, move of the verified tables into the target, verify there
(restore.replay.physical_flow). From a dump with --load-jobs 2: a parallel load, resumed per
table. Each kill moment is picked by watching what the run records (its processes, the
sandbox's checkpoint row, the target's record of moved or loaded tables), never by sleeping.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil
import pymysql
import pytest

from restore.mysql.sandbox import Sandbox
from restore.plan import physical_base
from tests.support.db import checksums, copy_binlogs, dump, restore_args
from tests.support.physical import take_backup

pytestmark = [pytest.mark.mysql,
              pytest.mark.skipif(shutil.which("mariadb-backup") is None, reason="mariadb-backup is not installed "
                                 "(./dev setup installs it)")]

DBS = ("shop", "wiki")
TRANSACTIONS = 800   # after the backup, each its own commit: with --batch 1, a replay long enough to be caught


@dataclass
class Incident:
    backup: Path       # as mariadb-backup --backup wrote it (not prepared: the restore prepares a copy)
    dump: Path         # a dump taken at the same moment, for the parallel load
    binlogs: Path
    before: dict


@pytest.fixture(autouse=True)
def _no_spare_copy():
    yield
    physical_base._drop_spare()


@pytest.fixture(scope="module")
def incident(tmp_path_factory) -> Incident:
    work = tmp_path_factory.mktemp("physical-kill")
    with Sandbox(binlog=True, binlog_format="ROW") as src, src.connect(autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE DATABASE wiki")
        for i in range(6):   # several tablespaces, so a kill can fall between two of them
            cur.execute(f"CREATE TABLE shop.t{i} (id INT PRIMARY KEY, qty INT NOT NULL, note VARCHAR(200))")
            cur.executemany(f"INSERT INTO shop.t{i} VALUES (%s, %s, %s)",
                            [(k, k, f"row {k} " * (k % 9)) for k in range(3000)])
        cur.execute("CREATE TABLE shop.legacy (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=MyISAM")   # moved by rows
        cur.executemany("INSERT INTO shop.legacy VALUES (%s, %s)", [(i, str(i)) for i in range(30)])
        cur.execute("CREATE VIEW shop.big AS SELECT id, qty FROM shop.t0 WHERE qty > 2900")
        cur.execute("CREATE TABLE wiki.page (id INT PRIMARY KEY, title VARCHAR(50), body MEDIUMTEXT)")
        cur.executemany("INSERT INTO wiki.page VALUES (%s, %s, %s)", [(i, f"p{i}", "x" * i) for i in range(200)])
        backup = take_backup(src, work / "backup")
        path = dump(src, work / "base.sql", list(DBS))
        for k in range(TRANSACTIONS):
            cur.execute(f"UPDATE shop.t{k % 6} SET qty = qty + 1 WHERE id = %s", (k * 7 % 3000,))
        cur.execute("INSERT INTO wiki.page VALUES (1000, 'late', 'written after the backup')")
        before = checksums(conn, DBS)
        cur.execute("DROP TABLE shop.t3")   # the disaster
        binlogs = copy_binlogs(src, work / "binlogs")
    return Incident(backup, path, binlogs, before)


def _cmd(inc: Incident, target, snapshot: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bot.cli",
            *restore_args(SimpleNamespace(dumps=[snapshot], binlog_dir=inc.binlogs), target, "--batch", "1", *extra)]


def _kill_when(cmd: list[str], seen: Callable[[int], bool], what: str) -> int:
    """Start `cmd`, SIGKILL it as soon as `seen(pid)` holds (fail when it ends first); its pid."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"not seen {what} in 120 s"
            if seen(proc.pid):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, \
            f"the restore ended ({proc.returncode}) before {what}: {proc.stderr.read().decode()[-2000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return proc.pid


def _rerun(cmd: list[str]) -> dict:
    out = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    return json.loads(out.stdout)["restore"]


def _query(connect: Callable[[], pymysql.connections.Connection], sql: str) -> list[tuple]:
    """Rows of `sql`, or [] while what it reads does not exist yet (or the server is not up)."""
    try:
        with connect() as conn, conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    except Exception:   # noqa: BLE001 - polled again
        return []


def _kill_once_counted(cmd: list[str], target, count_sql: str, what: str) -> int:
    """Kill `cmd` once the target's record (`count_sql`) counts a table; what it counts then."""
    def count() -> int:
        return (_query(target.connect, count_sql) or [(0,)])[0][0]
    _kill_when(cmd, lambda _pid: count() >= 1, what)
    assert (done := count()) >= 1
    return done


def _phases(doc: dict) -> list[str]:
    return [p["phase"] for p in doc["phases"]]


def _assert_exact(target, doc: dict, before: dict) -> None:
    assert doc["verification"]["ok"], doc["verification"]
    with target.connect() as conn:
        assert checksums(conn, DBS) == before
        with conn.cursor() as cur:   # the target keeps no record of the move once verified
            cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='_restore_bot' "
                        "AND TABLE_NAME IN ('moved', 'load_done')")
            assert cur.fetchone()[0] == 0


def test_killed_while_the_backup_is_prepared(incident, target):
    """Killed while `mariadb-backup --prepare` runs on the copy: the copy is left, the next start
    sweeps it, and the rerun copies and prepares again."""
    cmd = _cmd(incident, target, incident.backup)

    def preparing(pid: int) -> bool:
        try:
            return any("--prepare" in " ".join(c.cmdline()) for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            return False

    pid = _kill_when(cmd, preparing, "mariadb-backup --prepare ran")
    left = list(Path(tempfile.gettempdir()).glob(f"restore-bot-backup-{pid}-*"))
    assert left, "the killed run left no copy: it was killed too late"
    doc = _rerun(cmd)
    assert _phases(doc) == ["plan", "prepare", "sandbox", "replay", "move", "verify"]
    assert not [p for p in left if p.exists()], "the killed run's copy was not swept"
    _assert_exact(target, doc, incident.before)


def test_killed_during_the_replay_in_the_sandbox(incident, target):
    """Killed while the sandbox replays (its own checkpoint shows transactions done): nothing was
    moved into the target; the rerun resumes the target's record, builds the sandbox again and ends
    exact."""
    cmd = _cmd(incident, target, incident.backup)

    def replaying(pid: int) -> bool:
        for d in Path(tempfile.gettempdir()).glob(f"restore-bot-sandbox-{pid}-*"):
            sock = str(d / "sock")
            rows = _query(lambda: pymysql.connect(unix_socket=sock, user="root", connect_timeout=1),
                          "SELECT phase, transactions FROM _restore_bot.state")
            if rows and rows[0][0] == "replaying" and rows[0][1] >= 20:
                return True
        return False

    _kill_when(cmd, replaying, "the sandbox replayed 20 transactions")
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT phase FROM _restore_bot.state")
        assert cur.fetchall() == (("prepared",),)
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('shop', 'wiki')")
        assert cur.fetchall() == (), "tables reached the target before the sandbox verified"
    doc = _rerun(cmd)
    assert doc["resumed"] is True
    replay = next(p for p in doc["phases"] if p["phase"] == "replay")
    assert replay["transactions"] >= TRANSACTIONS and replay["sandbox_verified"] > 0
    _assert_exact(target, doc, incident.before)


def test_killed_during_the_move(incident, target):
    """Killed after some tables were moved and recorded: the rerun builds the sandbox again, keeps
    the recorded tables whose checksum is the new sandbox's, drops what the kill left half done and
    moves the rest."""
    cmd = _cmd(incident, target, incident.backup)
    kept = _kill_once_counted(cmd, target, "SELECT COUNT(*) FROM _restore_bot.moved", "a table was moved")
    doc = _rerun(cmd)
    assert doc["resumed"] is True
    move = next(p for p in doc["phases"] if p["phase"] == "move")
    assert move["kept_from_earlier_run"] == kept
    assert sum(how == "moved by an earlier run" for how in move["physical"]["tables"].values()) == kept
    _assert_exact(target, doc, incident.before)


def test_killed_during_a_parallel_load_of_a_dump(incident, target):
    """A dump loaded by two clients, killed once the target records a loaded table: the rerun
    loads the other tables only and ends exact."""
    cmd = _cmd(incident, target, incident.dump, "--load-jobs", "2")
    done = _kill_once_counted(cmd, target, "SELECT COUNT(*) FROM _restore_bot.load_done WHERE tbl <> ''",
                              "a table was loaded")
    doc = _rerun(cmd)
    assert doc["resumed"] is True
    load = next(p for p in doc["phases"] if p["phase"] == "load")
    assert load["tables_kept"] >= done and load["load_jobs"] == [2]
    _assert_exact(target, doc, incident.before)
