#!/usr/bin/env python3
"""restore-bot benchmark: sysbench oltp_write_only -> dump -> workload -> DROP DATABASE, then, in
one run and one after the other, into two identically configured fresh servers:

  anchor       mariadb < dump.sql; mariadb-binlog --start-position --stop-position ... | mariadb
  restore-bot  restore-bot restore --snapshot dump.sql --binlogs DIR --target DSN --yes --json

Both must give the exact pre-disaster CHECKSUM TABLE ... EXTENDED of every table. Also times
`restore-bot plan` against `mariadb-binlog > /dev/null` on the same binlog range (the medians of
--plan-runs rounds; restore-bot's bytecode is compiled by an untimed plan first, see tool_env).

Goals (issue 2): restore-bot <= 0.33 x anchor; plan <= 1.0 x mariadb-binlog.
Prints a table, writes bench/results.json, exits 1 when a restore was not exact or the plan
did not stop at the DROP DATABASE, 2 when a prerequisite is missing.

    . .venv/bin/activate && python bench/run_bench.py [--seconds 30] [--threads 4] ...
    python bench/run_bench.py --undo 20000     # the undo bench instead (bench/undo_flashback.py)
    python bench/run_bench.py --fleet          # three watched clusters' alert latency (bench/fleet_latency.py)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run from a checkout even when the package is not installed

from restore.mysql.sandbox import Sandbox  # noqa: E402

DB = "sbtest"
GOAL_RESTORE = 0.33
GOAL_PLAN = 1.0
_CHANGE_MASTER = re.compile(r"CHANGE MASTER TO MASTER_LOG_FILE='([^']+)',\s*MASTER_LOG_POS=(\d+)")
_BINLOG_NAME = re.compile(r"^(?P<base>.+)\.(?P<num>\d{6,})$")
_ROW_EVENT = re.compile(rb"\t(Write|Update|Delete)_(?:compressed_)?rows(?:_v1)?(?:_compressed)?(?:_v1)?: ")
_GTID_EVENT = re.compile(rb"\tGTID \d+-\d+-\d+")
_XID = re.compile(rb"\tXid = \d+")


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- helpers ---------------------------------------------------------------------------------
def need(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if not found:
        print(f"run_bench: `{tool}` is not on PATH. Install it first: apt-get install -y {package}",
              file=sys.stderr)
        sys.exit(2)
    return found


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, **kw)
    if out.returncode != 0:
        err = out.stderr.decode(errors="replace") if isinstance(out.stderr, bytes) else (out.stderr or "")
        raise BenchError(f"{what} failed (exit {out.returncode}): {' '.join(cmd)}\n{err.strip()[-2000:]}")
    return out


def restore_bot_cmd() -> list[str]:
    beside = Path(sys.executable).parent / "restore-bot"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("restore-bot")
    return [found] if found else [sys.executable, "-m", "bot.cli"]


def measured(cmd: list[str], rss_file: Path) -> list[str]:
    """Wrap `cmd` so its peak RSS (KiB) lands in rss_file: /usr/bin/time -v, else a Python wrapper."""
    if os.access("/usr/bin/time", os.X_OK):
        return ["/usr/bin/time", "-v", "-o", str(rss_file), *cmd]
    wrapper = ("import resource,subprocess,sys\n"
               "rc=subprocess.call(sys.argv[2:])\n"
               "open(sys.argv[1],'w').write('Maximum resident set size (kbytes): %d\\n' % "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(rc)\n")
    return [sys.executable, "-c", wrapper, str(rss_file), *cmd]


def peak_rss_kib(rss_file: Path) -> int | None:
    try:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", rss_file.read_text())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def checksums(box: Sandbox) -> dict[str, dict]:
    """{table: {"rows": n, "checksum": c}} for every base table of sbtest (empty if it is gone)."""
    conn = box.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                        "AND TABLE_TYPE='BASE TABLE' ORDER BY TABLE_NAME", (DB,))
            tables = [r[0] for r in cur.fetchall()]
            out = {}
            for t in tables:
                cur.execute(f"SELECT COUNT(*) FROM `{DB}`.`{t}`")
                rows = cur.fetchone()[0]
                cur.execute(f"CHECKSUM TABLE `{DB}`.`{t}` EXTENDED")
                out[t] = {"rows": rows, "checksum": cur.fetchone()[1]}
            return out
    finally:
        conn.close()


def diff_checksums(before: dict, after: dict) -> list[str]:
    problems = []
    for t in sorted(set(before) | set(after)):
        if t not in after:
            problems.append(f"{t}: missing")
        elif t not in before:
            problems.append(f"{t}: not there before the disaster")
        elif before[t] != after[t]:
            problems.append(f"{t}: {after[t]} != before {before[t]}")
    return problems


def binlog_range(binlog_dir: Path, start: tuple[str, int], stop: tuple[str, int]) -> list[Path]:
    """Every file from the dump's file up to the disaster's file, in sequence."""
    m1, m2 = _BINLOG_NAME.match(start[0]), _BINLOG_NAME.match(stop[0])
    if not m1 or not m2 or m1["base"] != m2["base"]:
        raise BenchError(f"unexpected binlog names {start[0]} / {stop[0]}")
    first, last = int(m1["num"]), int(m2["num"])
    width = len(m1["num"])
    files = [binlog_dir / f"{m1['base']}.{n:0{width}d}" for n in range(first, last + 1)]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise BenchError(f"binlog files missing from the copy: {', '.join(missing)}")
    return files


def mariadb_binlog_cmd(files: list[Path], start_pos: int, stop_pos: int) -> list[str]:
    return ["mariadb-binlog", "--no-defaults", f"--start-position={start_pos}",
            f"--stop-position={stop_pos}", *map(str, files)]


def count_events(files: list[Path], start_pos: int, stop_pos: int) -> dict:
    """Transactions (GTID events) and row events in the range, from mariadb-binlog's headers."""
    proc = subprocess.Popen(mariadb_binlog_cmd(files, start_pos, stop_pos), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    counts = {"transactions": 0, "xids": 0, "row_events": 0}
    for line in proc.stdout:
        if not line.startswith(b"#"):
            continue
        if _ROW_EVENT.search(line):
            counts["row_events"] += 1
        elif _GTID_EVENT.search(line):
            counts["transactions"] += 1
        elif _XID.search(line):
            counts["xids"] += 1
    if proc.wait() != 0:
        raise BenchError("mariadb-binlog failed while counting events")
    return counts


def code_state() -> dict:
    """Which restore-bot code was measured: the commit, and files of the package changed since it."""
    def git(*a: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return out.stdout.rstrip() if out.returncode == 0 else ""
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "restore", "handlers", "bot").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "changed": dirty}


