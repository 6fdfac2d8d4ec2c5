"""kill -9 at any moment, run the same command again: the result is identical."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pymysql
import pytest

from tests.support.db import checksums, restore_args
from tests.support.incident_factory import IncidentSpec

TXNS = 6000


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """Thousands of small transactions with DDL in the middle: a replay that takes a while."""
    return IncidentSpec(
        databases=("app",),
        schema=["CREATE DATABASE app",
                "CREATE TABLE app.events (id INT AUTO_INCREMENT PRIMARY KEY, n INT, note VARCHAR(40))",
                "CREATE TABLE app.counters (k INT PRIMARY KEY, v BIGINT)",
                "INSERT INTO app.counters VALUES (1, 0), (2, 0)",
                "CREATE PROCEDURE app.work(n INT) BEGIN DECLARE i INT DEFAULT 0; WHILE i < n DO "
                "INSERT INTO app.events (n, note) VALUES (i, CONCAT('note ', i)); "
                "UPDATE app.counters SET v = v + i WHERE k = 1 + (i % 2); "
                "IF i % 7 = 0 THEN DELETE FROM app.events WHERE id = i DIV 2; END IF; "
                "SET i = i + 1; END WHILE; END"],
        traffic=[f"CALL app.work({TXNS // 2})",
                 "ALTER TABLE app.events ADD COLUMN extra INT DEFAULT 5",
                 "CREATE INDEX by_n ON app.events (n)",
                 f"CALL app.work({TXNS // 2})"],
        disaster=["DROP DATABASE app"],
    ).build_on_new_source(tmp_path_factory.mktemp("crash"), extra_args=["--innodb-flush-log-at-trx-commit=2"])


def _command(busy, target) -> list[str]:
    return [sys.executable, "-m", "bot.cli", *restore_args(busy, target, "--json", "--batch", "5")]


def _state(conn) -> tuple[str, int] | None:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT phase, transactions FROM _restore_bot.state")
            row = cur.fetchone()
            return (row[0], int(row[1])) if row else None
    except pymysql.MySQLError:   # no checkpoint table yet
        return None


def _run_and_kill(cmd, target, when) -> bool:
    """Start the restore and SIGKILL it once `when(state)` holds; False if it finished first."""
    conn = target.connect(autocommit=True)   # one connection, polled often: the load lasts some 30 ms
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            state = _state(conn)
            if state and when(state):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_minus_nine_then_resume_is_identical(busy, target):
    cmd = _command(busy, target)
    kills = [
        # during or right after the load; that window is short, so failing it, early in the replay
        # (a restore that ran to its end here would leave the later runs nothing to kill)
        lambda s: s[0] in ("prepared", "loaded") or (s[0] == "replaying" and s[1] < TXNS // 6),
        lambda s: s[0] == "replaying" and s[1] >= TXNS // 6,         # mid-replay, before the DDL
        lambda s: s[0] == "replaying" and s[1] >= TXNS // 2,         # around the DDL
        lambda s: s[0] == "replaying" and s[1] >= TXNS * 4 // 5,     # late in the replay
    ]
    killed = [_run_and_kill(cmd, target, when) for when in kills]
    assert sum(killed) >= 3, f"the restore finished before it could be killed: {killed}"
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    doc = json.loads(out.stdout)
    assert doc["restore"]["resumed"] is True
    with target.connect() as conn:
        assert checksums(conn, ["app"]) == busy.before


def test_rerun_after_success_verifies_again(busy, target):
    cmd = _command(busy, target)
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    doc = json.loads(again.stdout)
    assert doc["restore"]["resumed"] is True
    assert [p["phase"] for p in doc["restore"]["phases"]] == ["plan", "prepare", "verify"]
    with target.connect() as conn:
        assert checksums(conn, ["app"]) == busy.before
