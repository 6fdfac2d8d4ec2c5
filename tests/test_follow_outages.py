"""Following a live source through outages: each one reported once, the backoff starting over once
events flow again, and a saved position whose file was purged skipped with a clear report."""
from __future__ import annotations

import time

import pymysql
import pytest

from restore.binlog.server import BinlogGone, ServerBinlogs
from restore.mysql.dsn import Dsn
from restore.mysql.sandbox import Sandbox
from tests.support.watching import MemoryPositions, Watching, server_status, wait_until

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


def _setup(cur) -> None:
    cur.execute("CREATE DATABASE club")
    cur.execute("CREATE TABLE club.members (id INT PRIMARY KEY, name VARCHAR(20))")
    cur.execute("CREATE TABLE club.posts (id INT PRIMARY KEY, title VARCHAR(20))")
    cur.execute("CREATE TABLE club.log (id INT PRIMARY KEY, msg VARCHAR(20))")
    cur.execute("INSERT INTO club.members SELECT seq, CONCAT('m', seq) FROM club.seq_1_to_50")


def _kill_user(cur, user: str) -> None:
    cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
    for (conn_id,) in cur.fetchall():
        try:
            cur.execute(f"KILL {conn_id}")
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != 1094:  # Unknown thread id: it ended by itself meanwhile
                raise


def test_each_outage_reported_once_with_its_recovery_and_the_backoff_starts_over():
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
            cur.execute("CREATE USER w@'%' IDENTIFIED BY 'pw'")
            cur.execute("GRANT ALL ON *.* TO w@'%'")
        dsn = Dsn("w", "pw", "127.0.0.1", src.port)
        with Watching(dsn, MemoryPositions()) as w, src.connect() as conn, conn.cursor() as cur:
            said = w.troubles
            # Outage 1: the account locked and its stream cut; refused twice more, the wait grows to 8 s.
            cur.execute("ALTER USER w@'%' ACCOUNT LOCK")
            refused = server_status(src, "Aborted_connects")  # (a locked account is not an access denied)
            _kill_user(cur, "w")
            wait_until(lambda: len(said) == 1, "the first outage's report", said, timeout=10)
            wait_until(lambda: server_status(src, "Aborted_connects") >= refused + 2, "two refused retries", said,
                       timeout=10)
            cur.execute("ALTER USER w@'%' ACCOUNT UNLOCK")
            wait_until(lambda: len(said) == 2, "the recovery report", said, timeout=12)
            # Outage 2: a killed dump thread alone, then a DROP: reported again, and the reconnect
            # waits a second again, not the 8+ s the first outage had reached.
            _kill_user(cur, "w")
            killed = time.monotonic()
            cur.execute("DROP TABLE club.log")
            wait_until(lambda: w.alerts, "the DROP TABLE alert", said, timeout=20)
            latency = w.alerts[0][0] - killed
            wait_until(lambda: len(said) == 4, "the second outage's report and recovery", said, timeout=10)
            time.sleep(0.5)
    assert latency < 4, (latency, said)
    assert len(said) == 4, said
    assert all("closed the binlog stream" in said[i] or "ended the binlog stream" in said[i] for i in (0, 2)), said
    assert said[1].startswith("recovered") and said[3].startswith("recovered"), said
    assert [a.table for _, a in w.alerts] == ["log"], w.alerts


def test_a_purged_saved_position_is_reported_and_watching_goes_on_from_the_oldest_file():
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
            cur.execute("SHOW MASTER STATUS")
            file, pos = cur.fetchone()[:2]
            saved = (file, int(pos))
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("DROP TABLE club.posts")   # in binlog.000002: purged unseen
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("DROP TABLE club.log")     # in binlog.000003, the oldest left: still alerted
            cur.execute("PURGE BINARY LOGS TO 'binlog.000003'")
        assert saved[0] == "binlog.000001"

        # The server's own refusal (the file vanishing between the listing and the dump request)
        # is recognised as the same thing: a file that is gone, not a passing outage.
        racing = ServerBinlogs(src.dsn)
        racing.binary_logs = lambda: [("binlog.000001", 0), ("binlog.000003", 0)]
        with pytest.raises(BinlogGone) as gone:
            list(racing.events(*saved))
        assert (gone.value.file, gone.value.pos) == saved

        with Watching(src.dsn, MemoryPositions(saved)) as w, src.connect() as conn, conn.cursor() as cur:
            wait_until(lambda: w.alerts, "the alert for the DROP in the oldest file", w.troubles, timeout=15)
            cur.execute("DROP TABLE club.members")
            wait_until(lambda: len(w.alerts) == 2, "the alert for a new DROP", w.troubles, timeout=15)
            time.sleep(0.5)
    said = w.troubles
    assert len(said) == 1, said
    assert f"binlog.000001:{saved[1]}" in said[0] and "binlog.000003" in said[0] and "NOT watched" in said[0], said
    assert [a.table for _, a in w.alerts] == ["log", "members"], w.alerts


def test_a_saved_position_past_the_end_after_reset_master_starts_the_file_again():
    """RESET MASTER: binlog.000001 is written anew and is shorter than the saved position. The
    server calls that an impossible position; the watcher says so once and reads the file from its
    start, so a DROP after the reset is alerted."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
            cur.execute("INSERT INTO club.log SELECT seq, REPEAT('x', 20) FROM club.seq_1_to_300")
            cur.execute("SHOW MASTER STATUS")
            file, pos = cur.fetchone()[:2]
            saved = (file, int(pos))
            cur.execute("RESET MASTER")
            cur.execute("DROP TABLE club.posts")
        with Watching(src.dsn, MemoryPositions(saved)) as w:
            wait_until(lambda: w.alerts, "the alert for the DROP after the reset", w.troubles, timeout=15)
            time.sleep(0.5)
    assert saved[0] == "binlog.000001" and len(w.troubles) == 1, w.troubles
    assert f"binlog.000001:{saved[1]}" in w.troubles[0] and "past the end" in w.troubles[0], w.troubles
    assert [a.table for _, a in w.alerts] == ["posts"]