def fmt_bytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


# -- the steps -------------------------------------------------------------------------------
def build_incident(args, run_dir: Path) -> dict:
    """Source server, sysbench prepare, dump, workload, checksums, DROP; binlogs copied out."""
    dump = run_dir / "dump.sql"
    binlogs = run_dir / "binlogs"
    binlogs.mkdir()
    sb_common = ["--db-driver=mysql", "--mysql-user=root", f"--mysql-db={DB}",
                 f"--tables={args.tables}", f"--table-size={args.table_size}"]
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        log(f"source server up (binlog ROW) at {src.socket}")
        sb_common.append(f"--mysql-socket={src.socket}")
        conn = src.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = cur.fetchone()[0]
            cur.execute(f"CREATE DATABASE {DB}")
        log(f"sysbench prepare: {args.tables} tables x {args.table_size} rows")
        run(["sysbench", "oltp_write_only", *sb_common, "prepare"], "sysbench prepare")

        log("mariadb-dump --master-data=2 --single-transaction")
        with open(dump, "wb") as fh:
            out = subprocess.run(["mariadb-dump", *src.client_args(), "--master-data=2", "--single-transaction",
                                  "--databases", DB], stdout=fh, stderr=subprocess.PIPE)
        if out.returncode != 0:
            raise BenchError(f"mariadb-dump failed: {out.stderr.decode(errors='replace')[-2000:]}")
        m = _CHANGE_MASTER.search(dump.read_text(errors="replace")[:100_000])
        if not m:
            raise BenchError(f"{dump} holds no CHANGE MASTER TO coordinates")
        start = (m.group(1), int(m.group(2)))
        log(f"dump coordinates {start[0]}:{start[1]}")

        log(f"sysbench run: {args.threads} threads, {args.seconds} s")
        sb = run(["sysbench", "oltp_write_only", *sb_common, f"--threads={args.threads}",
                  f"--time={args.seconds}", "--report-interval=0", "run"], "sysbench run", text=True)
        tm = re.search(r"transactions:\s+(\d+)", sb.stdout)
        sysbench_tx = int(tm.group(1)) if tm else None
        log(f"sysbench: {sysbench_tx} transactions")

        before = checksums(src)
        log("checksums before the disaster: " + ", ".join(f"{t}={v['checksum']}" for t, v in before.items()))
        with conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
            stop = (row[0], int(row[1]))
            log(f"SHOW MASTER STATUS before the disaster: {stop[0]}:{stop[1]}")
            cur.execute(f"DROP DATABASE {DB}")
        conn.close()

        names = sorted(n for n in os.listdir(src.binlog_dir)
                       if _BINLOG_NAME.match(n) and (src.binlog_dir / n).is_file())
        for n in names:
            shutil.copy2(src.binlog_dir / n, binlogs / n)
        log(f"copied {len(names)} binlog file(s) to {binlogs}")
    # the source server is gone now: nothing it does can disturb the timings

    files = binlog_range(binlogs, start, stop)
    range_bytes = 0
    for i, f in enumerate(files):
        lo = start[1] if i == 0 else 0
        hi = stop[1] if i == len(files) - 1 else f.stat().st_size
        range_bytes += hi - lo
    counts = count_events(files, start[1], stop[1])  # also warms the page cache for both readers
    return {
        "server_version": version, "dump": dump, "binlogs": binlogs, "start": start, "stop": stop,
        "files": files, "before": before, "sysbench_transactions": sysbench_tx,
        "binlog": {"files": names, "bytes_total": sum((binlogs / n).stat().st_size for n in names),
                   "bytes_range": range_bytes, **counts},
    }


