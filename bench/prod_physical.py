#!/usr/bin/env python3
"""`restore prod` from a dump against from a physical backup, end to end, same data, one run (issue 13).

The incident: a source server (binlog on, ROW) gets sysbench-shaped tables (bench/load_parallel.py),
a dump (`mariadb-dump --single-transaction --master-data=2 --gtid`) and a `mariadb-backup --backup`
of it, traffic after both, then `DROP DATABASE` (the disaster); the application then writes to
production again (a new table in the recreated database). Then, for each base, on a fresh
production server in that post-disaster state, what an operator runs through the bot:

  plan    restore.api.plan (the stop found by itself: the DROP)
  stage   restore.api.stage into a throwaway sandbox: the evidence prod requires
  prod    restore.api.prod: rebuild in a sandbox, replay, verify; fill the shadow schema on
          production (from the dump: load it; from the backup: its tables moved by transportable
          tablespaces); swap, the application's post-disaster tables kept aside

Production must end with the source's checksums from before the disaster, and the application's
table kept aside. Prints seconds per step and the ratios (prod alone, and all three); exits 1
when a run was not exact.

    .venv/bin/python bench/prod_physical.py [--tables 4] [--rows 250000]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout even when the package is not installed

from bench.load_parallel import DB, log  # noqa: E402
from bench.physical_vs_dump import PhaseTimes, Steps, build, size_of  # noqa: E402
from restore import api  # noqa: E402
from restore.mysql.sandbox import Sandbox  # noqa: E402
from restore.plan import physical_base  # noqa: E402
from restore.replay.verify import table_checksums  # noqa: E402


def timed_prod(label: str, snapshot: Path, binlogs: Path, before: dict) -> dict:
    with Sandbox() as prod:
        with prod.connect(autocommit=True) as conn, conn.cursor() as cur:   # production after the disaster
            cur.execute(f"CREATE DATABASE {DB}")
            cur.execute(f"CREATE TABLE {DB}.after_disaster (id INT PRIMARY KEY)")
            cur.execute(f"INSERT INTO {DB}.after_disaster VALUES (1), (2)")
        with Steps() as steps:
            t0 = time.monotonic()
            planned = api.plan(api.PlanInput([str(snapshot)], binlogs))
            t1 = time.monotonic()
            staged = api.stage(planned, api.StageTarget())
            t2 = time.monotonic()
            phases = PhaseTimes(t2)
            outcome = api.prod(planned, staged.evidence, api.ProdTarget(prod.dsn), job_tag="bench", hooks=phases)
            t3 = time.monotonic()
        physical_base._drop_spare()
        with prod.connect() as conn:
            after = table_checksums(conn, [DB])
            aside = table_checksums(conn, [f"{DB}__before_bench"])
    exact = after == before
    kept = list(aside) == [f"{DB}__before_bench.after_disaster"] and outcome.swapped
    secs = {"plan_s": round(t1 - t0, 2), "stage_s": round(t2 - t1, 2), "prod_s": round(t3 - t2, 2),
            "total_s": round(t3 - t0, 2)}
    log(f"  {label}: {secs}, prod phases {phases.times}, steps {steps.seconds}, "
        f"shadow by {outcome.shadow_copy.get('path') if outcome.shadow_copy else 'load'}, exact={exact}, "
        f"kept aside={kept}")
    return {**secs, "prod_phases_s": phases.times, "steps_s": steps.seconds, "exact": exact, "kept_aside": kept,
            "shadow": (outcome.shadow_copy or {}).get("path", "dump loaded")}


def run(tables: int, rows: int, work: Path) -> dict:
    data = build(tables, rows, work, disaster=True)
    sizes = {"dump_bytes": size_of(data["dump"]), "backup_bytes": size_of(data["backup"])}
    log(f"dump {sizes['dump_bytes'] / 1e6:.1f} MB, backup {sizes['backup_bytes'] / 1e6:.1f} MB")
    from_dump = timed_prod("dump", data["dump"], data["binlogs"], data["before"])
    from_backup = timed_prod("physical", data["backup"], data["binlogs"], data["before"])
    return {"date": _dt.date.today().isoformat(), "tables": tables, "rows_per_table": rows, "cores": os.cpu_count(),
            **sizes, "dump": from_dump, "physical": from_backup,
            "prod_ratio": round(from_backup["prod_s"] / from_dump["prod_s"], 3),
            "total_ratio": round(from_backup["total_s"] / from_dump["total_s"], 3),
            "exact": all(r["exact"] and r["kept_aside"] for r in (from_dump, from_backup))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--rows", type=int, default=250_000, help="rows per table (default 250000)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prod-bench-") as work:
        r = run(args.tables, args.rows, Path(work))
    d, p = r["dump"], r["physical"]
    print(f"{r['date']}  {args.tables} x {args.rows} rows, dump {r['dump_bytes'] / 1e6:.1f} MB, "
          f"backup {r['backup_bytes'] / 1e6:.1f} MB, {r['cores']} cores\n"
          f"  from the dump:    prod {d['prod_s']:.1f} s (plan {d['plan_s']:.1f}, stage {d['stage_s']:.1f}, "
          f"total {d['total_s']:.1f})\n"
          f"  from the backup:  prod {p['prod_s']:.1f} s (plan {p['plan_s']:.1f}, stage {p['stage_s']:.1f}, "
          f"total {p['total_s']:.1f}), shadow by {p['shadow']}\n"
          f"  prod ratio {r['prod_ratio']}x, plan+stage+prod ratio {r['total_ratio']}x, "
          f"all exact and kept aside: {r['exact']}")
    print(json.dumps(r))
    return 0 if r["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
