"""The watcher: a real source's live binlog, alerts to a fake Slack that mention the on-call person."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from slack_sdk import WebClient

from bot.alerts import AlertPoster, AlertStore, Oncall
from fake_slack import FakeSlack
from restore.sandbox import Sandbox
from restore.watcher import Watcher


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def _settings(rotation=("UKIM", "ULEE"), fallback=None):
    return SimpleNamespace(oncall=SimpleNamespace(rotation=rotation, rotation_start=None, fallback=fallback,
                                                  escalate_after_minutes=5, usergroup=None))


class Running:
    """A watcher + alert poster on threads, like `serve` runs them."""

    def __init__(self, src: Sandbox, slack: FakeSlack, store_path, *, escalate_after=0.0, rotation=("UKIM", "ULEE")):
        self.store = AlertStore(str(store_path), src.url)
        self.store.set_oncall("UKIM")  # `/oncall set`: overrides this week's turn in the rotation
        oncall = Oncall(_settings(rotation), self.store)
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        self.poster = AlertPoster(client, "CINC", self.store, oncall, src.url, escalate_after=escalate_after).start()
        self.watcher = Watcher(src.dsn, self.store, self.poster, databases=("club",))
        self.thread = threading.Thread(target=self.watcher.run_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10  # wait until it has a position (it starts at the end)
        while self.store.load() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        self.watcher.stop()
        self.poster.stop()
        self.thread.join(timeout=5)


def _setup(cur):
    cur.execute("CREATE DATABASE club")
    cur.execute("CREATE TABLE club.members (id INT PRIMARY KEY, name VARCHAR(20))")
    cur.execute("CREATE TABLE club.posts (id INT PRIMARY KEY, title VARCHAR(20))")
    cur.execute("CREATE TABLE club.log (id INT PRIMARY KEY, msg VARCHAR(20))")
    cur.execute("USE club")
    cur.execute("INSERT INTO club.members SELECT seq, CONCAT('m', seq) FROM seq_1_to_50")
    cur.execute("INSERT INTO club.posts SELECT seq, CONCAT('p', seq) FROM seq_1_to_50")
    cur.execute("CREATE DATABASE other")
    cur.execute("CREATE TABLE other.junk (id INT PRIMARY KEY)")
    cur.execute("INSERT INTO other.junk SELECT seq FROM seq_1_to_50")


def _alert_calls(calls):
    return [c for c in calls if c.method == "chat.postMessage" and c.status == 200 and "🚨" in c.text]


def _alerts(slack):
    return _alert_calls(slack.snapshot())


@pytest.mark.parametrize("fmt", ["ROW", "MIXED"])
def test_destructive_events_alert_ordinary_traffic_does_not(fmt, slack, tmp_path):
    with Sandbox(binlog=True, binlog_format=fmt) as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
        with Running(src, slack, tmp_path / "s.sqlite3"), src.connect() as conn, conn.cursor() as cur:
            # ordinary traffic, and a mass delete outside the watched database
            cur.execute("INSERT INTO club.log VALUES (1, 'hello')")
            cur.execute("UPDATE club.members SET name = 'x' WHERE id = 3")
            cur.execute("DELETE FROM club.posts WHERE id = 50")
            cur.execute("DELETE FROM other.junk")
            time.sleep(1.0)
            assert _alerts(slack) == [], FakeSlack.describe(slack.snapshot())
            # In ROW format a mass delete is recognised by its rows, WHERE or not; a statement-format
            # DELETE only when it has no (or an always-true) WHERE: the binlog has no row count.
            cur.execute("DELETE FROM club.members" + (" WHERE id > 0" if fmt == "ROW" else ""))
            cur.execute("UPDATE club.posts SET title = 'spam'")    # every row rewritten
            cur.execute("TRUNCATE TABLE club.log")
            cur.execute("USE other")
            cur.execute("DROP TABLE club.posts")                   # without USE club
            cur.execute("DROP DATABASE club")
            slack.wait_for(lambda calls: len(_alert_calls(calls)) >= 5, what="5 alerts")
            time.sleep(0.5)
            got = _alerts(slack)
        texts = [c.text for c in got]
    assert len(got) == 5, FakeSlack.describe(got)
    for needle, text in zip(["DELETE", "UPDATE", "TRUNCATE", "DROP TABLE", "DROP DATABASE"], texts):
        assert needle in text and "<@UKIM>" in text and "binlog binlog.000001:" in text, text
    assert all("alert_ack" in t and "alert_plan" in t for t in texts)


def test_connection_killed_between_two_drops_alerts_each_once(slack, tmp_path):
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
        with Running(src, slack, tmp_path / "s.sqlite3"), src.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE club.log")
            slack.wait_for(_alert_calls, what="the first alert")
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
            for (dump_id,) in cur.fetchall():
                cur.execute(f"KILL {dump_id}")
            cur.execute("DROP TABLE club.posts")
            slack.wait_for(lambda calls: len(_alert_calls(calls)) >= 2, timeout=20, what="the second alert")
            time.sleep(2.5)  # a re-read of the first DROP after reconnecting must not alert again
            got = _alerts(slack)
    assert len(got) == 2, FakeSlack.describe(got)
    assert "club.log" in got[0].text and "club.posts" in got[1].text


def test_unacknowledged_alert_escalates(slack, tmp_path):
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
        with Running(src, slack, tmp_path / "s.sqlite3", escalate_after=0.7) as run, \
                src.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP DATABASE club")
            first = slack.wait_for(_alert_calls, what="the alert")[0]
            pings = slack.wait_for(lambda calls: (p := [c for c in calls if "⏰" in c.text]) and len(p) >= 2 and p,
                                   timeout=15, what="two escalations")
            escalations = run.store._db().execute("SELECT escalations FROM alerts").fetchall()
    assert pings[0].thread_ts == first.ts and "<@UKIM>" in pings[0].text and "not acknowledged" in pings[0].text
    assert "<@ULEE>" in pings[1].text and "Escalating" in pings[1].text
    assert escalations and escalations[0][0] >= 2
