"""What a watcher alert says: who (thread), what (database, table, rows), when, which transaction;
a key that stays unique when positions repeat; and a warning when the source hides row counts."""
from __future__ import annotations

import time

import pytest

from restore.live.watcher import Alert
from restore.mysql.sandbox import Sandbox
from tests.support.watching import MemoryPositions, Watching, wait_until

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


def test_row_logged_mass_delete_alert_names_table_rows_thread_gtid_and_time():
    """MIXED: the transaction's INSERT is a statement (with the thread id), its DELETE ... LIMIT is
    unsafe and so logged as rows, which carry no thread id of their own."""
    with Sandbox(binlog=True, binlog_format="MIXED") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.members (id INT PRIMARY KEY, name VARCHAR(20))")
            cur.execute("CREATE TABLE club.log (id INT PRIMARY KEY, msg VARCHAR(20))")
            cur.execute("INSERT INTO club.members SELECT seq, CONCAT('m', seq) FROM club.seq_1_to_50")
        with Watching(src.dsn, MemoryPositions()) as w, src.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            thread_id = cur.fetchone()[0]
            before = time.time()
            cur.execute("BEGIN")
            cur.execute("INSERT INTO club.log VALUES (1, 'bye')")
            cur.execute("DELETE FROM club.members WHERE id > 0 LIMIT 1000")
            cur.execute("COMMIT")
            after = time.time()
            cur.execute("SELECT @@gtid_binlog_pos")
            gtid = cur.fetchone()[0]
            wait_until(lambda: w.alerts, "the mass DELETE alert", w.troubles)
            time.sleep(0.3)
    assert len(w.alerts) == 1, w.alerts
    alert = w.alerts[0][1]
    assert (alert.database, alert.table, alert.rows) == ("club", "members", 50), alert
    assert alert.thread_id == thread_id, alert
    assert alert.gtid == gtid and alert.plan_spec == gtid, (alert, gtid)
    assert int(before) - 1 <= alert.server_time <= after + 1, (alert, before, after)
    assert "DELETE FROM club.members" in alert.statement, alert
    # The source logs MIXED: said once, at the start, that statement-logged mass changes go uncounted.
    assert len(w.troubles) == 1 and "binlog_format=MIXED" in w.troubles[0], w.troubles


def test_alert_keys_differ_when_reset_master_and_failover_repeat_a_position():
    """The same statements after RESET MASTER (and with another server id, as after a failover) put
    a DROP at the very same file:pos: its alert must not look like the one already sent."""
    alerts: list[Alert] = []
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        for server_id in (1, 2):
            with src.connect() as conn, conn.cursor() as cur:
                cur.execute(f"SET GLOBAL server_id = {server_id}")
                cur.execute("DROP DATABASE IF EXISTS club")
                cur.execute("RESET MASTER")
                cur.execute("CREATE DATABASE club")
                cur.execute("CREATE TABLE club.t (id INT PRIMARY KEY)")
                cur.execute("DROP TABLE club.t")
            with Watching(src.dsn, MemoryPositions(("binlog.000001", 4))) as w:
                wait_until(lambda: w.alerts, "the DROP TABLE alert", w.troubles)
            alerts += [a for _, a in w.alerts]
            assert w.troubles == [], w.troubles  # ROW: nothing to warn about
            time.sleep(1.1)  # a new second too
    first, second = alerts
    assert (first.file, first.pos) == (second.file, second.pos), alerts
    assert first.key != second.key and len(second.key) < 64, alerts
    assert first.key.startswith(f"{first.file}:{first.pos}"), first.key
