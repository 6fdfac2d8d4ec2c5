#!/usr/bin/env python3
"""restore-bot benchmark: alert latency of the watcher under sustained write load (issue 4, "Latency").

One run:

  1. a source `Sandbox(binlog=True, binlog_format=ROW)`, a local `FakeSlack`; `sysbench oltp_write_only
     prepare` (4 tables x 10000 rows in `sbtest`) and a separate database `victim`;
  2. `sysbench oltp_write_only run --threads=4` in the background for the whole run; its rate is taken
     from the server's `Com_commit` counter: a few seconds *before* the watcher starts (baseline), with
     the watcher running, and over the measurement window (the load held while alerts were measured).
     The source runs with innodb_flush_log_at_trx_commit=2 (--no-relaxed-flush to turn off): on the
     2-CPU machine this was written on, the defaults give ~3,000 tx/s to sysbench alone but only
     ~2,000 once the watcher shares the CPUs; with it, ~3,000 tx/s are held while measuring;
  3. the watcher (databases=("victim",): only victim events alert, but it reads and skips every
     sysbench event in between) and an `AlertPoster` to the fake Slack, as `serve` runs them: the
     watcher in a child process (`bot.watch.WatcherProcess`), its alerts posted by the thread reading
     its pipe (--threaded: the watcher on a thread of this process, the poster on its own thread);
  4. N destructive statements of each kind, interleaved (DROP TABLE, TRUNCATE, DROP DATABASE, mass
     DELETE and mass UPDATE as row events): the victim object is created first (not timed), the
     statement runs with autocommit, `t_commit = time.time()` right after `execute()` returns, then we
     wait for the fake Slack to receive the alert that names this iteration's unique object (or its GTID);
     latency = arrival time at the fake Slack - t_commit. "Arrival" is the kernel's receive timestamp
     on the fake's socket (SO_TIMESTAMPNS, Linux): the moment the request reached "Slack". The fake
     is a Python thread on the same 2 busy CPUs and may read it later; Slack runs on machines of its
     own, so that wait is reported separately ("arrival -> fake reads it"), not counted.
  5. after a grace period every alert is counted once more: each statement must have exactly one
     alert (none missed, none duplicated), and no alert may name `sbtest`.

Prints per-kind and overall p50/p95/p99/max (ms), a breakdown of where the time went (watcher:
commit -> detected; poster: detected -> arrival), the load held, missed/duplicate counts, and for
diagnosis: CPU of the watcher thread, mariadbd, sysbench and the whole machine, how long the watcher
thread waited for a CPU, how much binlog it had not read yet at each commit (its backlog), SQLite
time on the watcher/poster threads, and each pipeline layer's speed re-reading the run's binlog
with the load stopped (--profile: cProfile of the watcher and poster threads instead). Writes
bench/alert_latency.json; exits 1 when an alert was missed or duplicated or sysbench traffic alerted,
2 when a prerequisite is missing. Goal: p50 <= 20 ms, p99 <= 50 ms; hard requirement p99 <= 1 s.

    . .venv/bin/activate && python bench/alert_latency.py [--events-per-kind 50] [--threads 4] ...
"""
from __future__ import annotations

import argparse
import json
import os
import logging
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bot.alert_client import AlertSlackClient  # noqa: E402

from handlers.alerts import AlertStore, Oncall  # noqa: E402
from bot.watch import WatcherProcess  # noqa: E402
from tests.support.fake_slack import FakeSlack  # noqa: E402
from restore.plan.destructive import DestructiveRules  # noqa: E402
from restore.mysql.leftovers import OwnedDir  # noqa: E402
from restore.mysql.sandbox import Sandbox  # noqa: E402
from restore.live.watcher import Watcher  # noqa: E402

# The bench's own modules, beside this file (the script's folder is first on sys.path).
from latency_capacity import capacity  # noqa: E402
from latency_load import PREFIX, SB_DB, VICTIM, com_commit, prepare_victim  # noqa: E402
from latency_probes import (Profiled, Tap, machine_busy, proc_cpu, proc_sched_wait, profile_text,  # noqa: E402
                            queued_bytes, sched_wait, thread_cpu)
