"""The alert-latency benchmark's figures: percentiles, the per-kind summary and the printed report.

Kept apart from `alert_latency.py`, which runs the load, the watcher and the measurement.
"""
from __future__ import annotations

KINDS = ("DROP TABLE", "TRUNCATE", "DROP DATABASE", "mass DELETE", "mass UPDATE")
GOAL_P50_MS, GOAL_P99_MS, HARD_P99_MS = 20.0, 50.0, 1000.0


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def stats_ms(values_s: list[float]) -> dict:
    ms = [v * 1000.0 for v in values_s]
    return {"n": len(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "max": max(ms) if ms else None, "min": min(ms) if ms else None}


def summarize(res: dict) -> dict:
    ev = res["events"]
    summary = {}
    for kind in (*KINDS, "overall"):
        sel = [e for e in ev if kind == "overall" or e["kind"] == kind]
        s = stats_ms([e["latency"] for e in sel if "latency" in e])
        s["statements"] = len(sel)
        s["missed"] = sum(1 for e in sel if e["alerts"] == 0)
        s["duplicated"] = sum(1 for e in sel if e["alerts"] > 1)
        summary[kind] = s
    have = [e for e in ev if "detected" in e and "arrived" in e]
    parts = {
        "commit -> watcher detected": [e["detected"] - e["t_commit"] for e in have],
        "detected -> poster starts": [e["dequeued"] - e["detected"] for e in have if "dequeued" in e],
        "poster starts -> HTTP request": [e["http_start"] - e["dequeued"] for e in have if "http_start" in e],
        "HTTP request -> arrival": [e["arrived"] - e["http_start"] for e in have if "http_start" in e],
        "statement start -> arrival": [e["latency_from_start"] for e in ev if "latency_from_start" in e],
        "arrival -> fake reads it": [e["handled"] - e["arrived"] for e in have if "handled" in e],
    }
    backlog = [e["backlog_bytes"] for e in ev if "backlog_bytes" in e]
    if backlog:
        res["backlog_at_commit_kb"] = {"p50": percentile(backlog, 50) / 1024, "p99": percentile(backlog, 99) / 1024,
                                       "max": max(backlog) / 1024, "n": len(backlog)}
        res["backlog_vs_detect"] = [(e["backlog_bytes"], e.get("socket_queued_bytes"), e["detected"] - e["t_commit"])
                                    for e in ev if "backlog_bytes" in e and "detected" in e]
        queued = [e["socket_queued_bytes"] for e in ev if e.get("socket_queued_bytes") is not None]
        if queued:
            res["socket_queued_kb"] = {"p50": percentile(queued, 50) / 1024, "p99": percentile(queued, 99) / 1024,
                                       "max": max(queued) / 1024, "n": len(queued)}
    res["summary"] = summary
    # The stricter reading: up to when the fake's own thread read the request (on the same busy CPUs)
    res["overall_at_fake_thread"] = stats_ms([e["handled"] - e["t_commit"] for e in ev if "handled" in e])
    res["breakdown"] = {k: stats_ms(v) for k, v in parts.items()}
    o = summary["overall"]
    res["verdict"] = {
        "goal_p50": o["p50"] is not None and o["p50"] <= GOAL_P50_MS,
        "goal_p99": o["p99"] is not None and o["p99"] <= GOAL_P99_MS,
        "hard_p99": o["p99"] is not None and o["p99"] <= HARD_P99_MS,
        "complete": not res["missed"] and not res["duplicated"] and not res["sbtest_alerts"]
        and not res.get("stopped_early"),
    }
    return res


def fmt(v: float | None) -> str:
    return f"{'-':>8}" if v is None else f"{v:8.1f}"


def print_report(res: dict) -> None:
    p = res["params"]
    print()
    print(f"alert latency: destructive statement commit -> chat.postMessage at the fake Slack's socket "
          f"({p['format']}, mass-change detection on)")
    print(f"load: sysbench oltp_write_only {p['tables']}x{p['table_size']}, {p['threads']} threads: "
          f"{res['load_tps']:.0f} tx/s held during the {res['measurement_seconds']:.1f} s measurement "
          f"({res['load_baseline_tps']:.0f} tx/s before the watcher started, "
          f"{res['load_watching_tps']:.0f} tx/s with it running but no victim statements)")
    srv = res["server"]
    print(f"server: {srv['version']}, sync_binlog={srv['sync_binlog']}, "
          f"innodb_flush_log_at_trx_commit={srv['innodb_flush_log_at_trx_commit']}; "
          f"{res['machine']['cpus']} CPUs, load average {res['machine']['load_before']:.2f} before the run"
          + ("; cProfile ON (latencies inflated)" if p["profile"] else "")
          + (f"; [watch] nice = {p['watcher_nice']}" if p.get("watcher_nice") else "")
          + ("; mariadbd+sysbench pinned to CPU 0, the bench to the rest (experiment)" if p.get("pin") else ""))
    print()
    print(f"{'kind':<15} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'missed':>7} {'dup':>4}")
    for kind, s in res["summary"].items():
        if kind == "overall":
            print("-" * 67)
        print(f"{kind:<15} {s['statements']:>4} {fmt(s['p50'])} {fmt(s['p95'])} {fmt(s['p99'])} {fmt(s['max'])} "
              f"{s['missed']:>7} {s['duplicated']:>4}")
    if (h := res.get("overall_at_fake_thread", {})).get("n"):
        print(f"{'(fake read it)':<15} {h['n']:>4} {fmt(h['p50'])} {fmt(h['p95'])} {fmt(h['p99'])} {fmt(h['max'])}"
              "   <- the same, up to when the fake's thread read the request")
    print()
    print("where the time went (ms)         p50      p99      max")
    for k, s in res["breakdown"].items():
        print(f"  {k:<28} {fmt(s['p50'])} {fmt(s['p99'])} {fmt(s['max'])}")
    if res.get("http_floor", {}).get("n"):
        f = res["http_floor"]
        print(f"  {'floor: plain post -> arrival':<28} {fmt(f['p50'])} {fmt(f['p99'])} {fmt(f['max'])}   "
              f"({f['n']} chat.postMessage calls during the warm-up: same client, same load, no alert)")
    cpu = res["cpu_share"]
    share = lambda v: "-" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    where = "thread" if p.get("threaded") else "process"
    print(f"CPU during the measurement (100 % = one core): watcher {where} {share(cpu['watcher'])}, poster thread "
          f"{share(cpu['poster'])}, whole bench process {share(cpu['process'])}, mariadbd {share(cpu.get('mariadbd'))}, "
          f"sysbench {share(cpu.get('sysbench'))}; all {res['machine']['cpus']} CPUs "
          f"{share(res.get('machine_busy'))} busy (the rest of it: other processes on the machine), "
          f"{share(res.get('machine_steal'))} stolen by the hypervisor; "
          f"load average {res.get('load_average_during', 0):.2f} at the end")
    print(f"the watcher {where} waited for a CPU (runnable, not running) {share(cpu.get('watcher_runqueue'))} of the time")
    if res.get("backlog_at_commit_kb"):
        b = res["backlog_at_commit_kb"]
        print(f"binlog the watcher had not read yet when the statement committed: p50 {b['p50']:.0f} KiB, "
              f"p99 {b['p99']:.0f} KiB, max {b['max']:.0f} KiB")
        if res.get("socket_queued_kb"):
            q = res["socket_queued_kb"]
            print(f"  of which already sent and queued unread in the watcher's socket: p50 {q['p50']:.0f} KiB, "
                  f"p99 {q['p99']:.0f} KiB, max {q['max']:.0f} KiB")
    for name, st in res.get("sqlite_ms", {}).items():
        print(f"SQLite {name}: {st['n']} calls, p50 {fmt(st['p50']).strip()} ms, p99 {fmt(st['p99']).strip()} ms, "
              f"max {fmt(st['max']).strip()} ms")
    if res.get("capacity"):
        print()
        print(f"watcher pipeline capacity, load stopped, one thread re-reading this run's binlog "
              f"(the load wrote {res['load_tps']:.0f} tx/s):")
        print(f"  {'layer':<42} {'events/s':>9} {'tx/s':>7} {'CPU us/event':>13}")
        for c in res["capacity"]:
            print(f"  {c['layer']:<42} {c['events_per_s']:>9,.0f} {c['tx_per_s']:>7,.0f} "
                  f"{(c['us_per_event'] or 0):>13.1f}")
    print()
    o = res["summary"]["overall"]
    v = res["verdict"]
    print(f"alerts: {res['total_alerts']} for {res['total_statements']} destructive statements; "
          f"missed {len(res['missed'])}, duplicated {len(res['duplicated'])}, "
          f"about sbtest {len(res['sbtest_alerts'])}, unmatched {len(res['unmatched_alerts'])}")
    print(f"goal p50 <= {GOAL_P50_MS:.0f} ms: {'met' if v['goal_p50'] else 'MISSED'} ({fmt(o['p50']).strip()} ms); "
          f"goal p99 <= {GOAL_P99_MS:.0f} ms: {'met' if v['goal_p99'] else 'MISSED'} ({fmt(o['p99']).strip()} ms); "
          f"hard p99 <= 1 s: {'met' if v['hard_p99'] else 'MISSED'}")
    if res.get("stopped_early"):
        print(f"stopped early: {res['stopped_early']}")
    if res.get("profile"):
        for name, text in res["profile"].items():
            print(f"\n== cProfile, {name} thread (tottime) ==\n{text}")
