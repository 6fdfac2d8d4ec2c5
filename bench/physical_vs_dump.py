#!/usr/bin/env python3
"""Restore from a physical backup against restore from a dump, same data, one run (issue 13).

A source server (binlog on, ROW) gets sysbench-shaped tables (as bench/load_parallel.py), filled
server-side; then `mariadb-dump --single-transaction --master-data=2 --gtid` and
`mariadb-backup --backup` of it, traffic after both (updates and inserts on every table), the
binlogs copied. Then each base is restored into a throwaway sandbox with the same plan-and-stage
path the CLI takes (restore.api.plan + restore.api.stage, stop at the binlogs' end):

  dump      load the dump (restore.replay.loader, parallel) into a new server, then replay
  physical  copy + prepare the backup, start the sandbox on it (no load), then replay

The physical path's fixed costs are timed step by step (copy, prepare, server start and stop,
the plan's table description) by wrapping those functions for the run: `steps_s` in the JSON.

Both must end with the source's checksums (restore.replay.verify.table_checksums) for every
table. Prints sizes, seconds (plan and stage apart), the ratio; exits 1 when one was not exact.

    .venv/bin/python bench/physical_vs_dump.py [--tables 4] [--rows 250000]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout even when the package is not installed

from bench.load_parallel import DB, fill, log  # noqa: E402
from restore import api  # noqa: E402
from restore.hooks import NullHooks  # noqa: E402
from restore.mysql import sandbox as _sandbox  # noqa: E402
from restore.mysql.sandbox import Sandbox  # noqa: E402
from restore.plan import physical_base  # noqa: E402
from restore.replay.verify import table_checksums  # noqa: E402


def traffic(src: Sandbox, tables: int) -> None:
    with src.connect(autocommit=True) as conn, conn.cursor() as cur:
        for n in range(1, tables + 1):
            cur.execute(f"UPDATE {DB}.sbtest{n} SET k = k + 1 WHERE id % 97 = 0")
            cur.execute(f"INSERT INTO {DB}.sbtest{n} (k, c, pad) SELECT k, c, pad FROM {DB}.sbtest{n} "
                        "WHERE id % 101 = 0")
            cur.execute(f"DELETE FROM {DB}.sbtest{n} WHERE id % 103 = 0")


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class PhaseTimes(NullHooks):
    """Seconds per restore phase (load, replay, verify...), and the sandbox start before the first."""

    def __init__(self, t0: float) -> None:
        self.last, self.times, self.started = t0, {}, {}

    def phase_started(self, phase: str, total: int | None) -> None:
        self.times.setdefault("before phases", round(time.monotonic() - self.last, 2))
        self.started[phase] = time.monotonic()

    def phase_finished(self, phase: str, result: dict) -> None:
        self.last = time.monotonic()
        self.times[phase] = round(self.last - self.started.pop(phase, self.last), 2)


class Steps:
    """Seconds spent in the physical path's fixed-cost functions (summed per step) while active."""

    WRAPPED = ((physical_base, "_copy", "copy"), (physical_base, "_prepare", "prepare"),
               (physical_base, "_describe", "describe tables"), (_sandbox.Sandbox, "_install", "install db"),
               (_sandbox.Sandbox, "start", "server start"), (_sandbox.Sandbox, "stop", "server stop"))

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> "Steps":
        for owner, name, label in self.WRAPPED:
            fn = getattr(owner, name)
            self._saved.append((owner, name, fn))
            setattr(owner, name, self._timed(fn, label))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, fn in reversed(self._saved):
            setattr(owner, name, fn)

    def _timed(self, fn, label: str):
        @functools.wraps(fn)
        def timed(*a, **kw):
            t = time.monotonic()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds[label] = round(self.seconds.get(label, 0.0) + time.monotonic() - t, 2)
        return timed


