"""A million-row transaction streams through plan and restore in flat memory, exactly."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support.db import checksums, plan_args, restore_args
from tests.support.incident_factory import IncidentSpec

ROWS = 1_000_000

# Runs one restore-bot command in a fresh interpreter and reports its own peak RSS, so the
# figure is the command's alone (not the test process's, nor the servers'). VmHWM, not
# getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a big test process
# (an xdist worker late in the suite) would report its parent's size at fork.
_MEASURE = """
import json, re, sys
from bot.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        peak = int(re.search(r"^VmHWM:\\s+(\\d+) kB", status.read(), re.M).group(1))
    print(json.dumps({"peak_kib": peak}), file=sys.stderr)
sys.exit(code)
"""


def _run_measured(*args: str) -> tuple[int, dict, int]:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *args, "--json"], capture_output=True, text=True)
    peak = json.loads(proc.stderr.strip().splitlines()[-1])["peak_kib"]
    return proc.returncode, json.loads(proc.stdout), peak


def test_million_row_statement_restores_exactly_in_flat_memory(source_factory, target, tmp_path):
    inc = IncidentSpec(
        databases=("big",),
        schema=["CREATE DATABASE big",
                "CREATE TABLE big.t (id INT PRIMARY KEY, n BIGINT NOT NULL, label VARCHAR(120) NOT NULL)",
                "INSERT INTO big.t VALUES (0, 0, 'before the dump')"],
        # One statement, one transaction: about 110 MB of row events, more than the limits below.
        traffic=[f"INSERT INTO big.t SELECT seq, seq * 7, CONCAT('row number ', seq, ' ', REPEAT('x', 80)) "
                 f"FROM big.seq_1_to_{ROWS}",
                 "UPDATE big.t SET label = 'changed' WHERE id <= 1000"],
        disaster=["DROP DATABASE big"],
    ).build(source_factory("ROW"), tmp_path, copy=False)
    binlog_bytes = inc.disaster_pos   # SHOW MASTER STATUS right before the DROP: the binlog file's size so far
    assert binlog_bytes > 100 << 20

    code, plan, plan_peak = _run_measured(*plan_args(inc))
    assert code == 0, plan
    assert plan["plan"]["tables"]["big.t"]["inserted"] == ROWS
    assert plan["plan"]["stop"]["statement"].startswith("DROP DATABASE")

    code, doc, restore_peak = _run_measured(*restore_args(inc, target))
    assert code == 0, doc
    with target.connect() as conn:
        assert checksums(conn, ["big"]) == inc.before
    # Flat: the interpreter and libraries take about 40 MiB; on top of that nothing holds more
    # than a few 4 MiB pieces (one being built, one queued, one on the wire), never the whole
    # transaction, which alone is bigger than either limit.
    print(f"peak RSS: plan {plan_peak} KiB, restore {restore_peak} KiB, binlog {binlog_bytes >> 10} KiB")
    assert plan_peak < 100 << 10, f"plan peaked at {plan_peak} KiB"
    assert restore_peak < 110 << 10, f"restore peaked at {restore_peak} KiB"
