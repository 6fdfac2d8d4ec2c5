"""Physical base snapshots: `--snapshot DIR` of a mariadb-backup target directory, prepared or not,
restored into a sandbox started on a prepared copy of it, then replayed and verified.

One incident for the module: a source with a binlog and data, `mariadb-backup --backup` of it,
traffic, a DROP TABLE and a DROP DATABASE. Each restore must end exactly as the source was just
before the disaster (CHECKSUM TABLE), and the user's backup directory must not change.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from restore import api
from restore.errors import RestoreError, SnapshotError, VerifyError
from restore.hooks import NullHooks
from restore.mysql.procs import using_path
from restore.mysql.sandbox import Sandbox
from restore.plan import physical_base
from restore.plan.physical_base import sandbox_for
from restore.plan.physical_move import datadir_on_this_host, move_tables
from restore.prod.swap import ProdRestore
from restore.replay.runner import restore
from restore.target import checkpoint
from tests.support.db import checksums, copy_binlogs
from tests.support.physical import take_backup

pytestmark = [pytest.mark.mysql,
              pytest.mark.skipif(shutil.which("mariadb-backup") is None, reason="mariadb-backup is not installed "
                                 "(./dev setup installs it)")]

DBS = ("shop", "wiki")


@pytest.fixture(autouse=True)
def _no_spare_copy():
    """The copy a plan keeps for the restore that follows (physical_base._spare) is removed at exit;
    the suite checks its temp dir before that."""
    yield
    physical_base._drop_spare()


@dataclass
class Backup:
    raw: Path          # as mariadb-backup --backup wrote it
    prepared: Path     # a copy prepared by the user
    binlogs: Path
    before: dict


@pytest.fixture(scope="module")
def incident(tmp_path_factory) -> Backup:
    work = tmp_path_factory.mktemp("physical")
    with Sandbox(binlog=True, binlog_format="ROW") as src, src.connect(autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE DATABASE shop CHARACTER SET utf8mb4")
        cur.execute("CREATE DATABASE wiki CHARACTER SET utf8mb4")
        cur.execute("CREATE TABLE shop.customer (id INT PRIMARY KEY, name VARCHAR(40), note TEXT)")
        cur.execute("CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, customer INT NOT NULL, "
                    "total DECIMAL(10,2), FOREIGN KEY (customer) REFERENCES shop.customer (id))")
        cur.execute("CREATE TABLE shop.log (at INT, what VARCHAR(20))")   # no primary key
        cur.execute("CREATE TABLE wiki.page (id INT PRIMARY KEY, title VARCHAR(50), body MEDIUMTEXT)")
        cur.executemany("INSERT INTO shop.customer VALUES (%s, %s, %s)",
                        [(i, f"손님 {i}", "😀" * (i % 5)) for i in range(1, 301)])
        cur.executemany("INSERT INTO shop.orders (customer, total) VALUES (%s, %s)",
                        [(i % 300 + 1, i * 1.5) for i in range(1000)])
        cur.executemany("INSERT INTO shop.log VALUES (%s, 'seed')", [(i,) for i in range(50)])
        cur.executemany("INSERT INTO wiki.page VALUES (%s, %s, %s)", [(i, f"p{i}", "x" * i) for i in range(100)])
        cur.execute("CREATE TABLE shop.legacy (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=MyISAM")
        cur.executemany("INSERT INTO shop.legacy VALUES (%s, %s)", [(i, str(i)) for i in range(30)])
        # Generated, so a copy by rows must leave it out; PERSISTENT: CHECKSUM TABLE reads a VIRTUAL column's
        # value from whatever the server's row buffer last held (handler::calculate_checksum), not the row.
        cur.execute("CREATE TABLE shop.`order lines` (id INT PRIMARY KEY, qty INT, twice INT AS (qty * 2) PERSISTENT)")
        cur.executemany("INSERT INTO shop.`order lines` (id, qty) VALUES (%s, %s)", [(i, i) for i in range(40)])
        cur.execute("CREATE TABLE shop.place (id INT PRIMARY KEY, at POINT NOT NULL, seen TIMESTAMP(3) NULL, "
                    "flags BIT(5), score DOUBLE)")   # geometry goes by INSERT, the others by LOAD DATA
        cur.executemany("INSERT INTO shop.place VALUES (%s, POINT(%s, %s), FROM_UNIXTIME(%s), %s, %s)",
                        [(i, i / 3, -i, 1.7e9 + i / 1000, i % 32, 1 / (i + 1)) for i in range(60)])
        cur.execute("CREATE TABLE shop.seq (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=Aria")
        cur.execute("SET SESSION sql_mode=CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
        cur.execute("INSERT INTO shop.seq VALUES (0, 0), (5, 5)")   # a copy by rows must keep the 0
        cur.execute("CREATE VIEW shop.big AS SELECT * FROM shop.orders WHERE total > 100")
        cur.execute("CREATE VIEW shop.big_count AS SELECT COUNT(*) AS n FROM shop.big")
        cur.execute("CREATE PROCEDURE shop.touch() SELECT 1")
        # The source was once a restore target: its unfinished state must not stop a restore from its backup.
        checkpoint.create(conn, "an-old-plan", list(DBS), "{}")
        raw = work / "backup"
        take_backup(src, raw)
        # Traffic after the backup: the replay must start exactly where the backup ends.
        cur.executemany("INSERT INTO shop.orders (customer, total) VALUES (%s, %s)", [(7, i) for i in range(200)])
        cur.execute("UPDATE shop.customer SET note = 'vip' WHERE id % 7 = 0")
        cur.execute("DELETE FROM shop.log WHERE at < 10")
        cur.execute("INSERT INTO wiki.page VALUES (1000, 'late', 'written after the backup')")
        cur.execute("CREATE TABLE wiki.tag (id INT PRIMARY KEY, page INT)")
        cur.executemany("INSERT INTO wiki.tag VALUES (%s, %s)", [(i, i) for i in range(20)])
        before = checksums(conn, DBS)
        cur.execute("DROP TABLE shop.orders")          # the disaster
        cur.execute("DROP DATABASE wiki")
        cur.execute("CREATE TABLE shop.after_disaster (id INT)")
        binlogs = copy_binlogs(src, work / "binlogs")
    prepared = work / "prepared"
    shutil.copytree(raw, prepared)
    out = subprocess.run(["mariadb-backup", "--prepare", f"--target-dir={prepared}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return Backup(raw, prepared, binlogs, before)


def _hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def _restore(snapshot: str, binlogs: Path) -> tuple[api.Planned, dict, list[dict]]:
    planned = api.plan(api.PlanInput([snapshot], binlogs))
    with sandbox_for(planned.snapshots) as box:
        result = restore(planned.plan, planned.snapshots, planned.source, box.dsn)
        assert result.ok, result.verification.problems() if result.verification else result
        with box.connect() as conn:
            return planned, checksums(conn, sorted(planned.plan.databases)), result.phases


@pytest.mark.parametrize("which", ["raw", "prepared"])
def test_restore_from_backup_dir_is_exact(incident, which):
    d = getattr(incident, which)
    files_before = _hashes(d)
    planned, after, phases = _restore(str(d), incident.binlogs)
    assert after == incident.before
    # The plan starts where the backup ends and stops before the DROP TABLE.
    file, pos = (d / "xtrabackup_binlog_info").read_text().split()[:2]
    assert planned.plan.replay_from == (file, int(pos))
    assert planned.plan.stop is not None and "DROP TABLE" in planned.plan.stop.statement.upper()
    load = next(p for p in phases if p["phase"] == "load")
    assert "physical" in load
    assert _hashes(d) == files_before, "the user's backup directory was modified"


def test_database_narrows_the_backup(incident):
    planned, after, _ = _restore(f"wiki={incident.prepared}", incident.binlogs)
    assert set(planned.plan.databases) == {"wiki"}
    assert after == {k: v for k, v in incident.before.items() if k.startswith("wiki.")}


def test_database_option_narrows_the_backup(incident):
    planned = api.plan(api.PlanInput([str(incident.raw)], incident.binlogs, databases=["wiki"]))
    assert set(planned.plan.databases) == {"wiki"} and planned.snapshots[0].databases == ["wiki"]
    # From the command line, a name the backup does not hold is refused, naming the ones it holds.
    out = subprocess.run([sys.executable, "-m", "bot.cli", "plan", "--snapshot", str(incident.raw), "--binlogs",
                          str(incident.binlogs), "--database", "wiki", "--database", "nope", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, out.stdout[-2000:]
    error = json.loads(out.stdout)["error"]
    assert "no database nope" in error["message"] and "shop, wiki" in error["hint"], error
    with pytest.raises(SnapshotError, match="no --snapshot is one"):
        api.plan(api.PlanInput([str(incident.binlogs / "nothing.sql")], incident.binlogs, databases=["wiki"]))


def test_row_counts_and_coordinates_read_from_the_backup(incident):
    (snap,) = api.read_snapshots([str(incident.raw)])
    assert snap.databases == ["shop", "wiki"]
    assert snap.tables[("shop", "orders")].rows == 1000
    assert snap.tables[("shop", "customer")].has_primary_key and not snap.tables[("shop", "log")].has_primary_key
    assert [fk.parent for fk in snap.tables[("shop", "orders")].foreign_keys] == ["shop.customer"]
    assert snap.binlog_file and snap.binlog_pos and snap.gtid
    planned = api.plan(api.PlanInput([str(incident.raw)], incident.binlogs))
    # Named as this mariadb-backup names it (10.11: xtrabackup_binlog_info; 11.x: mariadb_backup_binlog_info).
    (source,) = {s.source for s in planned.plan.databases.values()}
    name = source.removesuffix(" in backup")
    assert name in ("mariadb_backup_binlog_info", "xtrabackup_binlog_info") and (incident.raw / name).is_file()


def test_restore_into_a_dsn_target_moves_tablespaces(incident, target):
    files_before = _hashes(incident.raw)
    planned = api.plan(api.PlanInput([str(incident.raw)], incident.binlogs))
    result = restore(planned.plan, planned.snapshots, planned.source, target.dsn)
    assert result.ok, result.verification.problems() if result.verification else result
    with target.connect() as conn:
        assert checksums(conn, DBS) == incident.before
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT n FROM shop.big_count), (SELECT COUNT(*) FROM shop.orders WHERE total > 100)")
            assert cur.fetchone() == (1032, 1032)   # 933 from the backup, 99 replayed
            cur.execute("SHOW PROCEDURE STATUS WHERE Db='shop'")
            assert [r[1] for r in cur.fetchall()] == ["touch"]
    # Built, replayed and verified in a sandbox first, then moved, then verified on the target.
    assert [p["phase"] for p in result.phases] == ["prepare", "sandbox", "replay", "move", "verify"]
    assert next(p for p in result.phases if p["phase"] == "verify")["equal_to_sandbox"] == len(incident.before)
    moved = next(p for p in result.phases if p["phase"] == "move")["physical"]
    assert moved["path"] == "transportable tablespaces"
    assert moved["tables"]["shop.customer"] == "tablespace imported"
    assert moved["tables"]["shop.legacy"].startswith("rows copied (engine MyISAM")
    assert moved["tables"]["shop.order lines"].startswith("rows copied (its file name is encoded")
    assert _hashes(incident.raw) == files_before


def test_restore_into_a_dsn_target_by_rows_when_files_cannot_be_moved(incident, target):
    """The logical fallback (a target whose datadir is not on this host), chosen here explicitly."""
    planned = api.plan(api.PlanInput([str(incident.prepared)], incident.binlogs))
    said = _Said()
    result = restore(planned.plan, planned.snapshots, planned.source, target.dsn, physical_copy="rows", hooks=said)
    assert {"shop.place: rows copied (INSERT)", "shop.orders: rows copied (LOAD DATA)"} <= set(said.lines)
    assert result.ok, result.verification.problems() if result.verification else result
    _bytes_reported(said, "move", "tables moved")
    with target.connect() as conn:
        assert checksums(conn, DBS) == incident.before
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT n FROM shop.big_count), (SELECT COUNT(*) FROM shop.orders WHERE total > 100)")
            assert cur.fetchone() == (1032, 1032)
    moved = next(p for p in result.phases if p["phase"] == "move")["physical"]
    assert moved["path"] == "parallel logical copy" and "not on this host" in moved["why"]
    assert set(moved["tables"].values()) == {"rows copied (the target's datadir is not on this host)"}


def test_a_dsn_target_that_already_holds_the_databases_is_refused(incident, target):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE wiki")
    planned = api.plan(api.PlanInput([f"wiki={incident.prepared}"], incident.binlogs))
    with pytest.raises(RestoreError, match="already holds wiki"):
        restore(planned.plan, planned.snapshots, planned.source, target.dsn)


@pytest.mark.parametrize("damage, names", [
    ("xtrabackup_binlog_info", "xtrabackup_binlog_info"),
    ("ibdata1", "ibdata1"),
    ("ib_logfile0", "ib_logfile0"),
    ("xtrabackup_checkpoints", "checkpoints"),
])
def test_a_damaged_backup_is_refused_naming_the_file(incident, tmp_path, damage, names):
    d = tmp_path / "b"
    shutil.copytree(incident.raw, d)
    (d / damage).unlink()
    if damage == "xtrabackup_checkpoints":
        (d / "xtrabackup_binlog_info").write_text("binlog.000001\t4\t0-1-1\n")  # still looks like a backup
    with pytest.raises(SnapshotError) as e:
        api.read_snapshots([str(d)])
    assert names in str(e.value) and e.value.hint


def test_a_backup_missing_a_tablespace_is_refused_naming_the_table(incident, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(incident.prepared, d)
    (d / "shop" / "customer.ibd").unlink()
    with pytest.raises(SnapshotError) as e:
        api.read_snapshots([str(d)])
    assert "shop.customer" in str(e.value) and "shop/customer" in e.value.hint


def test_a_backup_whose_redo_log_is_corrupt_is_refused_at_prepare(incident, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(incident.raw, d)
    log = d / "ib_logfile0"
    data = bytearray(log.read_bytes())
    data[0:len(data)] = b"\x00" * len(data)
    log.write_bytes(bytes(data))
    with pytest.raises(SnapshotError) as e:
        api.read_snapshots([str(d)])
    assert str(d) in str(e.value) and "prepare" in str(e.value) and e.value.hint
    assert log.read_bytes() == bytes(data), "the user's backup directory was modified"


class _Said(NullHooks):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.progress_of: dict[str, list[tuple[int, int | None, str]]] = {}

    def message(self, text: str) -> None:
        self.lines.append(text)

    def progress(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        self.progress_of.setdefault(phase, []).append((done, total, detail))


def _bytes_reported(said: _Said, phase: str, label: str) -> None:
    """The move's progress: bytes from 0 up to all of the tables', growing, each line saying it."""
    seen = said.progress_of.get(phase, [])
    assert len(seen) >= 2 and seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 0, seen
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen), seen
    assert all(text.startswith(f"{label}: ") for _, _, text in seen) and "(100%)" in seen[-1][2], seen


class _StopAt(NullHooks):
    def __init__(self, text: str) -> None:
        self.text = text

    def message(self, text: str) -> None:
        if text == self.text:
            raise KeyboardInterrupt


def _tables_on(conn, db: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (db,))
        return cur.fetchone()[0]


def test_a_table_left_between_discard_and_import_is_dropped_on_rerun(incident, target):
    """A kill between DISCARD and IMPORT TABLESPACE leaves a table nothing can read, not even the
    set-aside of an unfinished run: the rerun drops it and moves the backup again."""
    planned = api.plan(api.PlanInput([f"wiki={incident.prepared}"], incident.binlogs))
    with pytest.raises(KeyboardInterrupt):   # stands in for the kill: the load stops after its first steps
        restore(planned.plan, planned.snapshots, planned.source, target.dsn,
                hooks=_StopAt("wiki: 2 tablespace(s) imported"))
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE wiki.page DISCARD TABLESPACE")   # as the kill would have left it
    result = restore(planned.plan, planned.snapshots, planned.source, target.dsn)
    assert result.resumed and result.ok
    move = next(p for p in result.phases if p["phase"] == "move")
    assert move["dropped"] == ["wiki.page"] and move["kept_from_earlier_run"] == 1   # wiki.tag: recorded, kept
    with target.connect() as conn:
        assert checksums(conn, ["wiki"]) == {k: v for k, v in incident.before.items() if k.startswith("wiki.")}


def test_an_interrupted_copy_by_rows_resumes_per_table(incident, target):
    """The logical fallback stopped after its first table: the rerun keeps the tables recorded as
    copied (their checksum is the new sandbox's), copies the others again, and ends exact."""
    planned = api.plan(api.PlanInput([f"wiki={incident.prepared}"], incident.binlogs))
    with pytest.raises(KeyboardInterrupt):
        restore(planned.plan, planned.snapshots, planned.source, target.dsn, physical_copy="rows",
                hooks=_StopAt("wiki.page: rows copied (LOAD DATA)"))
    result = restore(planned.plan, planned.snapshots, planned.source, target.dsn, physical_copy="rows")
    assert result.resumed and result.ok
    move = next(p for p in result.phases if p["phase"] == "move")
    assert move["physical"]["tables"]["wiki.page"] == "moved by an earlier run", move
    with target.connect() as conn:
        assert checksums(conn, ["wiki"]) == {k: v for k, v in incident.before.items() if k.startswith("wiki.")}


def test_restart_after_an_interrupted_move_starts_over(incident, target):
    """--restart: what the interrupted move left is set aside and its records forgotten; every
    table is moved again (none is kept from the earlier run)."""
    planned = api.plan(api.PlanInput([f"wiki={incident.prepared}"], incident.binlogs))
    with pytest.raises(KeyboardInterrupt):
        restore(planned.plan, planned.snapshots, planned.source, target.dsn,
                hooks=_StopAt("wiki: 2 tablespace(s) imported"))
    result = restore(planned.plan, planned.snapshots, planned.source, target.dsn, restart=True)
    assert result.ok and not result.resumed and list(result.unfinished_aside) == ["wiki"]
    move = next(p for p in result.phases if p["phase"] == "move")
    assert move["kept_from_earlier_run"] == 0 and move["dropped"] == []
    with target.connect() as conn:
        assert checksums(conn, ["wiki"]) == {k: v for k, v in incident.before.items() if k.startswith("wiki.")}


class _StopBefore(NullHooks):
    def __init__(self, phase: str) -> None:
        self.phase = phase

    def phase_started(self, phase: str, total: int | None) -> None:
        if phase == self.phase:
            raise KeyboardInterrupt


def test_stopped_after_the_move_resumes_at_the_verify_without_a_sandbox(incident, target):
    """The target records the move as done (phase replayed, each table's checksum): a rerun only
    verifies, comparing the target's tables with the sandbox's recorded checksums."""
    planned = api.plan(api.PlanInput([f"wiki={incident.prepared}"], incident.binlogs))
    with pytest.raises(KeyboardInterrupt):
        restore(planned.plan, planned.snapshots, planned.source, target.dsn, hooks=_StopBefore("verify"))
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT phase FROM _restore_bot.state")
        assert cur.fetchall() == (("replayed",),)
        cur.execute("UPDATE wiki.page SET title = 'changed since the move' WHERE id = 1")
    with pytest.raises(VerifyError, match="wiki.page differ from the verified sandbox"):
        restore(planned.plan, planned.snapshots, planned.source, target.dsn)
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("UPDATE wiki.page SET title = 'p1' WHERE id = 1")
    result = restore(planned.plan, planned.snapshots, planned.source, target.dsn)
    assert result.resumed and result.ok
    assert [p["phase"] for p in result.phases] == ["prepare", "verify"]
    assert result.phases[-1]["equal_to_sandbox"] == 2
    with target.connect() as conn:
        assert checksums(conn, ["wiki"]) == {k: v for k, v in incident.before.items() if k.startswith("wiki.")}


def test_tables_move_into_another_schema_name_as_files(target):
    """What a prod restore's shadow schema needs: a rebuilt sandbox's tables under another name."""
    with Sandbox() as box, box.connect(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.item (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2))")
        cur.execute("CREATE TABLE shop.legacy (id INT) ENGINE=Aria")
        cur.executemany("INSERT INTO shop.item VALUES (%s, %s, %s)", [(i, f"이름{i}", i / 4) for i in range(500)])
        cur.executemany("INSERT INTO shop.legacy VALUES (%s)", [(i,) for i in range(9)])
        want = {k.replace("shop.", "shop__shadow.", 1): v for k, v in checksums(conn, ["shop"]).items()}
        with target.connect() as tconn:
            moved = move_tables(box, tconn, target.dsn, ["shop"], datadir=datadir_on_this_host(tconn),
                                names={"shop": "shop__shadow"}, objects=False)
            assert checksums(tconn, ["shop__shadow"]) == want
    assert moved["tables"] == {"shop.item": "tablespace imported", "shop.legacy": "rows copied (engine Aria)"}


def test_kill_minus_nine_of_a_sandbox_restore_then_rerun(incident):
    """Killed while a server runs on its copy of the backup: the copy and the servers are left, the
    next start of restore-bot removes them (restore/mysql/leftovers.py), and the rerun is exact."""
    tmp = Path(tempfile.gettempdir())
    cmd = [sys.executable, "-m", "bot.cli", "restore", "--snapshot", str(incident.raw), "--binlogs",
           str(incident.binlogs), "--target", "sandbox", "--yes", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            copies = [p for p in tmp.glob(f"restore-bot-backup-{proc.pid}-*") if p.is_dir()]
            if any(using_path(str(p / "data")) for p in copies):
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    left = [p for p in tmp.glob(f"restore-bot-*-{proc.pid}-*") if p.is_dir()]
    assert left, "the killed run left nothing to clean up: it was killed too late"
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout)["restore"]["verification"]["ok"]
    assert not [p for p in left if p.exists()]


def test_stage_then_prod_from_a_backup_dir_keeps_the_app_writes_aside(incident, target):
    """The whole incident from a physical base: stage verifies in a sandbox, prod swaps the result
    into production (what production held after the disaster is kept in <db>__before_<job>)."""
    with target.connect(autocommit=True) as conn, conn.cursor() as cur:   # production after the disaster
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.after_disaster (id INT)")
        cur.execute("INSERT INTO shop.after_disaster VALUES (1), (2)")
    planned = api.plan(api.PlanInput([f"shop={incident.raw}"], incident.binlogs))
    staged = api.stage(planned, api.StageTarget())
    outcome = api.prod(planned, staged.evidence, api.ProdTarget(target.dsn), job_tag="p1")
    assert outcome.swapped and outcome.kept_aside == {"shop__before_p1": {"after_disaster": 2}}
    assert outcome.shadow_copy["path"] == "transportable tablespaces", outcome.shadow_copy
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == {k: v for k, v in incident.before.items() if k.startswith("shop.")}


def test_prod_fills_its_shadow_by_rows_when_the_datadir_is_not_here(incident, target):
    """Prod's logical fallback for the shadow copy (chosen here explicitly), from the prepared backup."""
    planned = api.plan(api.PlanInput([f"shop={incident.prepared}"], incident.binlogs))
    staged = api.stage(planned, api.StageTarget())
    said = _Said()
    outcome = ProdRestore(planned.plan, planned.snapshots, planned.source, target.dsn, job_tag="r1",
                          expected=dict(staged.evidence.checksums), hooks=said, shadow_copy="rows").run()
    assert outcome.shadow_copy["path"] == "parallel logical copy" and "not on this host" in outcome.shadow_copy["why"]
    assert "shop.orders: rows copied (LOAD DATA)" in said.lines
    _bytes_reported(said, "shadow", "shadow copy")
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == {k: v for k, v in incident.before.items() if k.startswith("shop.")}
