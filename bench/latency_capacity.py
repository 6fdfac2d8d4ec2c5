"""Decode capacity of the watcher's pipeline (bench/alert_latency.py, --capacity-seconds): each layer
timed on the run's binlog, re-read from the server with the load stopped."""
from __future__ import annotations

import threading
import time

from latency_load import VICTIM
from restore.live.watcher import Watcher
from restore.mysql.sandbox import Sandbox


def capacity(src: Sandbox, start: tuple[str, int], seconds: float) -> list[dict]:
    """How fast each layer of the watcher's pipeline gets through the binlog written under load.

    Re-reads the same stream (COM_BINLOG_DUMP, non-blocking, from where the watcher started) with the
    load stopped, each pass for at most `seconds` on this one thread: the raw events only; + Walker
    without row counting; + Walker counting the rows of every table; the watcher's whole loop.
    Transactions are counted by their GTID events.
    """
    import restore.live.follow as follow_mod
    from restore.binlog import events as be
    from restore.binlog.server import ServerBinlogs
    from restore.binlog.walker import Walker

    class Counting(ServerBinlogs):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            self.n = self.tx = 0

        def events(self, *a, **kw):
            for ev in super().events(*a, **kw):
                self.n += 1
                if ev.type == be.MARIADB_GTID or ev.type == be.MYSQL_GTID:
                    self.tx += 1
                yield ev

    def walk(count: bool | None, deadline: float) -> Counting:
        reader = Counting(src.dsn, blocking=False)
        stream = reader.events(*start)
        items = stream if count is None else Walker(stream, count=count).steps()
        try:
            for i, _ in enumerate(items):
                if (i & 1023) == 0 and time.perf_counter() > deadline:
                    break
        finally:
            items.close()
            stream.close()
        return reader

    def watch(deadline: float) -> Counting:
        class Positions:
            p = start

            def load(self):
                return self.p

            def save(self, file, pos):
                self.p = (file, pos)

        made: list[Counting] = []
        real = follow_mod.ServerBinlogs
        follow_mod.ServerBinlogs = lambda dsn, blocking=True, **kw: made.append(Counting(dsn, blocking=False, **kw)) or made[-1]
        w = Watcher(src.dsn, Positions(), lambda alert: None, databases=(VICTIM,))
        timer = threading.Timer(max(0.0, deadline - time.perf_counter()), w.stopping.set)
        timer.start()
        try:
            w.follow_once()  # non-blocking: returns at the end of the binlog, or at the deadline
        finally:
            timer.cancel()
            follow_mod.ServerBinlogs = real
        return made[0]

    layers = [("raw events: packet framer + CRC", lambda d: walk(None, d)),
              ("+ Walker, rows not counted", lambda d: walk(False, d)),
              ("+ Walker counting every table's rows", lambda d: walk(True, d)),
              ("whole watcher loop (Watcher.follow_once)", watch)]
    out = []
    for name, fn in layers:
        t0, c0 = time.perf_counter(), time.thread_time()
        reader = fn(t0 + seconds)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        out.append({"layer": name, "events": reader.n, "transactions": reader.tx, "seconds": wall,
                    "cpu_seconds": cpu, "events_per_s": reader.n / wall, "tx_per_s": reader.tx / wall,
                    "us_per_event": 1e6 * cpu / reader.n if reader.n else None})
    return out
