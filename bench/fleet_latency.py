#!/usr/bin/env python3
"""restore-bot benchmark: alert latency with three watched clusters under write load at once (issue 14).

One run, three phases on the same servers and the same machine, one after the other:

  one     cluster `a` alone: its server under load, a `restore-bot serve` watching it alone;
  three   clusters `a`, `b`, `c`: the three servers under the same load per server at once, one
          `restore-bot serve` watching all three ([clusters.a], [clusters.b], [clusters.c]: one
          watcher process per cluster, supervised by serve);
  shared  as `three`, but `b` writes with `a`'s server_id (SET GLOBAL server_id before the load
          and the statements connect): two sources whose GTIDs and event headers look alike
          (--no-shared-id to skip).

The servers are `Sandbox(binlog=True, binlog_format=ROW)` (throwaway datadirs, random ports,
server_id 1, 2, 3, innodb_flush_log_at_trx_commit=2 as in alert_latency.py). The load is
`sysbench oltp_write_only` on each loaded server, throttled to the same --rate per server in every
phase (sysbench's --rate; 0: as fast as it goes), so that "one" and "three" put the same load on each
server and differ only by the number of loaded servers and watchers. The bot is the real `restore-bot
serve` (its worker too), a subprocess whose Slack is a local FakeSlack (SLACK_API_URL: faked at the
HTTP boundary, as in alert_latency.py). In each phase a thread per watched cluster issues
--events-per-kind statements of each kind of latency_report.KINDS at random moments (uniform pauses
of mean --pause s), the clusters' threads side by side; latency = the alert's chat.postMessage at the
fake's socket (kernel receive stamp) minus the moment the statement's execute() returned. Each
statement must get exactly one alert, in its own cluster's name (its unique object, or its GTID and
its server's port for a DROP DATABASE), none missed, none duplicated.

Prints per cluster and phase n/p50/p95/max, the load held per server, missed/duplicated, and the
ratios three/one and shared/one of p50, p95 and max (cluster a against itself, and all clusters
against a alone). Writes bench/fleet_latency.json; exits 1 when an alert was missed or duplicated,
2 when a prerequisite is missing.

    .venv/bin/python bench/fleet_latency.py [--rate 400] [--events-per-kind 6] [--no-shared-id]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from handlers.alerts import AlertStore  # noqa: E402
from restore.mysql.dsn import Dsn  # noqa: E402
from restore.mysql.leftovers import OwnedDir  # noqa: E402
from restore.mysql.sandbox import Sandbox  # noqa: E402
from tests.support.fake_slack import FakeSlack  # noqa: E402
from tests.support.fleet import fleet_config, serve_env, watcher_processes  # noqa: E402
from tests.support.slack_bot import Bot  # noqa: E402

# The latency bench's own parts, beside this file (the script's folder is first on sys.path).
from latency_load import PREFIX, SB_DB, VICTIM, com_commit, prepare_victim  # noqa: E402
from latency_probes import machine_busy, proc_cpu  # noqa: E402
from latency_report import KINDS, fmt, stats_ms  # noqa: E402
from latency_slack import alert_re, is_alert  # noqa: E402

NAMES = ("a", "b", "c")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


class Source:
    """One watched cluster's server, its sysbench data and its load."""

    def __init__(self, name: str, box: Sandbox, args) -> None:
        self.name, self.box, self.args = name, box, args
        self.source_text = f"mysql://root@127.0.0.1:{box.port}?unix_socket={box.socket}"
        self.source_key = Dsn.parse(self.source_text).redacted()   # the watch position's key in serve's store
        self.load: subprocess.Popen | None = None
        self._out = None

    def sysbench(self, *more: str) -> list[str]:
        return ["sysbench", "oltp_write_only", "--db-driver=mysql", "--mysql-user=root",
                f"--mysql-socket={self.box.socket}", f"--mysql-db={SB_DB}", f"--tables={self.args.tables}",
                f"--table-size={self.args.table_size}", *more]

    def prepare(self) -> None:
        with self.box.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {SB_DB}")
            cur.execute(f"CREATE DATABASE {VICTIM}")
        out = subprocess.run(self.sysbench("prepare"), capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchError(f"sysbench prepare on {self.name} failed: {out.stderr.strip()[-1500:]}")

    def start_load(self, workdir: Path) -> None:
        if self.args.threads <= 0:
            return
        self._out = open(workdir / f"sysbench-{self.name}.out", "w+")
        self.load = subprocess.Popen(self.sysbench(f"--threads={self.args.threads}", f"--rate={self.args.rate}",
                                                   "--time=3600", "--report-interval=0", "run"),
                                     stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def check_load(self) -> None:
        if self.load is not None and self.load.poll() is not None:
            self._out.seek(0)
            raise BenchError(f"sysbench on {self.name} exited early: {self._out.read()[-1500:]}")

    def stop_load(self) -> None:
        if self.load is not None:
            try:
                os.killpg(self.load.pid, signal.SIGTERM)
                self.load.wait(timeout=20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.load.pid, signal.SIGKILL)
                self.load.wait()
            self.load = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def commits(self) -> int:
        with self.box.connect() as conn, conn.cursor() as cur:
            return com_commit(cur)


def watcher_pids(bot: Bot) -> list[int]:
    return [p.pid for p in watcher_processes(bot.proc.pid)]


def issue_statements(src: Source, phase: str, plan: list[tuple[str, int]], pause: float, rows: int,
                     into: list[dict], errors: list[str]) -> None:
    """One cluster's statements, each at a random moment; what each one is and when it committed."""
    try:
        with src.box.connect(autocommit=True) as conn, conn.cursor() as cur:
            for kind, i in plan:
                time.sleep(random.uniform(0, 2 * pause))
                token = f"{phase[0]}{src.name}_{PREFIX[kind]}_{i:04d}"   # unique in the run: o/t/s + cluster
                stmt = prepare_victim(cur, kind, token, rows, "ROW")
                t_before = time.time()
                cur.execute(stmt)
                t_commit = time.time()
                cur.execute("SELECT @@last_gtid")   # after the timing: finds the DROP DATABASE's alert
                gtid = cur.fetchone()[0] or None
                into.append({"cluster": src.name, "source": src.source_key, "port": src.box.port, "kind": kind, "token": token,
                             "gtid": gtid, "t_before": t_before, "t_commit": t_commit})
    except Exception as exc:  # the phase reports it; the other clusters' threads go on
        errors.append(f"{src.name}: {type(exc).__name__}: {exc}")


def catch_up(sources: list[Source], phase: str, slack: FakeSlack, started: float) -> dict:
    """A probe statement per cluster, alerted before anything is timed: a new watcher process starts
    at the position its parent took when serve started, and reads the binlog written meanwhile (its
    spawn and imports took seconds on a busy machine) before it is live. Returns per cluster the
    probe's latency and the seconds from serve's start to its alert: the alert delay after a start."""
    out = {}
    for s in sources:
        token = f"{phase[0]}{s.name}_probe"
        with s.box.connect(autocommit=True) as conn, conn.cursor() as cur:
            stmt = prepare_victim(cur, "DROP TABLE", token, 10, "ROW")
            since = slack.mark()
            cur.execute(stmt)
            t_commit, m_commit = time.time(), time.monotonic()
        ev = {"token": token, "gtid": None, "port": s.box.port}
        try:
            calls = slack.wait_for(lambda cs: [c for c in cs[since:] if is_alert(c) and _names_event(c, ev)],
                                   timeout=120, what=f"the alert for {token}")
        except AssertionError as exc:
            raise BenchError(f"{phase}: the watcher of {s.name} never alerted a probe: {exc}") from exc
        arrived = calls[0].wire_at or calls[0].at
        out[s.name] = {"probe_latency": arrived - t_commit,
                       "serve_start_to_alert": m_commit + (arrived - t_commit) - started}
    return out


def _names_event(call, ev: dict) -> bool:
    # A GTID can repeat across clusters (the `shared` phase): the alert names its source, with the port.
    return bool(alert_re(ev["token"], ev["gtid"]).search(call.text)) and f"127.0.0.1:{ev['port']}" in call.text


def run_phase(phase: str, sources: list[Source], args, slack: FakeSlack, workdir: Path, tmpdir: str) -> dict:
    """One serve watching `sources`, all of them under load; the statements; every alert counted."""
    pdir = workdir / phase
    pdir.mkdir()
    res: dict = {"clusters": [s.name for s in sources], "server_ids": {}}
    for s in sources:
        with s.box.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@global.server_id")
            res["server_ids"][s.name] = int(cur.fetchone()[0])
    bot = None
    try:
        for s in sources:
            s.start_load(pdir)
        time.sleep(1.0)
        c0, t0 = {s.name: s.commits() for s in sources}, time.monotonic()
        time.sleep(args.baseline_seconds)
        res["load_before_serve_tps"] = {s.name: (s.commits() - c0[s.name]) / (time.monotonic() - t0) for s in sources}
        for s in sources:
            s.check_load()

        # one [clusters.NAME] per source, each watching `victim` (sysbench's traffic is read and skipped)
        config = fleet_config(pdir / "restore-bot.toml", {s.name: s.source_text for s in sources}, [VICTIM])
        bot = Bot(config, serve_env(slack.api_url, tmpdir), pdir / "serve.log", tmpdir)
        started = time.monotonic()
        bot.start(timeout=60)
        positions = {s.name: AlertStore(str(pdir / "store.sqlite3"), s.source_key, cluster=s.name) for s in sources}
        deadline = time.monotonic() + 30
        while any(p.load() is None for p in positions.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if waiting := [n for n, p in positions.items() if p.load() is None]:
            raise BenchError(f"{phase}: serve's watcher of {', '.join(waiting)} never recorded a start position; "
                             f"serve's log ends with:\n{bot.log_tail(3000)}")
        res["serve_ready_seconds"] = time.monotonic() - started
        res["catch_up"] = catch_up(sources, phase, slack, started)
        time.sleep(args.warmup_seconds)
        res["watcher_processes"] = len(watcher_pids(bot))   # (each starts after its position is taken)

        # -- the measurement: a thread per cluster, side by side ----------------------------------
        plans = {s.name: [(kind, i) for i in range(args.events_per_kind) for kind in KINDS] for s in sources}
        for plan in plans.values():
            random.shuffle(plan)
        events: dict[str, list[dict]] = {s.name: [] for s in sources}
        errors: list[str] = []
        since = slack.mark()
        pids = [bot.proc.pid, *watcher_pids(bot)]
        cpu0 = {pid: proc_cpu(pid) for pid in pids}
        mariadbd0 = {s.name: proc_cpu(s.box.proc.pid) for s in sources}
        busy0 = machine_busy()
        c0, t0 = {s.name: s.commits() for s in sources}, time.monotonic()
        threads = [threading.Thread(target=issue_statements, args=(s, phase, plans[s.name], args.pause, args.victim_rows,
                                                                   events[s.name], errors), name=f"stmts-{s.name}")
                   for s in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        window = time.monotonic() - t0
        res["load_tps"] = {s.name: (s.commits() - c0[s.name]) / window for s in sources}
        busy1 = machine_busy()
        res["measurement_seconds"] = window
        res["machine_busy"] = (busy1[0] - busy0[0]) / max(1, busy1[2] - busy0[2])
        res["cpu_share"] = {
            "serve": _share(cpu0.get(bot.proc.pid), proc_cpu(bot.proc.pid), window),
            "watchers": sum(_share(cpu0[p], proc_cpu(p), window) or 0.0 for p in pids[1:]),
            "mariadbd": {s.name: _share(mariadbd0[s.name], proc_cpu(s.box.proc.pid), window) for s in sources}}
        res["load_average"] = os.getloadavg()[0]
        res["errors"] = errors
        every = [ev for evs in events.values() for ev in evs]
        log(f"{phase}: {len(every)} statements on {len(sources)} cluster(s) in {window:.1f} s at "
            + ", ".join(f"{n} {v:.0f}" for n, v in res["load_tps"].items()) + " tx/s")
        try:  # a late alert is late, not missed
            slack.wait_for(lambda calls: all(any(is_alert(c) and _names_event(c, ev) for c in calls[since:])
                                             for ev in every), timeout=args.wait_seconds, what="every alert")
        except AssertionError:
            log(f"{phase}: some alerts still missing {args.wait_seconds} s after the last statement")
        time.sleep(args.grace_seconds)
        res["watcher_processes_at_end"] = len(watcher_pids(bot))

        # -- count every alert -----------------------------------------------------------------------
        calls = [c for c in slack.snapshot()[since:] if is_alert(c)]
        for ev in every:
            got = [c for c in calls if _names_event(c, ev)]
            ev["alerts"] = len(got)
            if got:
                ev["latency"] = (got[0].wire_at or got[0].at) - ev["t_commit"]
                ev["latency_from_start"] = ev["latency"] + ev["t_commit"] - ev["t_before"]
        stages = _store_stages(pdir / "store.sqlite3", every)
        res["breakdown"] = {k: stats_ms(v) for k, v in stages.items()}
        res["per_cluster"] = {name: _figures(evs) for name, evs in events.items()}
        res["overall"] = _figures(every)
        res["unmatched_alerts"] = [c.text[:300] for c in calls if not any(_names_event(c, ev) for ev in every)]
        res["sbtest_alerts"] = [c.text[:300] for c in calls if SB_DB in c.text]
        res["troubles"] = [c.text[:300] for c in slack.snapshot()[since:]
                           if c.method == "chat.postMessage" and c.text.startswith("⚠️")]
        res["events"] = every
        return res
    finally:
        if bot is not None:
            bot.stop()
            bot.sweep()
        for s in sources:
            s.stop_load()


def _store_stages(store: Path, events: list[dict]) -> dict[str, list[float]]:
    """Where the time went, from serve's alert store: each alert's detection time (its body) and when
    its poster claimed it (`created`), matched to the statement by source and GTID."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT source, body, created FROM alerts").fetchall()
    seen = {}
    for source, body, created in rows:
        alert = json.loads(body)
        seen[(source, alert.get("gtid"))] = (alert["detected_at"], created)
    out: dict[str, list[float]] = {"commit -> watcher detected": [], "detected -> poster claimed": [],
                                   "claimed -> arrival": []}
    for ev in events:
        if (got := seen.get((ev["source"], ev["gtid"]))) and "latency" in ev:
            ev["detected"], ev["claimed"] = got
            out["commit -> watcher detected"].append(got[0] - ev["t_commit"])
            out["detected -> poster claimed"].append(got[1] - got[0])
            out["claimed -> arrival"].append(ev["t_commit"] + ev["latency"] - got[1])
    return out


def _share(before: float | None, after: float | None, window: float) -> float | None:
    return None if before is None or after is None else (after - before) / window


def _figures(evs: list[dict]) -> dict:
    out = stats_ms([e["latency"] for e in evs if "latency" in e])
    out["from_start"] = stats_ms([e["latency_from_start"] for e in evs if "latency_from_start" in e])
    out.update(statements=len(evs), missed=[e["token"] for e in evs if e["alerts"] == 0],
               duplicated=[e["token"] for e in evs if e["alerts"] > 1])
    return out


def ratios(res: dict) -> dict:
    """p50/p95/max of each later phase over phase `one` (cluster a alone)."""
    base = res["phases"]["one"]["per_cluster"]["a"]
    out = {}
    for phase in ("three", "shared"):
        if phase not in res["phases"]:
            continue
        p = res["phases"][phase]
        for who, fig in (("cluster a", p["per_cluster"]["a"]), ("all clusters", p["overall"])):
            for frm, f, b in (("from return", fig, base), ("from start", fig["from_start"], base["from_start"])):
                out[f"{phase}/one, {who}, {frm}"] = {k: (f[k] / b[k]) if f.get(k) and b.get(k) and b[k] > 0 else None
                                                    for k in ("p50", "p95", "max")}
    return out


def run(args) -> dict:
    res: dict = {"params": {k: getattr(args, k) for k in ("events_per_kind", "threads", "rate", "tables", "table_size",
                                                           "victim_rows", "pause", "shared_id")},
                 "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]},
                 "started": time.strftime("%Y-%m-%d %H:%M:%S"), "phases": {}}
    owned = OwnedDir("rbfleet")   # short (the bot's sandbox sockets may live below); removed if we are killed
    workdir = owned.path
    boxes = [Sandbox(binlog=True, binlog_format="ROW", server_id=i + 1, extra_args=["--innodb-flush-log-at-trx-commit=2"])
             for i in range(len(NAMES))]
    try:
        for box in boxes:   # one after the other: a start sweeps /tmp of dirs no live process holds
            box.start()
        sources = [Source(n, b, args) for n, b in zip(NAMES, boxes)]
        log("sources up: " + ", ".join(f"{s.name} :{s.box.port} server_id {i + 1}" for i, s in enumerate(sources))
            + f"; sysbench prepare {args.tables} x {args.table_size} rows on each")
        fails: list[BaseException] = []

        def prep(s: Source) -> None:
            try:
                s.prepare()
            except BaseException as exc:  # noqa: BLE001
                fails.append(exc)
        preps = [threading.Thread(target=prep, args=(s,)) for s in sources]
        for t in preps:
            t.start()
        for t in preps:
            t.join()
        if fails:
            raise BenchError(str(fails[0]))
        with FakeSlack() as slack:
            tmpdir = str(workdir)
            res["phases"]["one"] = run_phase("one", sources[:1], args, slack, workdir, tmpdir)
            res["phases"]["three"] = run_phase("three", sources, args, slack, workdir, tmpdir)
            if args.shared_id:
                with sources[1].box.connect() as conn, conn.cursor() as cur:
                    cur.execute("SET GLOBAL server_id = 1")   # a's: new sessions (load, statements) log with it
                res["phases"]["shared"] = run_phase("shared", sources, args, slack, workdir, tmpdir)
    finally:
        for b in boxes:
            try:
                b.stop()
            except Exception as exc:  # noqa: BLE001 (the others must still stop)
                log(f"cleanup: {exc!r}")
        if args.keep:   # out of /tmp: once we exit, the next restore-bot start sweeps our folder there
            kept = HERE / "work" / f"fleet-{time.strftime('%Y%m%d-%H%M%S')}"
            shutil.copytree(workdir, kept, ignore=shutil.ignore_patterns("*.sock", "sock"))
            log(f"kept {kept} (serve logs, configs, stores)")
        owned.remove()
    res["ratios"] = ratios(res)
    res["complete"] = all(not p["overall"]["missed"] and not p["overall"]["duplicated"] and not p["errors"]
                          and not p["sbtest_alerts"] for p in res["phases"].values())
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return res


def print_report(res: dict) -> None:
    p = res["params"]
    print()
    print(f"fleet alert latency, {res['finished']}: destructive statement commit -> chat.postMessage at the fake "
          f"Slack's socket; one `restore-bot serve` per phase, one watcher process per watched cluster")
    print(f"load per server: sysbench oltp_write_only {p['tables']}x{p['table_size']}, {p['threads']} threads, "
          f"--rate {p['rate']} tx/s; {p['events_per_kind']} statements of each of {len(KINDS)} kinds per cluster; "
          f"{res['machine']['cpus']} CPUs, load average {res['machine']['load_before']:.2f} before the run")
    print()
    print("latency in ms from the statement's execute() returning (as alert_latency.py; a DDL is in the binlog, and")
    print("may be alerted, before it returns: below 0) | and from the statement's start (an upper bound)")
    print(f"{'phase':<7} {'cluster':<8} {'server_id':>9} {'tx/s':>6} {'n':>4} {'p50':>8} {'p95':>8} "
          f"{'max':>8} | {'p50':>8} {'p95':>8} {'max':>8} {'missed':>6} {'dup':>4}")
    for phase, r in res["phases"].items():
        rows = [(n, r["per_cluster"][n]) for n in r["clusters"]] + ([("all", r["overall"])] if len(r["clusters"]) > 1 else [])
        for name, f in rows:
            sid = str(r["server_ids"].get(name, ""))
            tps = f"{r['load_tps'][name]:6.0f}" if name in r["load_tps"] else f"{sum(r['load_tps'].values()):6.0f}"
            s = f["from_start"]
            print(f"{phase:<7} {name:<8} {sid:>9} {tps} {f['statements']:>4} {fmt(f['p50'])} {fmt(f['p95'])} "
                  f"{fmt(f['max'])} | {fmt(s['p50'])} {fmt(s['p95'])} {fmt(s['max'])} "
                  f"{len(f['missed']):>6} {len(f['duplicated']):>4}")
        print("        after serve started, a probe statement per cluster (not timed above): alerted after "
              + ", ".join(f"{n} {1000 * v['probe_latency']:.0f} ms" for n, v in r["catch_up"].items())
              + f", the last {max(v['serve_start_to_alert'] for v in r['catch_up'].values()):.1f} s after serve started")
        for k, st in r.get("breakdown", {}).items():
            print(f"        {k:<28} p50 {fmt(st['p50'])} ms  p95 {fmt(st['p95'])} ms  max {fmt(st['max'])} ms")
        cpu = r["cpu_share"]
        share = lambda v: "-" if v is None else f"{100 * v:.0f} %"  # noqa: E731
        print(f"        CPU (100 % = a core): serve {share(cpu['serve'])}, its {r['watcher_processes']} watcher "
              f"process(es) {share(cpu['watchers'])}, mariadbd "
              + ", ".join(f"{n} {share(v)}" for n, v in cpu["mariadbd"].items())
              + f"; all CPUs {share(r['machine_busy'])} busy, load average {r['load_average']:.2f}"
              + (f"; ERRORS {r['errors']}" if r["errors"] else "")
              + (f"; trouble reports {len(r['troubles'])}" if r["troubles"] else ""))
    print()
    for name, rt in res["ratios"].items():
        print(f"ratio {name:<44} p50 {fmt(rt['p50'])}x  p95 {fmt(rt['p95'])}x  max {fmt(rt['max'])}x")
    print(f"\nevery statement alerted exactly once in every phase: {'yes' if res['complete'] else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events-per-kind", type=int, default=6,
                    help=f"destructive statements of each kind ({', '.join(KINDS)}) per cluster and phase (default 6)")
    ap.add_argument("--threads", type=int, default=2, help="sysbench threads per server (default 2; 0: no load)")
    ap.add_argument("--rate", type=int, default=400,
                    help="sysbench transactions/s per server, the same in every phase (default 400; 0: unthrottled, "
                         "then the per-server load differs between phases)")
    ap.add_argument("--tables", type=int, default=2, help="sysbench tables per server (default 2)")
    ap.add_argument("--table-size", type=int, default=10000, help="sysbench rows per table (default 10000)")
    ap.add_argument("--victim-rows", type=int, default=200, help="rows of each mass DELETE/UPDATE victim (default 200)")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="mean pause before each statement of a cluster, uniform in [0, 2*pause] s (default 0.3)")
    ap.add_argument("--baseline-seconds", type=float, default=2.0, help="load measured before serve starts")
    ap.add_argument("--warmup-seconds", type=float, default=2.0, help="serve watching under load before the statements")
    ap.add_argument("--wait-seconds", type=float, default=10.0, help="after the last statement, wait for missing alerts")
    ap.add_argument("--grace-seconds", type=float, default=2.0, help="then wait this long for duplicates")
    ap.add_argument("--shared-id", action=argparse.BooleanOptionalAction, default=True,
                    help="a third phase where b writes with a's server_id (default on)")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (serve logs, configs, stores)")
    ap.add_argument("--json", default=str(HERE / "fleet_latency.json"), help="where to write the results")
    args = ap.parse_args(argv)
    if not shutil.which("sysbench") and args.threads > 0:
        print("fleet_latency: sysbench is not on PATH. apt-get install -y sysbench", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        res = run(args)
    except BenchError as exc:
        print(f"fleet_latency: {exc}", file=sys.stderr)
        return 2
    res["wall_seconds"] = time.monotonic() - t0
    Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    print_report(res)
    print(f"\n{res['wall_seconds']:.0f} s; wrote {args.json}")
    return 0 if res["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
