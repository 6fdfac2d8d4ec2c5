#!/usr/bin/env python3
"""restore-bot undo against `mariadb-binlog --flashback | mariadb` (issue 12): a big `DELETE FROM t`
(no WHERE, ROW format, binlog_row_image=FULL) followed by later traffic on another table, undone
in place on two servers given the same history, one after the other:

  anchor       mariadb-binlog --flashback --start-position=P --stop-position=Q FILE | mariadb
  restore-bot  restore-bot undo --binlogs DIR --target DSN --event GTID --yes --json

`--disaster update` undoes an UPDATE of three columns of every row instead. Both must give back `t`
with the CHECKSUM TABLE it had before the disaster, and keep the later traffic. Prints the times,
the ratio (restore-bot / anchor; goal <= 1.0) and each side's peak RSS (each process's VmHWM,
sampled from /proc every 5 ms while it runs). Exits 1 when a side is not exact, 2 when a tool is
missing.

    .venv/bin/python bench/undo_flashback.py [--rows 1000000] [--disaster delete|update] [--profile]
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


def history(box: Sandbox, rows: int, disaster: str) -> dict:
    """Load, the disaster (no WHERE), later traffic. Returns the checksums before the DELETE and the DELETE's
    GTID and binlog range."""
    _sql(box, SCHEMA + [
        f"INSERT INTO u.t SELECT seq, seq * 7919, (seq % 100000) / 100, CONCAT('label ', seq, ' ', "
        f"REPEAT(CHAR(97 + seq % 26), seq % 20)), TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 1001 MICROSECOND, "
        f"IF(seq % 7 = 0, NULL, seq % 100) FROM u.seq_1_to_{rows}",
        "INSERT INTO u.other SELECT seq, CONCAT('o', seq) FROM u.seq_1_to_100"])
    before = checksums(box)
    file, start = _one(box, "SHOW MASTER STATUS")[:2]
    _sql(box, [DISASTERS[disaster]])
    gtid = _one(box, "SELECT @@gtid_binlog_pos")[0]
    stop = _one(box, "SHOW MASTER STATUS")[1]
    _sql(box, [f"UPDATE u.other SET v = CONCAT(v, ' later {i}') WHERE id = {i}" for i in range(1, 51)]
         + [f"INSERT INTO u.other VALUES ({i}, 'after the delete')" for i in range(101, 151)])
    after = checksums(box)
    return {"before": before, "after_traffic": after, "file": file, "start": int(start), "stop": int(stop),
            "gtid": gtid}


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


def exact(box: Sandbox, inc: dict) -> list[str]:
    got = checksums(box)
    want = {"u.t": inc["before"]["u.t"], "u.other": inc["after_traffic"]["u.other"]}
    return [f"{t}: {got.get(t)} != {v}" for t, v in want.items() if got.get(t) != v]


def profile(box: Sandbox, inc: dict, run_dir: Path) -> None:
    prof = run_dir / "undo.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "bot.cli", *undo_cmd(box, inc)],
                   stdout=subprocess.DEVNULL, env=tool_env(run_dir))
    import pstats
    pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(35)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the table the DELETE empties")
    ap.add_argument("--disaster", choices=sorted(DISASTERS), default="delete",
                    help="the statement undone: DELETE FROM t (default) or an UPDATE of three columns of every row")
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
        log(f"{len(boxes)} servers up; loading {args.rows} rows, {DISASTERS[args.disaster]}, later traffic on each")
        incs = [history(box, args.rows, args.disaster) for box in boxes]
        if any(i["before"] != incs[0]["before"] for i in incs):
            raise BenchError("the servers' histories differ: the copies are not identical")
        subprocess.run([*restore_bot_cmd(), "--help"], stdout=subprocess.DEVNULL, env=tool_env(run_dir))  # bytecode
        anchor = run_anchor(boxes[0], incs[0])
        log(f"anchor: {anchor['seconds']} s")
        ours = run_ours(boxes[1], incs[1], run_dir)
        log(f"restore-bot undo: {ours['seconds']} s")
        res = {"when": _dt.datetime.now().isoformat(timespec="seconds"), "rows": args.rows, "disaster": DISASTERS[args.disaster],
               "binlog_bytes": incs[0]["stop"] - incs[0]["start"], "cpus": os.cpu_count(),
               "loadavg_1min": round(os.getloadavg()[0], 2), "anchor": anchor, "restore_bot": ours,
               "ratio": round(ours["seconds"] / anchor["seconds"], 3), "goal": GOAL,
               "anchor_problems": exact(boxes[0], incs[0]), "restore_bot_problems": exact(boxes[1], incs[1])}
        print(json.dumps(res, indent=2))
        print(f"\n{args.rows} rows, {args.disaster} undone: anchor (mariadb-binlog --flashback | mariadb) {anchor['seconds']} s, "
              f"peak RSS {anchor['peak_rss_kib']} KiB; restore-bot undo {ours['seconds']} s, peak RSS "
              f"{ours['peak_rss_kib']} KiB; ratio {res['ratio']} (goal <= {GOAL}); exact: anchor "
              f"{not res['anchor_problems']}, restore-bot {not res['restore_bot_problems']}")
        if args.results:
            Path(args.results).write_text(json.dumps(res, indent=2) + "\n")
        if args.profile:
            profile(boxes[2], incs[2], run_dir)
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
