"""One watcher process per watched cluster, supervised by `serve`: a crashed watcher is restarted and
reported once (issue 14).

- `serve` watching two clusters on two real servers: kill -9 one cluster's watcher process; it is
  started again, the incident channel hears of it once (naming the cluster), the other cluster's
  watcher is not touched, and a statement made while the watcher was dead is alerted once.
- A watcher process that dies at every start (a crash loop) is restarted with a growing pause and
  does not post a report per restart.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import psutil
import pytest

from bot.watch import WatcherProcess
from handlers.alerts import AlertStore
from restore.mysql.dsn import Dsn
from restore.mysql.leftovers import OwnedDir
from restore.mysql.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack
from tests.support.fleet import CHANNEL, fleet_config, serve_env, watcher_processes
from tests.support.slack_bot import Bot


def _alerts(calls, text: str = "") -> list:
    return [c for c in calls if c.method == "chat.postMessage" and "🚨" in c.text and text in c.text]


def _troubles(calls) -> list:
    return [c for c in calls if c.method == "chat.postMessage" and c.text.startswith("⚠️")]


def _watchers(bot: Bot) -> dict[int, int]:
    """serve's watcher processes (multiprocessing spawn children) by the source port each one reads."""
    out: dict[int, int] = {}
    for kid in watcher_processes(bot.proc.pid):
        try:
            for conn in kid.net_connections(kind="tcp"):
                if conn.raddr and conn.status == psutil.CONN_ESTABLISHED:
                    out[conn.raddr.port] = kid.pid
        except psutil.Error:
            pass
    return out


