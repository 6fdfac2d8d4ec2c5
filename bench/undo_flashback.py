#!/usr/bin/env python3
"""restore-bot undo against `mariadb-binlog --flashback | mariadb` (issue 12): a big `DELETE FROM t`
(no WHERE, ROW format, binlog_row_image=FULL) followed by later traffic on another table, undone
in place on two servers given the same history, several rounds, the two sides taking turns to go
first (the machine's load then weighs on both alike); each round purges the binlogs before its
disaster, so every undo reads the same amount:

  anchor       mariadb-binlog --flashback --start-position=P --stop-position=Q FILE | mariadb
  restore-bot  restore-bot undo --binlogs DIR --target DSN --event GTID --yes --json

`--disaster update` undoes an UPDATE of three columns of every row instead. Both must give back `t`
with the CHECKSUM TABLE it had before the disaster, and keep the later traffic, every round.
Prints each round's times, each side's median, the ratio of the medians (restore-bot / anchor;
goal <= 1.0) and each side's peak RSS over the rounds (each process's VmHWM, sampled from /proc
every 5 ms while it runs); `--profile` adds a cProfile of one more undo, on a third server. Exits 1 when a side is not exact, 2 when a tool is
missing.

    .venv/bin/python bench/undo_flashback.py [--rows 1000000] [--disaster delete|update] [--rounds 3] [--profile]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from run_bench import BenchError, log, need, restore_bot_cmd, target_url, tool_env  # noqa: E402

from restore.mysql.sandbox import Sandbox  # noqa: E402

GOAL = 1.0
TABLE = "`u`.`t`"
SCHEMA = ["CREATE DATABASE u",
          "CREATE TABLE u.t (id INT PRIMARY KEY, n BIGINT NOT NULL, price DECIMAL(12,2), label VARCHAR(64), "
          "at DATETIME(6), flag TINYINT)",
          "CREATE TABLE u.other (id INT PRIMARY KEY, v VARCHAR(40))"]


def _sql(box: Sandbox, statements: list[str]) -> None:
    conn = box.connect(autocommit=True)
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
    conn.close()


def _one(box: Sandbox, sql: str):
    conn = box.connect()
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    conn.close()
    return row


def checksums(box: Sandbox) -> dict[str, int]:
    conn = box.connect()
    with conn.cursor() as cur:
        cur.execute("CHECKSUM TABLE u.t, u.other EXTENDED")
        out = {name: value for name, value in cur.fetchall()}
    conn.close()
    return out


DISASTERS = {"delete": "DELETE FROM u.t",
             "update": "UPDATE u.t SET label = CONCAT('changed ', id), price = NULL, at = at + INTERVAL 1 DAY"}


def load(box: Sandbox, rows: int) -> dict[str, int]:
    """The table and its rows; returns the checksums every undo must give back."""
    _sql(box, SCHEMA + [
        f"INSERT INTO u.t SELECT seq, seq * 7919, (seq % 100000) / 100, CONCAT('label ', seq, ' ', "
        f"REPEAT(CHAR(97 + seq % 26), seq % 20)), TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 1001 MICROSECOND, "
        f"IF(seq % 7 = 0, NULL, seq % 100) FROM u.seq_1_to_{rows}",
        "INSERT INTO u.other SELECT seq, CONCAT('o', seq) FROM u.seq_1_to_100"])
    return checksums(box)


def history(box: Sandbox, disaster: str, round_: int) -> dict:
    """A fresh binlog (the earlier rounds' purged: each undo reads the same amount), the disaster (no
    WHERE), later traffic. Returns the checksums after it and the disaster's GTID and binlog range."""
    _sql(box, ["FLUSH BINARY LOGS"])
    file, start = _one(box, "SHOW MASTER STATUS")[:2]
    _sql(box, [f"PURGE BINARY LOGS TO '{file}'", DISASTERS[disaster]])
    gtid = _one(box, "SELECT @@gtid_binlog_pos")[0]
    stop = _one(box, "SHOW MASTER STATUS")[1]
    base = 1000 * (round_ + 1)
    _sql(box, [f"UPDATE u.other SET v = 'later {round_} {i}' WHERE id = {i}" for i in range(1, 51)]
         + [f"INSERT INTO u.other VALUES ({base + i}, 'after the disaster')" for i in range(50)])
    return {"after_traffic": checksums(box), "file": file, "start": int(start), "stop": int(stop), "gtid": gtid}


