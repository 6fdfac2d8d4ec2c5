"""`restore-bot undo` at scale: a 200,000-row DELETE undone exactly in flat memory (its per-row state
in a scratch file, not in the process), and a kill -9 during the apply leaving the table untouched
(one transaction) and no scratch file once restore-bot starts again."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.db import checksums, master_status, target_url
from tests.test_big_transaction import _run_measured
from tests.support.undo_story import run as _run

pytestmark = pytest.mark.mysql

ROWS = 200_000


def _scratch(tmp) -> list[str]:
    return sorted(n for n in os.listdir(tmp) if n.startswith("restore-bot-undo-"))


# the undo putting rows back: by BINLOG statements of their logged images (restore.undo.raw), or INSERTs
_PUTTING_BACK = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO `big`.`t`%' "
                 "OR INFO LIKE 'BINLOG %'")


def _wait_for_insert(server, proc) -> None:
    """Until the undo's INSERTs or BINLOG statements run on the server (or the command ended)."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                cur.execute(_PUTTING_BACK)
                if cur.fetchone()[0]:
                    return
                time.sleep(0.005)
    finally:
        conn.close()


def _count_after_rollback(server) -> int:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            for _ in range(100):   # the server rolls the dead session's transaction back
                cur.execute(_PUTTING_BACK)
                if not cur.fetchone()[0]:
                    break
                time.sleep(0.1)
            cur.execute("SELECT COUNT(*) FROM big.t")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_a_big_delete_is_undone_exactly_in_flat_memory_and_a_kill_leaves_nothing(source_factory, tmp_path,
                                                                                 monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))     # the commands' scratch files land here, to be looked for
    source = source_factory("ROW")
    _run(source, ["CREATE DATABASE big",
                  "CREATE TABLE big.t (id INT PRIMARY KEY, n BIGINT NOT NULL, price DECIMAL(12,2), "
                  "label VARCHAR(64) CHARACTER SET utf8mb4, at DATETIME(6), flag TINYINT)",
                  f"INSERT INTO big.t SELECT seq, seq * 7919, (seq % 100000) / 100, CONCAT('label ', seq, ' ü'), "
                  f"TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 1001 MICROSECOND, IF(seq % 7 = 0, NULL, seq % 100) "
                  f"FROM big.seq_1_to_{ROWS}"])
    before = checksums(source.connect(), ["big"])
    _run(source, ["DELETE FROM big.t"])
    gtid = master_status(source.connect())[2]
    _run(source, ["CREATE TABLE big.later (id INT PRIMARY KEY)", "INSERT INTO big.later VALUES (1)"])
    args = ["undo", "--binlogs", str(source.binlog_dir), "--target", target_url(source), "--event", gtid, "--yes"]

    # killed during the apply: nothing of it stays, its scratch file is there until the next start
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", *args, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_insert(source, proc)
    assert proc.poll() is None, f"the undo ended before it could be killed mid-apply: {proc.communicate()}"
    left = _scratch(scratch)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert left and all(f"-{proc.pid}-" in n for n in left), left
    assert _count_after_rollback(source) == 0, "a killed undo left part of its rows"

    # what the command takes before it holds any row: its imports and connections (a run that
    # finds no such transaction)
    code, _, start = _run_measured("undo", "--binlogs", str(source.binlog_dir), "--target", target_url(source),
                                   "--event", "0-1-999999999", "--dry-run")
    assert code != 0
    # the next start sweeps the dead one's scratch; this run undoes it all, in flat memory
    code, doc, peak = _run_measured(*args)
    assert code == 0 and doc["applied"] and not doc["verification"], doc
    assert doc["tables"][0]["rows"] == {"insert": ROWS, "update": 0, "delete": 0, "already": 0}
    assert checksums(source.connect(), ["big"]) == dict(before, **{"big.later": checksums(source.connect(),
                                                                                         ["big"])["big.later"]})
    assert _scratch(scratch) == [], "a scratch file outlived its undo"
    # The rows' state held in the process took about 1.5 KiB a row before it went to a scratch file
    # (~290 MiB over the start-up here); now bounded batches, the scratch file's cache and one
    # multi-row INSERT being sent, whatever the row count.
    print(f"undo of {ROWS} rows: peak RSS {peak} KiB, {peak - start} KiB over its start-up ({start} KiB)")
    assert peak - start < 80 << 10, f"undo peaked at {peak} KiB, {peak - start} KiB over its start-up"