def _until(what: str, check, timeout: float = 30.0, diagnose=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{diagnose()}")


@pytest.mark.mysql
def test_serve_restarts_a_killed_clusters_watcher_and_reports_it_once(tmp_path):
    owned = OwnedDir("rbsup")   # short: the bot's temp dir
    fake = FakeSlack().start()
    bot = None
    try:
        with Sandbox(binlog=True, binlog_format="ROW") as a, Sandbox(binlog=True, binlog_format="ROW", server_id=2) as b:
            for src in (a, b):
                with src.connect() as conn, conn.cursor() as cur:
                    cur.execute("CREATE DATABASE club")
                    for t in ("probe", "while_dead", "after", "untouched"):
                        cur.execute(f"CREATE TABLE club.{t} (id INT PRIMARY KEY)")
            config = fleet_config(tmp_path / "restore-bot.toml", {"a": a.url, "b": b.url}, ["club"])
            env = serve_env(fake.api_url, str(owned.path))
            bot = Bot(config, env, tmp_path / "serve.log", str(owned.path)).start()
            log = bot.log_tail

            # Both watchers live: each alerts a probe (a new watcher process takes a while to start).
            for name, src in (("a", a), ("b", b)):
                _until(f"cluster {name}'s start position", lambda s=src, n=name: AlertStore(
                    str(tmp_path / "store.sqlite3"), Dsn.parse(s.url).redacted(), cluster=n).load(), diagnose=log)
                with src.connect() as conn, conn.cursor() as cur:
                    cur.execute("DROP TABLE club.probe")
                fake.wait_for(lambda calls, s=src: _alerts(calls, f"127.0.0.1:{s.port}"), timeout=60,
                              what=f"cluster {name}'s probe alert")
            procs = _until("a watcher process per cluster", lambda: (w := _watchers(bot)) and len(w) == 2 and w,
                           diagnose=log)
            assert set(procs) == {a.port, b.port}, procs
            assert not _troubles(fake.snapshot()), FakeSlack.describe(fake.snapshot())

            # kill -9 cluster a's watcher; a's database changes while no watcher reads it.
            os.kill(procs[a.port], signal.SIGKILL)
            with a.connect() as conn, conn.cursor() as cur:
                cur.execute("DROP TABLE club.while_dead")
            again = _until("cluster a's watcher process started again",
                           lambda: (p := _watchers(bot).get(a.port)) and p != procs[a.port] and p, diagnose=log)
            with a.connect() as conn, conn.cursor() as cur:
                cur.execute("DROP TABLE club.after")
            with b.connect() as conn, conn.cursor() as cur:
                cur.execute("DROP TABLE club.untouched")
            for table, src in (("while_dead", a), ("after", a), ("untouched", b)):
                fake.wait_for(lambda calls, t=table, s=src: [c for c in _alerts(calls, f"127.0.0.1:{s.port}")
                                                               if f"club.{t}" in c.text],
                              timeout=30, what=f"the alert for club.{table}")
            time.sleep(3.0)   # time for a second report, or for an alert read again to be posted twice
            calls = fake.snapshot()
            watchers_now = _watchers(bot)
    finally:
        if bot is not None:
            bot.stop()
            bot.sweep()
        fake.stop()
        owned.remove()

    troubles = [c.text for c in _troubles(calls)]
    assert len(troubles) == 1 and troubles[0].startswith("⚠️ a watch:") and "ended" in troubles[0] \
        and "starting it again" in troubles[0], troubles
    assert all(c.channel == CHANNEL for c in _troubles(calls))
    assert watchers_now == {a.port: again, b.port: procs[b.port]}, (watchers_now, procs, again)
    for src, tables in ((a, ("probe", "while_dead", "after")), (b, ("probe", "untouched"))):
        got = sorted(t for c in _alerts(calls, f"127.0.0.1:{src.port}") for t in tables if f"DROP TABLE club.{t}" in c.text)
        assert got == sorted(tables), (src.port, got, FakeSlack.describe(_alerts(calls)))   # each once, none lost


class _DiesOnArrival:
    """Unpickled in the watcher's child as an argument: the child exits at once, at every start."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_a_watcher_that_dies_at_every_start_is_restarted_without_a_report_per_restart(tmp_path):
    store = AlertStore(str(tmp_path / "s.sqlite3"), "mysql://root@127.0.0.1:1")
    store.save("binlog.000001", 4)   # a saved position: the parent asks the (absent) server nothing
    troubles: list[str] = []
    watcher = WatcherProcess(Dsn.parse("mysql://root@127.0.0.1:1"), store, lambda alert: None,
                             rules=_DiesOnArrival(), on_trouble=troubles.append)
    watcher.restart_pause = 0.05   # (1 s in serve) the test waits for spawns, not for pauses
    thread = threading.Thread(target=watcher.run_forever, daemon=True)
    thread.start()
    starts: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while len(starts) < 5 and time.monotonic() < deadline:
            if watcher.proc is not None and watcher.proc.pid and watcher.proc.pid not in starts:
                starts.append(watcher.proc.pid)
            time.sleep(0.01)
        reported = list(troubles)
    finally:
        watcher.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(starts) == 5, f"the watcher process was not started again and again: {starts}"
    # At its first end, and once when it is clear that it keeps ending: not per restart.
    assert len(reported) == 2, reported
    assert "ended (exit code 3); starting it again" in reported[0], reported
    assert "keeps ending (exit code 3, 3 times in a row)" in reported[1], reported


class _StoreDownOnce(AlertStore):
    """The store refuses one position save, once armed (a locked SQLite file, a shared store restarting)."""

    armed = False

    def save(self, file: str, pos: int) -> None:
        if self.armed:
            self.armed = False
            raise sqlite3.OperationalError("database is locked")
        super().save(file, pos)


@pytest.mark.mysql
def test_a_position_the_store_cannot_save_restarts_the_watcher_and_no_alert_is_lost(tmp_path):
    """The thread reading the watcher's pipe used to die with the store's error: that cluster was
    watched no more, and nobody was told."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            for t in ("t1", "t2"):
                cur.execute(f"CREATE TABLE club.{t} (id INT PRIMARY KEY)")
        store = _StoreDownOnce(str(tmp_path / "s.sqlite3"), src.url)
        alerts: list = []
        troubles: list[str] = []
        watcher = WatcherProcess(src.dsn, store, alerts.append, databases=("club",), on_trouble=troubles.append)
        thread = threading.Thread(target=watcher.run_forever, daemon=True)
        thread.start()
        try:
            _until("the watcher process", lambda: store.load() is not None and watcher.proc is not None)
            first = watcher.proc
            store.armed = True   # the position saved after the alert fails
            with src.connect() as conn, conn.cursor() as cur:
                cur.execute("DROP TABLE club.t1")
                _until("the restarted watcher process", lambda: watcher.proc is not first and troubles,
                       diagnose=lambda: f"alerts {alerts}, troubles {troubles}")
                cur.execute("DROP TABLE club.t2")
            _until("the alert for club.t2", lambda: any(a.table == "t2" for a in alerts),
                   diagnose=lambda: f"alerts {alerts}, troubles {troubles}, thread alive {thread.is_alive()}")
            alive = thread.is_alive()
        finally:
            watcher.stop()
            thread.join(timeout=10)
    assert alive and not thread.is_alive()
    assert {a.table for a in alerts} == {"t1", "t2"}, alerts   # t1 read again from the saved position: the store dedupes
    assert len(troubles) == 1 and "database is locked" in troubles[0], troubles


class _StoreDownAtStart(AlertStore):
    """The store does not answer the first time the start position is read."""

    failed = False

    def load(self) -> tuple[str, int] | None:
        if not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("unable to open database file")
        return super().load()


def test_a_store_error_at_the_start_does_not_end_the_watching(tmp_path):
    store = _StoreDownAtStart(str(tmp_path / "s.sqlite3"), "mysql://root@127.0.0.1:1")
    store.save("binlog.000001", 4)
    watcher = WatcherProcess(Dsn.parse("mysql://root@127.0.0.1:1"), store, lambda alert: None)
    thread = threading.Thread(target=watcher.run_forever, daemon=True)
    thread.start()
    try:
        _until("the watcher process", lambda: watcher.proc is not None and watcher.proc.pid)
        assert store.failed and thread.is_alive()
    finally:
        watcher.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
