#!/usr/bin/env python3
"""Parallel logical load against one client, in one run, on the same dump (issue 13).

A source server gets sysbench-shaped tables (sbtestN: id, k, c CHAR(120), pad CHAR(60), KEY k),
filled server-side from MariaDB's sequence engine; mariadb-dump writes them out. Then, each into a
fresh, identically configured server:

  one client   restore.replay.loader.load_snapshot(jobs=1), today's path: the dump through one `mariadb`
  N jobs       load_snapshot(jobs=N): one table per client, N clients at once

Both must give the source's CHECKSUM TABLE ... EXTENDED for every table. Prints sizes, times,
the ratio and the machine's cores; exits 1 when a load was not exact.

    .venv/bin/python bench/load_parallel.py [--tables 4] [--rows 250000] [--jobs N]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout even when the package is not installed

from restore.mysql.sandbox import Sandbox  # noqa: E402
from restore.plan.snapshot import Snapshot  # noqa: E402
from restore.meter import Throughput  # noqa: E402
from restore.replay.loader import default_jobs, load_snapshot  # noqa: E402

DB = "sbtest"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fill(box: Sandbox, tables: int, rows: int) -> None:
    with box.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB}")
        for n in range(1, tables + 1):
            cur.execute(f"CREATE TABLE {DB}.sbtest{n} (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                        "k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', "
                        "KEY k_1 (k)) ENGINE=InnoDB")
            # sysbench's values: k random in [1, rows], c and pad groups of 11 digits joined by '-'
            digits = "LPAD(FLOOR(RAND() * 99999999999), 11, '0')"
            cur.execute(f"INSERT INTO {DB}.sbtest{n} (k, c, pad) SELECT 1 + FLOOR(RAND() * {rows}), "
                        f"CONCAT_WS('-', {', '.join([digits] * 10)}), CONCAT_WS('-', {', '.join([digits] * 5)}) "
                        f"FROM {DB}.seq_1_to_{rows}")
        conn.commit()


def checksums(box: Sandbox) -> dict[str, int]:
    with box.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (DB,))
        names = sorted(r[0] for r in cur.fetchall())
        out = {}
        for name in names:
            cur.execute(f"CHECKSUM TABLE {DB}.{name} EXTENDED")
            out[name] = cur.fetchone()[1]
        return out


def timed_load(dump: Path, jobs: int, before: dict[str, int]) -> dict:
    with Sandbox() as box:
        meter = Throughput()
        last = [0.0]

        def progress(done: int, size: int) -> None:
            if time.monotonic() - last[0] >= 2:
                last[0] = time.monotonic()
                log(f"  {jobs} job(s): {meter.line(done, size)}")

        t0 = time.monotonic()
        report = load_snapshot(box.dsn, Snapshot(str(dump)), progress, init=("SET SESSION sql_log_bin=0",), jobs=jobs)
        seconds = time.monotonic() - t0
        exact = checksums(box) == before
    log(f"  {jobs} job(s): {seconds:.1f} s, parallel={report.parallel}, exact={exact}")
    return {"jobs": jobs, "seconds": round(seconds, 2), "parallel": report.parallel, "exact": exact,
            "split_s": report.split_seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--rows", type=int, default=250_000, help="rows per table (default 250000)")
    ap.add_argument("--jobs", type=int, default=None, help="parallel clients (default: the target's cores, at most 8)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="load-bench-") as work:
        dump = Path(work) / "dump.sql"
        with Sandbox() as src:
            log(f"source: {args.tables} tables x {args.rows} rows")
            fill(src, args.tables, args.rows)
            before = checksums(src)
            jobs = args.jobs or default_jobs(src.dsn)
            with open(dump, "wb") as fh:
                subprocess.run(["mariadb-dump", *src.client_args(), "--single-transaction", "--databases", DB],
                               stdout=fh, check=True)
        size = dump.stat().st_size
        log(f"dump: {size / 1e6:.1f} MB")
        single = timed_load(dump, 1, before)
        parallel = timed_load(dump, jobs, before)
    result = {
        "date": _dt.date.today().isoformat(), "tables": args.tables, "rows_per_table": args.rows,
        "dump_bytes": size, "cores": os.cpu_count(), "one_client_s": single["seconds"],
        "parallel_jobs": jobs, "parallel_s": parallel["seconds"], "split_s": parallel["split_s"],
        "ratio": round(parallel["seconds"] / single["seconds"], 2),
        "one_client_MBps": round(size / 1e6 / single["seconds"], 1),
        "parallel_MBps": round(size / 1e6 / parallel["seconds"], 1),
        "exact": single["exact"] and parallel["exact"] and parallel["parallel"],
    }
    print(f"{result['date']}  {args.tables} x {args.rows} rows, dump {size / 1e6:.1f} MB, {result['cores']} cores\n"
          f"  one client: {single['seconds']:.1f} s ({result['one_client_MBps']} MB/s)\n"
          f"  {jobs} jobs:     {parallel['seconds']:.1f} s ({result['parallel_MBps']} MB/s; "
          f"finding the tables took {parallel['split_s']:.2f} s of it)\n"
          f"  ratio {result['ratio']}x, both exact: {result['exact']}")
    print(json.dumps(result))
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
