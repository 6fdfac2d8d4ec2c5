"""Replay corner cases where a restore could go wrong quietly: statements that end in another
schema, a DDL that fails, temporary tables in a failing batch, non-transactional tables."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.db import checksums, plan_args, target_url
from tests.support.incident_factory import In, IncidentSpec, Mark, each


def _restore(cli, snap: Path, binlogs, target, *extra: str):
    return cli("restore", "--snapshot", snap, "--binlogs", binlogs, "--stop-before", "end",
               "--target", target_url(target), "--yes", *extra)


def _with_start(snap: Path, pos: int, out: Path, drop: str = "") -> Path:
    """The dump with its recorded position moved earlier (data newer than its coordinates),
    and without the rows of table `drop`."""
    body = re.sub(r"MASTER_LOG_POS=\d+", f"MASTER_LOG_POS={pos}", snap.read_text())
    if drop:
        body, n = re.subn(rf"INSERT INTO `{drop}` VALUES\s*\([^;]*\);", "", body)
        assert n == 1, f"no rows of {drop} in {snap}"
    out.write_text(body)
    return out


@pytest.mark.parametrize("change", ["insert", "update"])
def test_statement_whose_last_row_event_is_in_another_schema(change, source_factory, target, tmp_path, cli):
    """A trigger on a restored table writes an audit row into a schema we do not restore: the
    statement's last row event (the one that ends it) is left out, and the server must still
    learn that the statement ended, or it ignores the row events after it."""
    def traffic(cur) -> None:
        for i in range(1, 30):
            cur.execute("INSERT INTO a.t VALUES (%s, %s)", (i, i))
            if change == "insert":
                cur.execute("INSERT INTO a.u VALUES (%s, %s)", (100 + i, i))
            else:
                cur.execute("UPDATE a.u SET v = v * 3 WHERE id = %s", (i,))
            cur.execute("UPDATE a.t SET v = v + 1 WHERE id = %s", (i,))

    inc = IncidentSpec(
        databases=("a",),
        schema=["CREATE DATABASE a", "CREATE DATABASE audit",
                "CREATE TABLE a.t (id INT PRIMARY KEY, v INT)",
                "CREATE TABLE a.u (id INT PRIMARY KEY, v INT)",
                "CREATE TABLE audit.log (id INT AUTO_INCREMENT PRIMARY KEY, tid INT)",
                "INSERT INTO a.u SELECT seq, seq FROM a.seq_1_to_29",
                "CREATE TRIGGER a.t_ai AFTER INSERT ON a.t FOR EACH ROW INSERT INTO audit.log (tid) VALUES (NEW.id)"],
        traffic=[traffic],
    ).build(source_factory("ROW"), tmp_path, copy=False)
    res = _restore(cli, inc.snapshot, inc.binlog_dir, target)
    assert res.code == 0, res.doc
    with target.connect() as conn:
        assert checksums(conn, ["a"]) == inc.before


def test_ddl_that_fails_in_the_first_pass_is_reported_not_skipped(source_factory, target, tmp_path, cli):
    """The dump already holds a (different) table the binlog creates: the CREATE must fail
    loudly, in the batch pass and in the precise retry, and again on a rerun."""
    inc = IncidentSpec(
        databases=("shop",),
        schema=["CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY)"],
        traffic=["CREATE TABLE shop.t2 (id INT PRIMARY KEY, v INT)",
                 each("INSERT INTO shop.t2 VALUES (%s, %s)", [(i, i) for i in range(5)])],
    ).build(source_factory("ROW"), tmp_path, copy=False)
    bad = tmp_path / "shop-bad.sql"
    bad.write_text(inc.snapshot.read_text().replace(
        "-- Dump completed", "USE `shop`;\nCREATE TABLE t2 (id INT PRIMARY KEY, v INT, extra INT DEFAULT 7);\n-- Dump completed"))
    for attempt in range(2):
        res = _restore(cli, bad, inc.binlog_dir, target)
        assert res.code != 0, f"attempt {attempt}: {res.doc}"
        message = res.doc["error"]["message"]
        assert "1050" in message or "already exists" in message, message
        assert "shop.t2" in message or "t2" in message, message


def test_temporary_table_in_a_failing_batch_does_not_hide_the_conflict(source_factory, target, tmp_path, cli):
    inc = IncidentSpec(
        databases=("shop",),
        schema=["CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(30))",
                "INSERT INTO shop.items VALUES (1, 'first')", Mark("early"),
                In("shop", "CREATE TEMPORARY TABLE tmp (id INT)"), In("shop", "INSERT INTO tmp VALUES (2)"),
                In("shop", "INSERT INTO items SELECT id, 'second' FROM tmp"), In("shop", "DROP TEMPORARY TABLE tmp")],
    ).build(source_factory("MIXED"), tmp_path, copy=False)
    bad = _with_start(inc.snapshot, inc.marks["early"][1], tmp_path / "shop-off.sql")
    res = _restore(cli, bad, inc.binlog_dir, target)
    assert res.code != 0
    message = res.doc["error"]["message"]
    assert "shop.items" in message and "duplicate key" in message, message


def test_non_transactional_table_conflict_names_the_real_table(source_factory, target, tmp_path, cli):
    """Aria without transactions ignores ROLLBACK: a batch retry would re-insert its rows and
    blame them. Such restores commit every transaction alone and never retry a batch."""
    inc = IncidentSpec(
        databases=("a",),
        schema=["CREATE DATABASE a", "CREATE TABLE a.m (id INT PRIMARY KEY) ENGINE=Aria TRANSACTIONAL=0",
                "CREATE TABLE a.t (id INT PRIMARY KEY) ENGINE=InnoDB", Mark("early"),
                "INSERT INTO a.m VALUES (1)", "INSERT INTO a.t VALUES (2)"],
    ).build(source_factory("ROW"), tmp_path, copy=False)
    bad = _with_start(inc.snapshot, inc.marks["early"][1], tmp_path / "a-off.sql", drop="m")
    res = _restore(cli, bad, inc.binlog_dir, target)
    assert res.code != 0
    message = res.doc["error"]["message"]
    assert "a.t" in message and "a.m" not in message, message
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM a.m")
        assert cur.fetchone()[0] == 1   # applied once, not twice
    assert "non-transactional tables: a.m (Aria)" in res.err


def test_lost_target_connection_is_a_named_error(source_factory, target, tmp_path, cli):
    """The target goes away mid-replay: one clear error with the binlog position, no traceback."""
    inc = IncidentSpec(
        databases=("club",),
        schema=["CREATE DATABASE club", "CREATE TABLE club.t (id INT PRIMARY KEY, v VARCHAR(20))"],
        traffic=[each("INSERT INTO club.t VALUES (%s, 'x')", [(i,) for i in range(3000)])],
    ).build(source_factory("ROW"), tmp_path, copy=False)
    # A trigger on the target kills the replay session at its first row: the connection drops.
    res = None
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL max_statement_time = 0")
    from restore.replay import batch

    class Killer(batch.Batch):
        sent = 0

        def _send(self, tolerate_ddl: bool = False) -> None:
            Killer.sent += 1
            if Killer.sent == 3:
                with target.connect() as admin, admin.cursor() as cur:
                    cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB IS NULL OR DB <> 'information_schema'")
                    for (pid,) in cur.fetchall():
                        if pid != admin.thread_id():
                            cur.execute(f"KILL {pid}")
            super()._send(tolerate_ddl)

    original = batch.Batch
    import restore.replay.applier as applier_module
    applier_module.Batch = Killer
    try:
        res = _restore(cli, inc.snapshot, inc.binlog_dir, target, "--batch", "100")
    finally:
        applier_module.Batch = original
    assert res.code != 0
    message = res.doc["error"]["message"]
    assert "lost the connection" in message or "server has gone away" in message.lower(), message
    assert "binlog." in message, message
    assert "Traceback" not in res.err


@pytest.mark.parametrize("fmt", ["STATEMENT", "MIXED"])
def test_transaction_the_source_rolled_back_is_rolled_back(fmt, source_factory, target, tmp_path, cli):
    """A transaction that also changed a non-transactional table is logged, ending in ROLLBACK:
    its InnoDB changes must be undone on the target too, its Aria changes kept, as on the source.
    The Aria table is created after the dump, so the replay starts batched and must switch."""
    def rolled_back(cur) -> None:
        cur.connection.begin()
        cur.execute("INSERT INTO a.t VALUES (100, 100)")
        cur.execute("INSERT INTO a.m VALUES (100)")
        cur.connection.rollback()

    inc = IncidentSpec(
        databases=("a",),
        schema=["CREATE DATABASE a", "CREATE TABLE a.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"],
        traffic=["CREATE TABLE a.m (id INT PRIMARY KEY) ENGINE=Aria TRANSACTIONAL=0",
                 each("INSERT INTO a.t VALUES (%s, %s)", [(i, i) for i in range(1, 50)]),
                 rolled_back,
                 each("INSERT INTO a.t VALUES (%s, %s)", [(i, i) for i in range(50, 60)])],
    ).build(source_factory(fmt), tmp_path, copy=False)
    res = _restore(cli, inc.snapshot, inc.binlog_dir, target)
    assert res.code == 0, res.doc
    with target.connect() as conn:
        assert checksums(conn, ["a"]) == inc.before
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT COUNT(*) FROM a.t WHERE id = 100), (SELECT COUNT(*) FROM a.m)")
            assert cur.fetchone() == (0, 1)


def test_file_pos_of_any_event_names_its_transaction(source_factory, tmp_path, cli):
    """`mariadb-binlog` prints "# at N" for table maps, annotations and XIDs too: --stop-before and
    --skip take any of them, and a position inside an event is refused."""
    from restore.binlog import events as be
    from restore.binlog.files import BinlogDirectory

    inc = IncidentSpec(
        databases=("a",),
        schema=["CREATE DATABASE a", "CREATE TABLE a.t (id INT PRIMARY KEY)"],
        traffic=[each("INSERT INTO a.t VALUES (%s)", [(i,) for i in range(5)])],
    ).build(source_factory("ROW"), tmp_path, copy=False)
    events = list(BinlogDirectory(inc.binlog_dir).events())
    gtids = [e for e in events if e.type == be.MARIADB_GTID]
    third = gtids[-3]          # the transaction inserting id 2
    inside = [e for e in events if third.pos < e.pos < gtids[-2].pos]
    table_map = next(e for e in inside if e.type == be.TABLE_MAP)
    xid = next(e for e in inside if e.type == be.XID)
    common = plan_args(inc)

    res = cli(*common, "--stop-before", f"{table_map.file}:{table_map.pos}")
    assert res.code == 0, res.doc
    assert (res.plan["stop"]["tx_file"], res.plan["stop"]["tx_pos"]) == (third.file, third.pos)
    assert res.plan["tables"]["a.t"]["inserted"] == 2

    res = cli(*common, "--skip", f"{xid.file}:{xid.pos}", "--stop-before", "end")
    assert res.code == 0, res.doc
    assert [(s["tx_file"], s["tx_pos"]) for s in res.plan["skips"]] == [(third.file, third.pos)]
    assert res.plan["tables"]["a.t"]["inserted"] == 4

    res = cli(*common, "--stop-before", f"{table_map.file}:{table_map.pos + 1}")
    assert res.code != 0
    assert "is not the start of an event" in res.doc["error"]["message"], res.doc
