"""A million-row transaction streams through plan and restore in flat memory, exactly."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support.db import checksums, dump, target_url

ROWS = 1_000_000

# Runs one restore-bot command in a fresh interpreter and reports its own peak RSS, so the
# figure is the command's alone (not the test process's, nor the servers').
_MEASURE = """
import json, resource, sys
from bot.cli import main
try:
    code = main(sys.argv[1:])
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": peak}), file=sys.stderr)
sys.exit(code)
"""


def _run_measured(*args: str) -> tuple[int, dict, int]:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *args, "--json"], capture_output=True, text=True)
    peak = json.loads(proc.stderr.strip().splitlines()[-1])["peak_kib"]
    return proc.returncode, json.loads(proc.stdout), peak


def test_million_row_statement_restores_exactly_in_flat_memory(source_factory, target, tmp_path):
    src = source_factory("ROW")
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE big")
        cur.execute("CREATE TABLE big.t (id INT PRIMARY KEY, n BIGINT NOT NULL, label VARCHAR(120) NOT NULL)")
        cur.execute("INSERT INTO big.t VALUES (0, 0, 'before the dump')")
    snap = dump(src, tmp_path / "big.sql", ["big"])
    with src.connect() as conn, conn.cursor() as cur:
        # One statement, one transaction: about 110 MB of row events, more than the limits below.
        cur.execute(f"INSERT INTO big.t SELECT seq, seq * 7, CONCAT('row number ', seq, ' ', REPEAT('x', 80)) FROM big.seq_1_to_{ROWS}")
        cur.execute("UPDATE big.t SET label = 'changed' WHERE id <= 1000")
        cur.execute("SHOW MASTER STATUS")
        binlog_bytes = cur.fetchone()[1]
        before = checksums(conn, ["big"])
        cur.execute("DROP DATABASE big")
    assert binlog_bytes > 100 << 20

    common = ["--snapshot", str(snap), "--binlogs", src.binlog_dir]
    code, plan, plan_peak = _run_measured("plan", *common)
    assert code == 0, plan
    assert plan["plan"]["tables"]["big.t"]["inserted"] == ROWS
    assert plan["plan"]["stop"]["statement"].startswith("DROP DATABASE")

    code, doc, restore_peak = _run_measured("restore", *common, "--target", target_url(target), "--yes")
    assert code == 0, doc
    with target.connect() as conn:
        assert checksums(conn, ["big"]) == before
    # Flat: the interpreter and libraries take about 40 MiB; on top of that nothing holds more
    # than a few 4 MiB pieces (one being built, one queued, one on the wire), never the whole
    # transaction, which alone is bigger than either limit.
    print(f"peak RSS: plan {plan_peak} KiB, restore {restore_peak} KiB, binlog {binlog_bytes >> 10} KiB")
    assert plan_peak < 100 << 10, f"plan peaked at {plan_peak} KiB"
    assert restore_peak < 110 << 10, f"restore peaked at {restore_peak} KiB"