from latency_report import KINDS, print_report, stats_ms, summarize  # noqa: E402
from latency_slack import TimedPoster, alert_re, is_alert, oncall_settings, token_re  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# -- the run ---------------------------------------------------------------------------------
def run(args) -> dict:
    res: dict = {"params": {"events_per_kind": args.events_per_kind, "threads": args.threads, "format": args.format,
                            "tables": args.tables, "table_size": args.table_size, "victim_rows": args.victim_rows,
                            "relaxed_flush": args.relaxed_flush, "profile": args.profile, "pause": args.pause,
                            "seconds_cap": args.seconds_cap, "watcher_nice": args.watcher_nice, "pin": args.pin,
                            "threaded": args.threaded},
                 "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}}
    extra = ["--innodb-flush-log-at-trx-commit=2"] if args.relaxed_flush else []
    owned = OwnedDir("restore-bot-bench")   # the next restore-bot start removes it if this bench is killed
    workdir = owned.path
    sb_proc: subprocess.Popen | None = None
    sb_out = None
    watcher = poster = wthread = None
    try:
        with Sandbox(binlog=True, binlog_format=args.format, extra_args=extra) as src, FakeSlack() as slack:
            log(f"source up ({args.format}{', innodb_flush_log_at_trx_commit=2' if extra else ''}) at {src.socket}; "
                f"fake Slack at {slack.api_url}")
            conn = src.connect()
            cur = conn.cursor()
            cur.execute("SELECT VERSION(), @@sync_binlog, @@innodb_flush_log_at_trx_commit, @@binlog_annotate_row_events")
            version, sync_binlog, flush, annotate = cur.fetchone()
            res["server"] = {"version": version, "sync_binlog": int(sync_binlog),
                             "innodb_flush_log_at_trx_commit": int(flush), "binlog_annotate_row_events": int(annotate)}
            cur.execute(f"CREATE DATABASE {SB_DB}")
            if args.pin:
                # experiment: the source and the load on the first CPU, the bench (watcher) on the rest --
                # as if the watcher ran on a host of its own; threads made later inherit the mask
                for tid in os.listdir(f"/proc/{src.proc.pid}/task"):
                    os.sched_setaffinity(int(tid), {0})
                for tid in os.listdir("/proc/self/task"):
                    os.sched_setaffinity(int(tid), set(range(1, os.cpu_count() or 2)))
            sb_common = (["taskset", "-c", "0"] if args.pin else []) + ["sysbench", "oltp_write_only", "--db-driver=mysql", "--mysql-user=root",
                         f"--mysql-socket={src.socket}", f"--mysql-db={SB_DB}", f"--tables={args.tables}",
                         f"--table-size={args.table_size}"]
            log(f"sysbench prepare: {args.tables} tables x {args.table_size} rows")
            out = subprocess.run(sb_common + ["prepare"], capture_output=True, text=True)
            if out.returncode != 0:
                raise BenchError(f"sysbench prepare failed: {out.stderr.strip()[-1500:]}")
            cur.execute(f"CREATE DATABASE {VICTIM}")

            # -- load, and its rate before the watcher exists --------------------------------------
            if args.threads > 0:
                sb_out = open(workdir / "sysbench.out", "w+")
                sb_proc = subprocess.Popen(sb_common + [f"--threads={args.threads}",
                                                        f"--time={int(args.seconds_cap) + 60}",
                                                        "--report-interval=0", "run"],
                                           stdout=sb_out, stderr=subprocess.STDOUT, start_new_session=True)
                time.sleep(1.0)
            c0, t0 = com_commit(cur), time.monotonic()
            time.sleep(args.baseline_seconds)
            c1, t1 = com_commit(cur), time.monotonic()
            res["load_baseline_tps"] = (c1 - c0) / (t1 - t0)
            log(f"sysbench {args.threads} threads: {res['load_baseline_tps']:.0f} tx/s before the watcher starts")
            if sb_proc is not None and sb_proc.poll() is not None:
                sb_out.seek(0)
                raise BenchError(f"sysbench run exited early: {sb_out.read()[-1500:]}")

            # -- watcher + poster, as `serve` runs them -------------------------------------------
            store = AlertStore(str(workdir / "alerts.sqlite3"), src.url)
            store.set_oncall("UKIM")
            sqlite_times: dict[str, list[float]] = {"save": [], "claim": []}
            for name in sqlite_times:  # how long the alert path's threads block in SQLite
                def timed(*a, _real=getattr(store, name), _into=sqlite_times[name]):
                    t = time.perf_counter()
                    try:
                        return _real(*a)
                    finally:
                        _into.append(time.perf_counter() - t)
                setattr(store, name, timed)
            client = AlertSlackClient("xoxb-bench", slack.api_url)  # as `serve` builds the alert path
            handed: dict[str, float] = {}
            alerts_seen: list = []
            poster = TimedPoster(client, "CINC", store, Oncall(oncall_settings(), store), src.url, escalate_after=0)
            pthread = Profiled(poster._loop, "alerts", args.profile)
            poster._thread = pthread  # same loop, optionally under cProfile
            poster.start()

            def on_alert(alert) -> None:
                handed[alert.key] = time.time()
                alerts_seen.append(alert)
                if args.threaded:
                    poster(alert)  # to the poster's own thread
                else:
                    poster.post(alert)  # as `serve` does: the thread reading the watcher's pipe posts

            if args.threaded:  # the watcher on a thread of this process (diagnosis: backlog, profile)
                tap = Tap() if args.tap else None
                watcher = Watcher(src.dsn, store, on_alert, databases=(VICTIM,), rules=DestructiveRules())
                wthread = Profiled(watcher.run_forever, "watcher", args.profile)
            else:  # as `serve` runs it: a child process, alerts over a pipe to a thread here
                tap = None
                watcher = WatcherProcess(src.dsn, store, on_alert, databases=(VICTIM,),
                                         rules=DestructiveRules(), nice=args.watcher_nice)  # [watch] nice
                wthread = threading.Thread(target=watcher.run_forever, name="watcher-pipe", daemon=True)
            wthread.start()
            while (wthread.native_id if args.threaded else getattr(watcher.proc, "pid", None)) is None:
                time.sleep(0.01)
            post_thread = pthread if args.threaded else wthread  # the thread that makes the HTTP call

            def watcher_cpu() -> float | None:
                return thread_cpu(wthread.native_id) if args.threaded else proc_cpu(watcher.proc.pid)

            def watcher_wait() -> float | None:
                return sched_wait(wthread.native_id) if args.threaded else proc_sched_wait(watcher.proc.pid)
            if args.watcher_nice and args.threaded:  # (the watcher process sets its own, as `serve` does)
                for tid in (wthread.native_id, post_thread.native_id):
                    os.setpriority(os.PRIO_PROCESS, tid, args.watcher_nice)
            deadline = time.monotonic() + 15
            while store.load() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if store.load() is None:
                raise BenchError("the watcher never recorded a start position")
            watch_start = store.load()
            w_c0, w_t0 = com_commit(cur), time.monotonic()
            # the warm-up doubles as the floor of the last leg: plain chat.postMessage calls (not alerts)
            # from the poster's client to the fake Slack, under the same load, with the watcher running
            floor: list[float] = []
            while time.monotonic() - w_t0 < args.warmup_seconds:
                time.sleep(random.uniform(0, 2 * args.pause))
                since = slack.mark()
                t0 = time.time()
                client.chat_postMessage(channel="CFLOOR", text=f"floor {len(floor)}")
                call = slack.snapshot()[since]
                floor.append((call.wire_at or call.at) - t0)
            res["http_floor"] = stats_ms(floor)
            res["load_watching_tps"] = (com_commit(cur) - w_c0) / (time.monotonic() - w_t0)
            log(f"{res['load_watching_tps']:.0f} tx/s with the watcher following the stream (no victim statements yet)")

            # -- the measurement --------------------------------------------------------------------
            n = args.events_per_kind
            plan = [(kind, i) for i in range(n) for kind in KINDS]  # interleaved: drift hits all kinds alike
            events: list[dict] = []
            cpu0 = {"watcher": watcher_cpu(), "poster": thread_cpu(post_thread.native_id),
                    "process": time.process_time(), "watcher_runqueue": watcher_wait(),
                    "mariadbd": proc_cpu(src.proc.pid if src.proc else None), "sysbench": proc_cpu(sb_proc.pid if sb_proc else None)}
            busy0 = machine_busy()
            m_c0, m_t0 = com_commit(cur), time.monotonic()
            start = time.monotonic()
            stopped_early = None
            for done, (kind, i) in enumerate(plan):
                if time.monotonic() - start > args.seconds_cap:
                    stopped_early = f"--seconds-cap {args.seconds_cap} reached after {done} of {len(plan)} statements"
                    log(stopped_early)
                    break
                if args.pause > 0:  # land the statements at random moments of the stream, not in lockstep
                    time.sleep(random.uniform(0, 2 * args.pause))
                token = f"{PREFIX[kind]}_{i:04d}"
                stmt = prepare_victim(cur, kind, token, args.victim_rows, args.format)
                since = slack.mark()
                t_before = time.time()
                cur.execute(stmt)
                t_commit = time.time()
                ev = {"kind": kind, "token": token, "statement": stmt, "t_before": t_before, "t_commit": t_commit}
                if tap is not None:
                    ev["reader_at_commit"] = tap.where
                    ev["socket_queued_bytes"] = queued_bytes(watcher)
                cur.execute("SELECT @@last_gtid")   # after the timing: what finds a masked alert (alert_re)
                ev["gtid"] = cur.fetchone()[0] or None
                pat = alert_re(token, ev["gtid"])
                events.append(ev)
                try:
                    slack.wait_for(lambda calls: [c for c in calls[since:] if is_alert(c) and pat.search(c.text)],
                                   timeout=max(0.1, min(args.wait_seconds, args.seconds_cap - (time.monotonic() - start) + 5)),
                                   what=f"the alert for {token}")
                except AssertionError:
                    log(f"no alert for {token} within {args.wait_seconds} s (counted again at the end)")
                if (done + 1) % 25 == 0:
                    log(f"{done + 1}/{len(plan)} statements")
            m_c1, m_t1 = com_commit(cur), time.monotonic()
            cpu1 = {"watcher": watcher_cpu(), "poster": thread_cpu(post_thread.native_id),
                    "process": time.process_time(), "watcher_runqueue": watcher_wait(),
                    "mariadbd": proc_cpu(src.proc.pid if src.proc else None), "sysbench": proc_cpu(sb_proc.pid if sb_proc else None)}
            busy1 = machine_busy()
            total = max(1, busy1[2] - busy0[2])
            res["machine_busy"] = (busy1[0] - busy0[0]) / total  # share of all CPUs
            res["machine_steal"] = (busy1[1] - busy0[1]) / total
            res["load_average_during"] = os.getloadavg()[0]
            on = {"save": "watcher thread", "claim": "poster thread"} if args.threaded else \
                {"save": "pipe thread, for the watcher process", "claim": "pipe thread"}
            res["sqlite_ms"] = {f"{name} ({on[name]})": stats_ms(v) for name, v in sqlite_times.items()}
            window = m_t1 - m_t0
            res["measurement_seconds"] = window
            res["load_tps"] = (m_c1 - m_c0) / window
            res["cpu_share"] = {k: (cpu1[k] - cpu0[k]) / window if cpu0[k] is not None and cpu1[k] is not None else None
                                for k in cpu0}
            res["stopped_early"] = stopped_early
            log(f"measured {len(events)} statements in {window:.1f} s under {res['load_tps']:.0f} tx/s; "
                f"grace {args.grace_seconds} s for late or duplicate alerts")
            pats = [alert_re(ev["token"], ev.get("gtid")) for ev in events]
            try:  # a late alert is late, not missed: give the stragglers --wait-seconds more
                slack.wait_for(lambda calls: all(any(is_alert(c) and p.search(c.text) for c in calls) for p in pats),
                               timeout=args.wait_seconds, what="every alert")
            except AssertionError:
                log(f"some alerts still missing {args.wait_seconds} s after the last statement")
            time.sleep(args.grace_seconds)

            # -- count every alert once more -------------------------------------------------------
            calls = [c for c in slack.snapshot() if is_alert(c)]
            missed, dups = [], []
            for ev in events:
                pat = alert_re(ev["token"], ev.get("gtid"))
                got = [c for c in calls if pat.search(c.text)]
                ev["alerts"] = len(got)
                if got:
                    arrived = got[0].wire_at or got[0].at  # at the fake's socket (kernel stamp), else its thread
                    ev["latency"] = arrived - ev["t_commit"]
                    ev["latency_from_start"] = arrived - ev["t_before"]
                    ev["arrived"], ev["handled"] = arrived, got[0].at
                if not got:
                    missed.append(ev["token"])
                elif len(got) > 1:
                    dups.append(ev["token"])
            by_token = {ev["token"]: ev for ev in events}
            for alert in alerts_seen:
                tok = next((t for t in by_token if token_re(t).search(f"{alert.table or ''} {alert.statement}")), None)
                if tok and "detected" not in by_token[tok]:
                    ev = by_token[tok]
                    ev["key"], ev["detected"], ev["handed"] = alert.key, alert.detected_at, handed.get(alert.key)
                    at = ev.get("reader_at_commit")
                    if at and at[0] == alert.file:  # bytes the watcher still had to read when it committed
                        ev["backlog_bytes"] = max(0, alert.pos - at[1])
                    ev["reason"] = alert.reason
                    ev.update(poster.marks.get(alert.key, {}))
            sbtest_alerts = [c.text[:300] for c in calls if SB_DB in c.text]
            unmatched = [c.text[:300] for c in calls
                         if not any(alert_re(t, ev.get("gtid")).search(c.text) for t, ev in by_token.items())]
            res.update(total_statements=len(events), total_alerts=len(calls), missed=missed, duplicated=dups,
                       sbtest_alerts=sbtest_alerts, unmatched_alerts=unmatched, events=events)
            res["watcher_alive"] = wthread.is_alive()

            # -- stop --------------------------------------------------------------------------------
            if tap is not None:
                tap.close()
            for name in ("restore-bot.watch", "restore-bot.follow"):  # "stream broke" is our own stop()
                logging.getLogger(name).setLevel(logging.ERROR)
            if sb_proc is not None:
                os.killpg(sb_proc.pid, signal.SIGTERM)
                sb_proc.wait(timeout=20)
            watcher.stop()
            poster.stop()
            watcher = poster = None  # (AlertPoster.stop() raises when called twice)
            wthread.join(timeout=5)
            pthread.join(timeout=5)
            if args.profile:
                res["profile"] = {name: profile_text(th.profile, args.profile_top)
                                  for name, th in (("watcher", wthread), ("poster", pthread))}
            if args.capacity_seconds > 0:
                log(f"decode capacity: re-reading the run's binlog from {watch_start[0]}:{watch_start[1]}, "
                    f"load stopped, {args.capacity_seconds} s per layer")
                res["capacity"] = capacity(src, watch_start, args.capacity_seconds)
            cur.close()
            conn.close()
    finally:
        if sb_proc is not None and sb_proc.poll() is None:
            try:
                os.killpg(sb_proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            sb_proc.wait()
        if sb_out is not None:
            sb_out.close()
        for stop in (watcher.stop if watcher else None, poster.stop if poster else None):
            try:  # a failing stop must not keep the rest from being cleaned up
                if stop is not None:
                    stop()
            except Exception as exc:
                log(f"cleanup: {exc!r}")
        owned.remove()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events-per-kind", type=int, default=50, help="destructive statements of each kind (default 50)")
    ap.add_argument("--threads", type=int, default=4, help="sysbench threads (default 4; 0: no load, the floor)")
    ap.add_argument("--format", default="ROW", choices=["ROW", "MIXED", "STATEMENT"], help="binlog_format (default ROW)")
    ap.add_argument("--seconds-cap", type=float, default=600.0,
                    help="stop issuing statements after this many seconds of measurement (default 600); "
                         "a capped run exits 1")
    ap.add_argument("--tables", type=int, default=4, help="sysbench tables (default 4)")
    ap.add_argument("--table-size", type=int, default=10000, help="sysbench rows per table (default 10000)")
    ap.add_argument("--victim-rows", type=int, default=200, help="rows of each mass DELETE/UPDATE victim (default 200)")
    ap.add_argument("--relaxed-flush", action=argparse.BooleanOptionalAction, default=True,
                    help="start the source with --innodb-flush-log-at-trx-commit=2 (default: on). Needed here: "
                         "sysbench alone makes ~3,000 tx/s with the defaults, but only ~2,000 once the watcher "
                         "shares the 2 CPUs; with it, ~3,000 tx/s are held during the measurement")
    ap.add_argument("--baseline-seconds", type=float, default=4.0, help="load measured before the watcher starts")
    ap.add_argument("--warmup-seconds", type=float, default=8.0,
                    help="watcher running under load before the first event; meanwhile plain chat.postMessage "
                         "calls measure the floor of the HTTP leg (default 8)")
    ap.add_argument("--pause", type=float, default=0.05,
                    help="mean pause between statements, uniform in [0, 2*pause] s (default 0.05)")
    ap.add_argument("--wait-seconds", type=float, default=10.0, help="wait for each alert at most this long")
    ap.add_argument("--grace-seconds", type=float, default=3.0, help="after the last event, wait for late/duplicate alerts")
    ap.add_argument("--profile", action="store_true",
                    help="run the watcher and poster threads under cProfile and print their top functions "
                         "(slows them down: use for where-the-time-goes, not for the figures; implies --threaded)")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--pin", action="store_true",
                    help="experiment: pin mariadbd and sysbench to CPU 0 and this process (watcher, poster, fake "
                         "Slack) to the other CPUs, as if the watcher had a host of its own")
    ap.add_argument("--threaded", action="store_true",
                    help="run the watcher on a thread of the bench process (as before 2026-11-24) instead of in its "
                         "own process as `serve` runs it; needed for --tap and --profile of the watcher")
    ap.add_argument("--tap", action=argparse.BooleanOptionalAction, default=True,
                    help="note the watcher reader's position at each commit, to report its backlog (with --threaded; default on; "
                         "one attribute store per event)")
    ap.add_argument("--watcher-nice", type=int, default=0,
                    help="[watch] nice for the watcher process and the alert-posting thread (e.g. -10; needs root "
                         "or CAP_SYS_NICE): how much of the tail is waiting for a CPU")
    ap.add_argument("--capacity-seconds", type=float, default=3.0,
                    help="afterwards, with the load stopped, time each layer of the watcher's pipeline on the "
                         "run's binlog for this long (0: skip)")
    ap.add_argument("--json", default=str(HERE / "alert_latency.json"), help="where to write the results")
    args = ap.parse_args()
    args.threaded = args.threaded or args.profile

    if not shutil.which("sysbench"):
        print("alert_latency: sysbench is not on PATH. apt-get install -y sysbench", file=sys.stderr)
        return 2
    try:
        res = run(args)
    except BenchError as exc:
        print(f"alert_latency: {exc}", file=sys.stderr)
        return 2
    summarize(res)
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    print_report(res)
    print(f"\nwrote {args.json}")
    return 0 if res["verdict"]["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