def run_anchor(inc: dict, run_dir: Path) -> dict:
    with Sandbox() as tgt:
        log(f"anchor target up at {tgt.socket}")
        client = ["mariadb", *tgt.client_args()]
        t0 = time.monotonic()
        with open(inc["dump"], "rb") as fh:
            out = subprocess.run(client, stdin=fh, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if out.returncode != 0:
            raise BenchError(f"anchor: mariadb < dump.sql failed: {out.stderr.decode(errors='replace')[-2000:]}")
        t1 = time.monotonic()
        log(f"anchor: dump loaded in {t1 - t0:.1f} s; replaying {len(inc['files'])} binlog file(s)")
        binlog = subprocess.Popen(mariadb_binlog_cmd(inc["files"], inc["start"][1], inc["stop"][1]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with open(run_dir / "anchor-mariadb.err", "wb") as err:
            mysql = subprocess.Popen(client, stdin=binlog.stdout, stdout=subprocess.DEVNULL, stderr=err)
        assert binlog.stdout is not None
        binlog.stdout.close()
        mysql_rc = mysql.wait()
        binlog_err = binlog.stderr.read() if binlog.stderr else b""
        binlog_rc = binlog.wait()
        t2 = time.monotonic()
        if binlog_rc != 0 or mysql_rc != 0:
            raise BenchError(f"anchor replay failed: mariadb-binlog exit {binlog_rc} "
                             f"{binlog_err.decode(errors='replace')[-1000:]}; mariadb exit {mysql_rc} "
                             f"{(run_dir / 'anchor-mariadb.err').read_text(errors='replace')[-1000:]}")
        log(f"anchor: binlog replayed in {t2 - t1:.1f} s")
        after = checksums(tgt)
    problems = diff_checksums(inc["before"], after)
    return {"seconds": round(t2 - t0, 3), "load_seconds": round(t1 - t0, 3), "replay_seconds": round(t2 - t1, 3),
            "exact": not problems, "problems": problems}


def target_url(box: Sandbox) -> str:
    return f"mysql://root@127.0.0.1:{box.port}?unix_socket={box.socket}"


def run_restore_bot(inc: dict, run_dir: Path) -> dict:
    with Sandbox() as tgt:
        log(f"restore-bot target up at {tgt.socket}")
        cmd = [*restore_bot_cmd(), "restore", "--snapshot", str(inc["dump"]), "--binlogs", str(inc["binlogs"]),
               "--target", target_url(tgt), "--yes", "--json"]
        rss_file = run_dir / "restore.rss"
        t0 = time.monotonic()
        with open(run_dir / "restore.json", "wb") as out, open(run_dir / "restore.err", "wb") as err:
            rc = subprocess.run(measured(cmd, rss_file), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, env=tool_env(run_dir)).returncode
        seconds = time.monotonic() - t0
        log(f"restore-bot restore: exit {rc} in {seconds:.1f} s")
        after = checksums(tgt)
    problems: list[str] = []
    try:
        doc = json.loads((run_dir / "restore.json").read_text())
    except ValueError:
        doc = {}
        problems.append("restore-bot printed no JSON document; stderr: "
                        + (run_dir / "restore.err").read_text(errors="replace")[-1500:])
    if rc != 0:
        err = doc.get("error") if isinstance(doc, dict) else None
        problems.append(f"restore-bot exited {rc}" + (f": {json.dumps(err)[:1500]}" if err else ""))
    # 1. what restore-bot itself reported
    reported = {}
    for name, t in (((doc.get("restore") or {}).get("verification") or {}).get("tables") or {}).items():
        db, _, table = name.partition(".")
        if db == DB:
            reported[table] = {"rows": t.get("rows"), "checksum": t.get("checksum")}
    problems += [f"JSON: {p}" for p in diff_checksums(inc["before"], reported)]
    # 2. what the target holds, asked ourselves
    problems += [f"target: {p}" for p in diff_checksums(inc["before"], after)]
    # 3. the plan stopped at the DROP DATABASE, at the position SHOW MASTER STATUS gave before it
    stop = (doc.get("plan") or {}).get("stop") or {}
    stop_ok = ("DROP DATABASE" in (stop.get("statement") or "").upper()
               and (stop.get("tx_file"), stop.get("tx_pos")) == inc["stop"])
    phases = {p["phase"]: p.get("seconds") for p in ((doc.get("restore") or {}).get("phases") or [])}
    return {"seconds": round(seconds, 3), "exit": rc, "exact": not problems, "problems": problems,
            "phases": phases, "peak_rss_kib": peak_rss_kib(rss_file),
            "plan_stop": {k: stop.get(k) for k in ("file", "pos", "tx_file", "tx_pos", "gtid", "statement", "reason")},
            "plan_stop_ok": stop_ok, "plan_transactions": (doc.get("plan") or {}).get("transactions")}


def tool_env(run_dir: Path) -> dict[str, str]:
    """The environment restore-bot runs in: with its bytecode compiled, as an installed copy has it
    (pip compiles it). From a checkout with PYTHONDONTWRITEBYTECODE=1, every module changed since
    its .pyc was written is compiled again at every start (0.1-0.15 s of a plan here), which is
    not what the tool costs. The bytecode goes to the run's folder, not into the checkout."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(run_dir / "pycache")
    return env


def plan_cmd(inc: dict) -> list[str]:
    return [*restore_bot_cmd(), "plan", "--snapshot", str(inc["dump"]), "--binlogs", str(inc["binlogs"]), "--json"]


def warm_up(inc: dict, run_dir: Path) -> None:
    """One untimed plan: compiles restore-bot's bytecode (see tool_env) before anything is timed."""
    t0 = time.monotonic()
    rc = subprocess.run(plan_cmd(inc), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        stdin=subprocess.DEVNULL, env=tool_env(run_dir)).returncode
    log(f"warm-up plan (untimed, compiles the bytecode): exit {rc} in {time.monotonic() - t0:.1f} s")


def run_plan_speed(inc: dict, run_dir: Path, runs: int) -> dict:
    """`runs` rounds of mariadb-binlog > /dev/null then restore-bot plan > /dev/null; the medians
    are compared (one run alone swings by 30 % on a machine doing other work)."""
    binlog_times, plan_times, prc = [], [], 0
    rss_file = run_dir / "plan.rss"
    for _ in range(runs):
        t0 = time.monotonic()
        with open(os.devnull, "wb") as null:
            rc = subprocess.run(mariadb_binlog_cmd(inc["files"], inc["start"][1], inc["stop"][1]),
                                stdout=null, stderr=subprocess.DEVNULL).returncode
        binlog_times.append(time.monotonic() - t0)
        if rc != 0:
            raise BenchError(f"mariadb-binlog > /dev/null exited {rc}")
        t0 = time.monotonic()
        with open(os.devnull, "wb") as null, open(run_dir / "plan.err", "wb") as err:
            prc = subprocess.run(measured(plan_cmd(inc), rss_file), stdout=null, stderr=err,
                                 stdin=subprocess.DEVNULL, env=tool_env(run_dir)).returncode or prc
        plan_times.append(time.monotonic() - t0)
        log(f"plan: mariadb-binlog {binlog_times[-1]:.2f} s, restore-bot plan {plan_times[-1]:.2f} s (exit {prc})")
    t_binlog, t_plan = statistics.median(binlog_times), statistics.median(plan_times)
    return {"mariadb_binlog_seconds": round(t_binlog, 3), "plan_seconds": round(t_plan, 3), "plan_exit": prc,
            "ratio": round(t_plan / t_binlog, 3) if t_binlog else None, "plan_peak_rss_kib": peak_rss_kib(rss_file),
            "runs": {"mariadb_binlog": [round(t, 3) for t in binlog_times], "plan": [round(t, 3) for t in plan_times]}}


def run_profiles(inc: dict, run_dir: Path) -> dict:
    """cProfile of `plan` and of `restore` (into a third fresh server): top 15 by cumulative time."""
    import pstats
    import io
    reports = {}
    args = ["--snapshot", str(inc["dump"]), "--binlogs", str(inc["binlogs"]), "--json"]

    def profile(prof: Path, cli: list[str]) -> None:
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "bot.cli", *cli],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=REPO)

    for name in ("plan", "restore"):
        prof = run_dir / f"{name}.prof"
        log(f"profiling restore-bot {name}")
        if name == "plan":
            profile(prof, ["plan", *args])
        else:
            with Sandbox() as tgt:
                profile(prof, ["restore", *args, "--target", target_url(tgt), "--yes"])
        for order in ("cumulative", "tottime"):
            buf = io.StringIO()
            pstats.Stats(str(prof), stream=buf).sort_stats(order).print_stats(15)
            reports[name] = buf.getvalue()
            print(f"\n== cProfile: restore-bot {name}, top 15 by {order} ({prof}) ==")
            print(buf.getvalue().split("\n\n", 1)[-1].strip())
    return reports


# -- report ----------------------------------------------------------------------------------
def yes(b: bool) -> str:
    return "yes" if b else "NO"


def print_table(res: dict) -> None:
    a, r, p, b = res["anchor"], res["restore_bot"], res["plan"], res["binlog"]
    rss = r["peak_rss_kib"]
    rows = [
        ("workload", f"sysbench oltp_write_only {res['params']['tables']} tables x {res['params']['table_size']} rows, "
                     f"{res['params']['threads']} threads, {res['params']['seconds']} s "
                     f"-> {res['sysbench_transactions']} transactions"),
        ("binlog", f"{fmt_bytes(b['bytes_range'])} replayed ({fmt_bytes(b['bytes_total'])} in {len(b['files'])} file(s)), "
                   f"{b['transactions']} transactions, {b['row_events']} row events"),
        ("replay range", f"{res['start']} -> {res['stop']} (stop = SHOW MASTER STATUS before the DROP)"),
        ("anchor seconds", f"{a['seconds']:.1f}  (load {a['load_seconds']:.1f} + mariadb-binlog | mariadb "
                           f"{a['replay_seconds']:.1f})"),
        ("restore-bot seconds", f"{r['seconds']:.1f}  (start-up {r['seconds'] - sum(v or 0 for v in r['phases'].values()):.1f}, "
                                "then phases: " + ", ".join(f"{k} {v}" for k, v in r["phases"].items()) + ")"),
        ("restore ratio", f"{res['restore_ratio']:.3f}  (goal <= {GOAL_RESTORE}: "
                          f"{'met' if res['restore_ratio'] <= GOAL_RESTORE else 'MISSED'})"
                          if res["restore_ratio"] is not None else "n/a"),
        ("plan vs mariadb-binlog", f"{p['plan_seconds']:.2f} s vs {p['mariadb_binlog_seconds']:.2f} s = "
                                   f"{p['ratio']:.3f}  (goal <= {GOAL_PLAN}: "
                                   f"{'met' if p['ratio'] <= GOAL_PLAN else 'MISSED'}; medians of "
                                   f"{len(p['runs']['plan'])} runs: plan {' '.join(map(str, p['runs']['plan']))}, "
                                   f"mariadb-binlog {' '.join(map(str, p['runs']['mariadb_binlog']))})"
                                   if p["ratio"] is not None else "n/a"),
        ("anchor exact", yes(a["exact"])),
        ("restore-bot exact", yes(r["exact"])),
        ("plan stops at DROP", yes(r["plan_stop_ok"]) + f"  ({r['plan_stop'].get('tx_file')}:{r['plan_stop'].get('tx_pos')} "
                               f"{(r['plan_stop'].get('statement') or '')[:40]!r})"),
        ("machine", f"{res['machine']['cpus']} CPUs, 1-min load {res['machine']['loadavg_1min_before']} before, "
                    f"{res['machine']['loadavg_1min_after']} after (other work on the machine skews timings)"),
        ("code", f"commit {res['code']['commit']}"
                 + (f", uncommitted changes in {', '.join(res['code']['changed'])}" if res["code"]["changed"] else "")),
        ("restore-bot peak RSS", f"{rss / 1024:.0f} MiB" if rss else "n/a"),
        ("plan peak RSS", f"{p['plan_peak_rss_kib'] / 1024:.0f} MiB" if p.get("plan_peak_rss_kib") else "n/a"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    print(f"restore-bot benchmark ({res['server_version']}, {res['when']})")
    print("-" * (width + 60))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * (width + 60))
    for name, part in (("anchor", a), ("restore-bot", r)):
        for prob in part["problems"]:
            print(f"{name} problem: {prob}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=30, help="sysbench workload length (default 30)")
    ap.add_argument("--threads", type=int, default=4, help="sysbench threads (default 4)")
    ap.add_argument("--tables", type=int, default=4, help="sysbench tables (default 4)")
    ap.add_argument("--table-size", type=int, default=10000, help="rows per table (default 10000)")
    ap.add_argument("--workdir", default=str(HERE / "work"),
                    help="where the dump and the binlog copy go (default bench/work; a run-* folder inside)")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (dump, binlogs, JSON, logs)")
    ap.add_argument("--profile", action="store_true",
                    help="afterwards, cProfile restore-bot plan and restore on the same data (not timed)")
    ap.add_argument("--plan-runs", type=int, default=3,
                    help="rounds of mariadb-binlog and restore-bot plan, the medians compared (default 3)")
    ap.add_argument("--results", default=str(HERE / "results.json"), help="JSON output (default bench/results.json)")
    ap.add_argument("--undo", type=int, metavar="ROWS",
                    help="instead, the undo bench: a ROWS-row DELETE undone by restore-bot undo against mariadb-binlog "
                         "--flashback | mariadb (bench/undo_flashback.py, which takes more options)")
    ap.add_argument("--fleet", action="store_true",
                    help="instead, alert latency with three watched clusters under load against one "
                         "(bench/fleet_latency.py with its defaults; run it directly for its options)")
    args = ap.parse_args(argv)
    if args.fleet:
        from fleet_latency import main as fleet_main
        return fleet_main([])
    if args.undo:
        from undo_flashback import main as undo_main
        return undo_main(["--rows", str(args.undo)])

    for tool, pkg in (("sysbench", "sysbench"), ("mariadb", "mariadb-client"), ("mariadb-dump", "mariadb-client"),
                      ("mariadb-binlog", "mariadb-client")):
        need(tool, pkg)

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    code, load_before = code_state(), os.getloadavg()[0]
    log(f"work folder {run_dir}")
    try:
        inc = build_incident(args, run_dir)
        b = inc["binlog"]
        log(f"binlog range {fmt_bytes(b['bytes_range'])}: {b['transactions']} transactions, {b['row_events']} row events")
        anchor = run_anchor(inc, run_dir)
        warm_up(inc, run_dir)
        bot = run_restore_bot(inc, run_dir)
        plan = run_plan_speed(inc, run_dir, args.plan_runs)
        res = {
            "when": _dt.datetime.now().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "loadavg_1min_before": round(load_before, 2),
                        "loadavg_1min_after": round(os.getloadavg()[0], 2)},
            "code": code,
            "server_version": inc["server_version"],
            "params": {"seconds": args.seconds, "threads": args.threads, "tables": args.tables,
                       "table_size": args.table_size},
            "sysbench_transactions": inc["sysbench_transactions"],
            "start": f"{inc['start'][0]}:{inc['start'][1]}", "stop": f"{inc['stop'][0]}:{inc['stop'][1]}",
            "binlog": b,
            "before": inc["before"],
            "anchor": anchor,
            "restore_bot": bot,
            "restore_ratio": round(bot["seconds"] / anchor["seconds"], 3) if anchor["seconds"] else None,
            "plan": plan,
            "goals": {"restore_ratio": GOAL_RESTORE, "plan_ratio": GOAL_PLAN},
        }
        res["goals_met"] = {
            "restore_ratio": res["restore_ratio"] is not None and res["restore_ratio"] <= GOAL_RESTORE,
            "plan_ratio": plan["ratio"] is not None and plan["ratio"] <= GOAL_PLAN,
        }
        print_table(res)
        Path(args.results).write_text(json.dumps(res, indent=2, default=str) + "\n")
        log(f"figures written to {args.results}")
        if args.profile:
            run_profiles(inc, run_dir)
        ok = anchor["exact"] and bot["exact"] and bot["plan_stop_ok"]
        return 0 if ok else 1
    except BenchError as exc:
        print(f"run_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