def settle(boxes: list[Sandbox]) -> None:
    """Wait until InnoDB has purged what the disasters left (a million deleted rows keep its purge
    threads busy for seconds): else the side timed first shares the cores with them."""
    for box in boxes:
        _sql(box, ["SET GLOBAL innodb_max_purge_lag_wait = 0"])


class PeakSampler(threading.Thread):
    """Samples VmHWM of some pids from /proc until they end (their peak as of the last sample)."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peaks = pids, {p: 0 for p in pids}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in self.pids:
                try:
                    with open(f"/proc/{pid}/status") as fh:
                        m = re.search(r"^VmHWM:\s+(\d+) kB", fh.read(), re.M)
                except OSError:
                    continue
                if m:
                    self.peaks[pid] = max(self.peaks[pid], int(m.group(1)))
            time.sleep(0.005)


def run_anchor(box: Sandbox, inc: dict) -> dict:
    binlog_file = box.binlog_dir / inc["file"]
    t0 = time.monotonic()
    dump = subprocess.Popen(["mariadb-binlog", "--flashback", f"--start-position={inc['start']}",
                             f"--stop-position={inc['stop']}", str(binlog_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = subprocess.Popen(["mariadb", *box.client_args()], stdin=dump.stdout, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    assert dump.stdout is not None
    dump.stdout.close()
    sampler = PeakSampler([dump.pid, client.pid])
    sampler.start()
    client_err = client.stderr.read() if client.stderr else b""
    rc_client = client.wait()
    dump_err = dump.stderr.read() if dump.stderr else b""
    rc_dump = dump.wait()
    seconds = time.monotonic() - t0
    sampler.stop.set()
    if rc_client or rc_dump:
        raise BenchError(f"anchor failed: mariadb-binlog exit {rc_dump} {dump_err[-800:]!r}; mariadb exit "
                         f"{rc_client} {client_err[-800:]!r}")
    return {"seconds": round(seconds, 3), "peak_rss_kib": {"mariadb-binlog": sampler.peaks[dump.pid],
                                                           "mariadb": sampler.peaks[client.pid]}}


def undo_cmd(box: Sandbox, inc: dict) -> list[str]:
    return ["undo", "--binlogs", str(box.binlog_dir), "--target", target_url(box), "--event", inc["gtid"], "--yes",
            "--json"]


def run_ours(box: Sandbox, inc: dict, run_dir: Path) -> dict:
    t0 = time.monotonic()
    with open(run_dir / "undo.json", "w+") as out, open(run_dir / "undo.err", "w+") as err:
        proc = subprocess.Popen([*restore_bot_cmd(), *undo_cmd(box, inc)], stdout=out, stderr=err,
                                env=tool_env(run_dir), stdin=subprocess.DEVNULL)
        sampler = PeakSampler([proc.pid])
        sampler.start()
        rc = proc.wait()
        seconds = time.monotonic() - t0
        sampler.stop.set()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    try:
        doc = json.loads(stdout)
    except ValueError:
        doc = {}
    if rc != 0 or not doc.get("applied"):
        raise BenchError(f"restore-bot undo exit {rc}: {stdout[-1500:]} {stderr[-1500:]}")
    return {"seconds": round(seconds, 3), "peak_rss_kib": sampler.peaks[proc.pid], "rows": doc["tables"][0]["rows"],
            "conflicts": len(doc["conflicts"])}


def exact(box: Sandbox, before: dict, inc: dict) -> list[str]:
    got = checksums(box)
    want = {"u.t": before["u.t"], "u.other": inc["after_traffic"]["u.other"]}
    return [f"{t}: {got.get(t)} != {v}" for t, v in want.items() if got.get(t) != v]


def profile(box: Sandbox, inc: dict, run_dir: Path) -> None:
    prof = run_dir / "undo.prof"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "bot.cli", *undo_cmd(box, inc)],
                   stdout=subprocess.DEVNULL, env=tool_env(run_dir))
    log(f"profiled undo: {time.monotonic() - t0:.2f} s")
    import pstats
    stats = pstats.Stats(str(prof)).sort_stats("cumulative")
    stats.print_stats("restore/undo|restore/replay|socket|sqlite|base64", 40)


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else round((values[mid - 1] + values[mid]) / 2, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the table the DELETE empties")
    ap.add_argument("--disaster", choices=sorted(DISASTERS), default="delete",
                    help="the statement undone: DELETE FROM t (default) or an UPDATE of three columns of every row")
    ap.add_argument("--rounds", type=int, default=3,
                    help="disasters undone on each server, the two sides taking turns to go first; medians reported")
    ap.add_argument("--profile", action="store_true", help="cProfile restore-bot's undo on a third copy (untimed)")
    ap.add_argument("--results", help="also write the figures as JSON to this file")
    args = ap.parse_args(argv)
    for tool in ("mariadb", "mariadb-binlog"):
        need(tool, "mariadb-client")
    run_dir = Path(tempfile.mkdtemp(prefix="undo-bench-"))
    boxes: list[Sandbox] = []
    try:
        for _ in range(3 if args.profile else 2):
            boxes.append(Sandbox(binlog=True, binlog_format="ROW").start())
        log(f"{len(boxes)} servers up; loading {args.rows} rows; {args.rounds} rounds of {DISASTERS[args.disaster]} "
            "and later traffic")
        before = [load(box, args.rows) for box in boxes]
        if any(b != before[0] for b in before):
            raise BenchError("the servers' tables differ: the copies are not identical")
        subprocess.run([*restore_bot_cmd(), "--help"], stdout=subprocess.DEVNULL, env=tool_env(run_dir))  # bytecode
        rounds = []
        for r in range(args.rounds):
            incs = [history(box, args.disaster, r) for box in boxes[:2]]
            settle(boxes[:2])
            sides = [("anchor", lambda: run_anchor(boxes[0], incs[0])),
                     ("restore_bot", lambda: run_ours(boxes[1], incs[1], run_dir))]
            got = {}
            for name, side in sides if r % 2 == 0 else sides[::-1]:     # each goes first in turn
                got[name] = side()
                log(f"round {r + 1}: {name} {got[name]['seconds']} s")
            got["anchor_problems"] = exact(boxes[0], before[0], incs[0])
            got["restore_bot_problems"] = exact(boxes[1], before[1], incs[1])
            got["ratio"] = round(got["restore_bot"]["seconds"] / got["anchor"]["seconds"], 3)
            rounds.append(got)
        anchor_s = _median([g["anchor"]["seconds"] for g in rounds])
        ours_s = _median([g["restore_bot"]["seconds"] for g in rounds])
        anchor_peak = {k: max(g["anchor"]["peak_rss_kib"][k] for g in rounds) for k in ("mariadb-binlog", "mariadb")}
        ours_peak = max(g["restore_bot"]["peak_rss_kib"] for g in rounds)
        res = {"when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "rows": args.rows,
               "disaster": DISASTERS[args.disaster], "binlog_bytes": incs[0]["stop"] - incs[0]["start"],
               "cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2), "rounds": rounds,
               "anchor_seconds": anchor_s, "restore_bot_seconds": ours_s, "anchor_peak_rss_kib": anchor_peak,
               "restore_bot_peak_rss_kib": ours_peak, "ratio": round(ours_s / anchor_s, 3), "goal": GOAL,
               "anchor_problems": [p for g in rounds for p in g["anchor_problems"]],
               "restore_bot_problems": [p for g in rounds for p in g["restore_bot_problems"]]}
        print(json.dumps(res, indent=2))
        print(f"\n{args.rows} rows, {args.disaster} undone, median of {args.rounds} rounds taking turns: anchor "
              f"(mariadb-binlog --flashback | mariadb) {anchor_s} s, peak RSS {anchor_peak} KiB; restore-bot undo "
              f"{ours_s} s, peak RSS {ours_peak} KiB; ratio {res['ratio']} (goal <= {GOAL}; per round "
              f"{[g['ratio'] for g in rounds]}); exact: anchor {not res['anchor_problems']}, restore-bot "
              f"{not res['restore_bot_problems']}")
        if args.results:
            Path(args.results).write_text(json.dumps(res, indent=2) + "\n")
        if args.profile:
            inc = history(boxes[2], args.disaster, 0)
            settle(boxes[2:])
            profile(boxes[2], inc, run_dir)
        return 0 if not res["anchor_problems"] and not res["restore_bot_problems"] else 1
    except BenchError as exc:
        print(f"undo_flashback: {exc}", file=sys.stderr)
        return 1
    finally:
        for box in boxes:
            box.stop()
        subprocess.run(["rm", "-rf", str(run_dir)])


if __name__ == "__main__":
    sys.exit(main())