def timed_restore(label: str, snapshot: str, binlogs: Path, before: dict) -> dict:
    with Steps() as steps:
        t0 = time.monotonic()
        planned = api.plan(api.PlanInput([snapshot], binlogs, stop="end"))
        t1 = time.monotonic()
        phases = PhaseTimes(t1)
        staged = api.stage(planned, api.StageTarget(), hooks=phases)
        t2 = time.monotonic()
    phases.times["after phases"] = round(t2 - phases.last, 2)
    physical_base._drop_spare()
    exact = staged.evidence.checksums == {name: c for name, (_r, c) in before.items()}
    log(f"  {label}: plan {t1 - t0:.1f} s, stage {t2 - t1:.1f} s {phases.times}, steps {steps.seconds}, "
        f"exact={exact}")
    return {"plan_s": round(t1 - t0, 2), "stage_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
            "stage_phases_s": phases.times, "steps_s": steps.seconds,
            "exact": exact, "transactions": planned.plan.transactions}


def build(tables: int, rows: int, work: Path, *, disaster: bool = False) -> dict:
    """A source with `tables` x `rows`, its dump and its mariadb-backup at the same position, traffic
    after both; `disaster`: then DROP DATABASE. Returns the dump, the backup, a copy of the binlogs
    and the checksums before the disaster (or at the end of the traffic)."""
    dump, backup, binlogs = work / "dump.sql", work / "backup", work / "binlogs"
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        log(f"source: {tables} tables x {rows} rows")
        fill(src, tables, rows)
        with open(dump, "wb") as fh:
            subprocess.run(["mariadb-dump", *src.client_args(), "--single-transaction", "--master-data=2", "--gtid",
                            "--databases", DB], stdout=fh, check=True)
        # The dump's and the backup's positions differ by nothing: no write in between.
        subprocess.run(["mariadb-backup", "--backup", f"--socket={src.socket}", "--user=root",
                        f"--datadir={src.data_path}", f"--target-dir={backup}"], capture_output=True, check=True)
        traffic(src, tables)
        with src.connect(autocommit=True) as conn, conn.cursor() as cur:
            before = table_checksums(conn, [DB])
            if disaster:
                cur.execute(f"DROP DATABASE {DB}")
        binlogs.mkdir()
        for f in sorted(Path(src.binlog_dir).iterdir()):
            if f.name.startswith("binlog."):
                shutil.copy2(f, binlogs / f.name)
    return {"dump": dump, "backup": backup, "binlogs": binlogs, "before": before}


def run(tables: int, rows: int, work: Path) -> dict:
    base = build(tables, rows, work)
    dump, backup, binlogs, before = base["dump"], base["backup"], base["binlogs"], base["before"]
    sizes = {"dump_bytes": size_of(dump), "backup_bytes": size_of(backup)}
    log(f"dump {sizes['dump_bytes'] / 1e6:.1f} MB, backup {sizes['backup_bytes'] / 1e6:.1f} MB")
    from_dump = timed_restore("dump", str(dump), binlogs, before)
    from_backup = timed_restore("physical", str(backup), binlogs, before)
    return {"date": _dt.date.today().isoformat(), "tables": tables, "rows_per_table": rows, "cores": os.cpu_count(),
            **sizes, "dump": from_dump, "physical": from_backup,
            "ratio": round(from_backup["total_s"] / from_dump["total_s"], 3),
            "exact": from_dump["exact"] and from_backup["exact"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--rows", type=int, default=250_000, help="rows per table (default 250000)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="physical-bench-") as work:
        r = run(args.tables, args.rows, Path(work))
    print(f"{r['date']}  {args.tables} x {args.rows} rows, dump {r['dump_bytes'] / 1e6:.1f} MB, "
          f"backup {r['backup_bytes'] / 1e6:.1f} MB, {r['cores']} cores\n"
          f"  from the dump:    {r['dump']['total_s']:.1f} s (plan {r['dump']['plan_s']:.1f}, "
          f"stage {r['dump']['stage_s']:.1f})\n"
          f"  from the backup:  {r['physical']['total_s']:.1f} s (plan {r['physical']['plan_s']:.1f}, "
          f"stage {r['physical']['stage_s']:.1f})\n"
          f"  ratio {r['ratio']}x, both exact: {r['exact']}\n"
          f"  physical steps (s): {r['physical']['steps_s']} (server start includes install db)")
    print(json.dumps(r))
    return 0 if r["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
