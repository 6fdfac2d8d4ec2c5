"""The watcher: a real source's live binlog, alerts to a fake Slack that mention the on-call person."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from bot.alert_client import AlertSlackClient
from bot.watch import WatcherProcess, build_watcher
from handlers.alerts import AlertPoster, AlertStore, Oncall
from restore.binlog.server import ServerBinlogs
from restore.binlog.walker import QueryStep, RowsStep, TxBegin, TxEnd, Walker
from restore.live.watcher import Watcher, watched_statements
from restore.mysql.procs import alive
from restore.mysql.sandbox import Sandbox
from restore.plan.destructive import DestructiveRules
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def _settings(rotation=("UKIM", "ULEE"), fallback=None):
    return SimpleNamespace(oncall=SimpleNamespace(rotation=rotation, rotation_start=None, fallback=fallback,
                                                  escalate_after_minutes=5, usergroup=None))


class Running:
    """A watcher + alert poster on threads, like `serve` runs them."""

    def __init__(self, src: Sandbox, slack: FakeSlack, store_path, *, escalate_after=0.0, rotation=("UKIM", "ULEE"),
                 rules: DestructiveRules | None = None):
        self.store = AlertStore(str(store_path), src.url)
        self.store.set_oncall("UKIM")  # `/oncall set`: overrides this week's turn in the rotation
        oncall = Oncall(_settings(rotation), self.store)
        client = AlertSlackClient("xoxb-test", slack.api_url)
        self.poster = AlertPoster(client, "CINC", self.store, oncall, src.url, escalate_after=escalate_after).start()
        self.watcher = Watcher(src.dsn, self.store, self.poster, databases=("club",), rules=rules)
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


@pytest.mark.parametrize("rules, alerted", [(None, []), (DestructiveRules(fraction=0.5, min_rows=20), ["members"])])
def test_mass_change_thresholds_decide_what_alerts(rules, alerted, slack, tmp_path):
    """[watch] mass_fraction / mass_min_rows: 30 of 50 members deleted and 15 posts rewritten are
    ordinary by default (90 %); at 50 % and 20 rows the DELETE alerts, the 15-row UPDATE does not."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
        with Running(src, slack, tmp_path / "s.sqlite3", rules=rules), src.connect() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM club.members WHERE id <= 30")
            cur.execute("UPDATE club.posts SET title = 'x' WHERE id <= 15")
            cur.execute("DROP TABLE club.log")  # always alerts: when it arrives, the two before were judged
            slack.wait_for(lambda calls: any("club.log" in c.text for c in _alert_calls(calls)), what="the DROP")
            time.sleep(0.3)
            got = [c.text for c in _alerts(slack) if "club.log" not in c.text]
    assert [t for t in alerted if any(f"club.{t}" in g for g in got)] == alerted and len(got) == len(alerted), got
    if alerted:
        assert "mass DELETE on club.members: 30 of about 50 rows" in got[0], got[0]


def test_size_lookup_connection_dropped_by_the_server_is_reopened(slack, tmp_path):
    """The watcher's side connection for table sizes dies while idle (wait_timeout, a restart, a
    KILL): the next lookup reconnects, so 15 of 50 rows deleted is no mass DELETE (a failed lookup
    counts as an emptied table, which would alert)."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
        with Running(src, slack, tmp_path / "s.sqlite3"), src.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Sleep' AND ID <> CONNECTION_ID()")
            idle = [row[0] for row in cur.fetchall()]
            assert idle, "the watcher should hold its size connection open from the start"
            for conn_id in idle:
                cur.execute(f"KILL {conn_id}")
            cur.execute("DELETE FROM club.members WHERE id <= 15")
            cur.execute("DROP TABLE club.log")
            slack.wait_for(lambda calls: any("club.log" in c.text for c in _alert_calls(calls)), what="the DROP")
            time.sleep(0.3)
            got = _alerts(slack)
    assert len(got) == 1 and "club.log" in got[0].text, FakeSlack.describe(got)


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


def test_mass_delete_whose_statement_ends_in_an_unwatched_database_alerts(slack, tmp_path):
    """A trigger copies each deleted member into another schema: the statement's last row event is
    that copy, and the mass DELETE on the watched table must still be judged when it ends."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
            cur.execute("CREATE TABLE other.gone (id INT PRIMARY KEY)")
            cur.execute("CREATE TRIGGER club.members_gone AFTER DELETE ON club.members FOR EACH ROW "
                        "INSERT INTO other.gone VALUES (OLD.id)")
        with Running(src, slack, tmp_path / "s.sqlite3"), src.connect() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM club.members WHERE id > 0")
            slack.wait_for(_alert_calls, timeout=20, what="the mass DELETE alert")
            got = _alerts(slack)
    assert len(got) == 1 and "mass DELETE on club.members" in got[0].text, FakeSlack.describe(got)


def test_alert_slack_refused_is_posted_later_exactly_once(slack, tmp_path):
    """Slack answers the first two attempts with an error: the alert is retried with backoff and
    arrives once; the store records it as posted."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
        with Running(src, slack, tmp_path / "s.sqlite3") as running, src.connect() as conn, conn.cursor() as cur:
            slack.fail("chat.postMessage", 2)
            cur.execute("DROP TABLE club.log")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(_alerts(slack)) < 3:
                time.sleep(0.1)
            time.sleep(3.5)  # longer than the next backoff: a (wrong) fourth attempt would land
            key = running.store._db().execute("SELECT key FROM alerts").fetchone()[0]
            posted = running.store.get(key)
    attempts = _alerts(slack)   # refused ones included: the fake answers them {"ok": false}
    assert len(attempts) == 3 and all("club.log" in c.text for c in attempts), FakeSlack.describe(attempts)
    assert posted["ts"] is not None


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
            deadline = time.monotonic() + 5  # a round is counted once Slack answered its post
            while (escalations := run.store._db().execute("SELECT escalations FROM alerts").fetchall()) \
                    and escalations[0][0] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    assert pings[0].thread_ts == first.ts and "<@UKIM>" in pings[0].text and "not acknowledged" in pings[0].text
    assert "<@ULEE>" in pings[1].text and "Escalating" in pings[1].text
    assert escalations and escalations[0][0] >= 2


def test_suspect_mass_update_is_a_notice_that_pages_nobody_and_does_not_escalate(slack, tmp_path):
    """Issue 10: a mass UPDATE whose row images show it keeps information (one column set from
    another, a counter bumped) is a notice: no mention, no Acknowledge, no escalation; one that
    destroys information, and a statement-form UPDATE without WHERE (no images: cannot be judged
    live), page as before; a statement-form UPDATE with a WHERE is not reported at all."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
            cur.execute("ALTER TABLE club.members ADD COLUMN display VARCHAR(20) NULL, ADD COLUMN n INT NOT NULL DEFAULT 0")
        with Running(src, slack, tmp_path / "s.sqlite3", escalate_after=0.7) as run, \
                src.connect() as conn, conn.cursor() as cur:
            cur.execute("UPDATE club.members SET display = name, n = n + 1")     # keeps information: suspect
            cur.execute("SET SESSION binlog_format = 'STATEMENT'")
            cur.execute("UPDATE club.members SET n = 0 WHERE id > 0 AND id < 100")  # a WHERE: not reported
            cur.execute("UPDATE club.members SET n = n + 1")                       # no WHERE, no images: certain
            cur.execute("SET SESSION binlog_format = 'ROW'")
            cur.execute("UPDATE club.posts SET title = 'spam'")                    # destroys titles: certain
            got = slack.wait_for(lambda calls: len(p := [c for c in calls if c.method == "chat.postMessage"
                                                         and not c.thread_ts]) >= 3 and p,
                                 timeout=20, what="two alerts and a notice")
            time.sleep(3.0)   # four escalation intervals: the pages escalate, the notice must not
            calls = slack.snapshot()
            severities = dict(run.store._db().execute("SELECT reason, severity FROM alerts").fetchall())
    assert len(got) == 3, FakeSlack.describe(got)
    notice, statement, spam = got
    assert notice.text.startswith("🔎 Notice") and "club.members" in notice.text, notice.text
    assert "<@" not in notice.text and "<!subteam" not in notice.text, notice.text
    assert "without destroying information: display (" in notice.text, notice.text   # why, naming the column
    buttons = [e["action_id"] for b in notice.body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["alert_expected", "alert_incident", "alert_plan"], buttons
    assert "🚨 <@UKIM>" in statement.text and "UPDATE without WHERE on club.members" in statement.text, statement.text
    assert "🚨 <@UKIM>" in spam.text and "mass UPDATE on club.posts" in spam.text and "overwrites" in spam.text
    # Undo this only where row images say what was destroyed (the mass UPDATE), not on a statement
    for page, undo in ((statement, []), (spam, ["alert_undo"])):
        actions = [e["action_id"] for b in page.body["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert actions == ["alert_ack", "alert_expected", "alert_incident", "alert_plan", *undo], actions
        assert any("⏰" in c.text for c in calls if c.thread_ts == page.ts), f"{page.text} did not escalate"
    assert not [c for c in calls if c.thread_ts == notice.ts], FakeSlack.describe(calls)
    assert sorted(severities.values()) == ["certain", "certain", "suspect"], severities


def _watch_settings(store_path, nice=0):
    return SimpleNamespace(store_path=store_path, store=str(store_path), slack=SimpleNamespace(channel="CINC"),
                           watch=SimpleNamespace(databases=("club",), mass_fraction=0.9, mass_min_rows=10, nice=nice),
                           oncall=_settings().oncall)


def test_watcher_process_as_serve_runs_it_restarts_and_stops(slack, tmp_path):
    """build_watcher: the watcher in a child process; killed, it is started again and resumes without
    repeating an alert; stop() ends it at once."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
        troubles: list[str] = []
        watcher, poster = build_watcher(_watch_settings(tmp_path / "s.sqlite3"), src.dsn,
                                        client=AlertSlackClient("xoxb-test", slack.api_url),
                                        on_trouble=troubles.append)
        assert isinstance(watcher, WatcherProcess)
        store = AlertStore(str(tmp_path / "s.sqlite3"), src.dsn.redacted())
        store.set_oncall("UKIM")
        thread = threading.Thread(target=watcher.run_forever, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            # The position is taken before the child starts (it resumes from there): wait for both.
            while (store.load() is None or watcher.proc is None) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.load() is not None, "the watcher process never took a starting position"
            first_child = watcher.proc
            assert first_child is not None, "the watcher process never started"
            with src.connect() as conn, conn.cursor() as cur:
                cur.execute("DROP TABLE club.log")
                slack.wait_for(_alert_calls, timeout=20, what="the first alert")
                os.kill(first_child.pid, signal.SIGKILL)
                deadline = time.monotonic() + 20
                while (watcher.proc is first_child or not troubles) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert watcher.proc is not first_child and "ended" in troubles[0], troubles
                cur.execute("DROP TABLE club.posts")
                slack.wait_for(lambda calls: len(_alert_calls(calls)) >= 2, timeout=20, what="the second alert")
            time.sleep(2.0)  # the new child re-read the first DROP: it must not alert again
            got = _alerts(slack)
            child = watcher.proc
            t0 = time.monotonic()
            watcher.stop()
            thread.join(timeout=10)
            stopped_in = time.monotonic() - t0
        finally:
            watcher.stop()
            poster.stop()
    assert len(got) == 2, FakeSlack.describe(got)
    assert "club.log" in got[0].text and "club.posts" in got[1].text
    assert not thread.is_alive() and child.exitcode == 0 and stopped_in < 5, (child.exitcode, stopped_in)
    assert len(troubles) == 1, troubles


CHILD_OF = """
import sys, threading, time
from bot.alert_client import AlertSlackClient
from handlers.alerts import AlertStore
from bot.watch import WatcherProcess
from restore.mysql.dsn import Dsn
watcher = WatcherProcess(Dsn.parse(sys.argv[1]), AlertStore(sys.argv[2], sys.argv[1]), print)
threading.Thread(target=watcher.run_forever, daemon=True).start()
while watcher.proc is None:
    time.sleep(0.01)
print(watcher.proc.pid, flush=True)
time.sleep(120)
"""


def test_watcher_process_ends_when_its_parent_is_killed(tmp_path):
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        parent = subprocess.Popen([sys.executable, "-c", CHILD_OF, src.url, str(tmp_path / "s.sqlite3")],
                                  stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[1]))
        try:
            child = int(parent.stdout.readline())
            store = AlertStore(str(tmp_path / "s.sqlite3"), src.url)
            deadline = time.monotonic() + 20
            while store.load() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.load() is not None and alive(child)  # following the binlog
            parent.kill()
            parent.wait(timeout=10)
            deadline = time.monotonic() + 10
            while alive(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(child), "the watcher process outlived its parent"
        finally:
            parent.kill()
            parent.wait(timeout=10)


def _project(steps, watched: set[str]) -> list[tuple]:
    """What the watcher acts on, step by step (row events of other databases left out)."""
    out = []
    for step in steps:
        if isinstance(step, TxBegin):
            out.append(("begin", step.file, step.pos, str(step.gtid)))
        elif isinstance(step, TxEnd):
            out.append(("end", step.file, step.pos))
        elif isinstance(step, QueryStep):
            out.append(("query", step.event.where, step.query.query))
        elif isinstance(step, RowsStep) and step.tmap.db in watched:
            out.append(("rows", step.event.where, step.tmap.table, step.rows, step.statement_end, step.annotation))
    return out


def test_leaving_out_other_databases_statements_changes_nothing_the_watcher_sees():
    """`watched_statements` drops row events before the Walker decodes them: on a stream mixing watched
    and other databases — also in one transaction, one multi-table statement, statements split over
    several row events — the Walker must yield exactly what it yields without it."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
            cur.execute("CREATE TABLE other.big (id INT PRIMARY KEY, pad CHAR(200))")
            cur.execute("INSERT INTO other.big SELECT seq, REPEAT('o', 200) FROM other.seq_1_to_300")  # split events
            cur.execute("INSERT INTO club.log SELECT seq, 'x' FROM club.seq_1_to_300")
            cur.execute("BEGIN")
            cur.execute("UPDATE other.junk SET id = id + 1000")
            cur.execute("DELETE FROM club.members WHERE id <= 10")
            cur.execute("UPDATE other.big SET pad = 'p'")
            cur.execute("COMMIT")
            # one statement over both: row events of both tables, the last one (STMT_END_F) of either
            cur.execute("DELETE club.posts, other.big FROM club.posts JOIN other.big ON other.big.id = club.posts.id")
            cur.execute("UPDATE other.junk o JOIN club.members m ON m.id = o.id - 1000 SET o.id = o.id + 5000, m.name = 'j'")
            cur.execute("SET binlog_format = 'STATEMENT'")
            cur.execute("DELETE FROM other.junk WHERE id > 6040")
            cur.execute("SET binlog_format = 'ROW'")
            cur.execute("DROP TABLE other.junk")
            cur.execute("DELETE FROM club.log")
        start = ("binlog.000001", 4)
        plain = Walker(ServerBinlogs(src.dsn).events(*start), count=True).steps()
        filtered = Walker(watched_statements(ServerBinlogs(src.dsn).events(*start), {b"club"}), count=True).steps()
        expected, got = _project(plain, {"club"}), _project(filtered, {"club"})
    assert got == expected
    rows = [s for s in expected if s[0] == "rows"]
    assert {s[2] for s in rows} == {"members", "posts", "log"} and sum(s[3] for s in rows) > 600


def test_standalone_watch_reports_refused_credentials_to_slack_once(slack, tmp_path):
    """`restore-bot watch` on its own, Slack configured: a source that refuses the password is one
    ⚠️ message in the incident channel (password not in it), however often the watcher retries."""
    with Sandbox(binlog=True) as src:
        config = tmp_path / "restore-bot.toml"
        config.write_text(f'[store]\npath = "{tmp_path / "s.sqlite3"}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RESTORE_BOT_"))}
        env.update(SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack.api_url, RESTORE_BOT_CHANNEL="CINC",
                   RESTORE_BOT_CONFIG=str(config))
        bad = f"mysql://root:Not-The-Pw-42@127.0.0.1:{src.port}"
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "watch", "--source", bad], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            warned = slack.wait_for(lambda calls: [c for c in calls if "⚠️" in c.text], timeout=30,
                                    what="the trouble report")
            with src.connect() as conn, conn.cursor() as cur:  # it goes on retrying: wait for two more refusals
                cur.execute("SHOW GLOBAL STATUS LIKE 'Access_denied_errors'")
                refused = int(cur.fetchone()[1])
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    cur.execute("SHOW GLOBAL STATUS LIKE 'Access_denied_errors'")
                    if int(cur.fetchone()[1]) >= refused + 2:
                        break
                    time.sleep(0.2)
                else:
                    raise AssertionError("the watcher did not retry")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
    warnings = [c for c in slack.snapshot() if "⚠️" in c.text]
    assert len(warnings) == 1 and warnings[0].channel == "CINC", FakeSlack.describe(warnings)
    assert f"127.0.0.1:{src.port}" in warned[0].text and "denied" in warned[0].text.lower(), warned[0].text
    assert "Not-The-Pw-42" not in warned[0].text and "Not-The-Pw-42" not in err


def _nice(tid: int) -> int:
    """The nice value of one thread (Linux keeps it per thread; getpriority takes a thread id)."""
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_watch_nice_sets_the_watcher_process_and_the_alert_thread(slack, tmp_path):
    """[watch] nice: the watcher process and the thread that posts its alerts run at that priority,
    the rest of the bot does not. (A positive value, which anyone may set; below 0 needs CAP_SYS_NICE.)"""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        watcher, poster = build_watcher(_watch_settings(tmp_path / "s.sqlite3", nice=7), src.dsn,
                                        client=AlertSlackClient("xoxb-test", slack.api_url))
        thread = threading.Thread(target=watcher.run_forever, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while watcher.proc is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            child = watcher.proc.pid
            child_threads = [t.id for t in psutil.Process(child).threads()]
            assert [_nice(t) for t in child_threads] == [7] * len(child_threads)
            assert _nice(thread.native_id) == 7
            assert _nice(threading.get_native_id()) == 0
        finally:
            watcher.stop()
            poster.stop()
            thread.join(timeout=10)


def test_watcher_process_skips_a_purged_position_once(slack, tmp_path):
    """The saved position's file was purged while the bot was down. The watcher process says so once
    and goes on; it does not resume again and again from the store, which hears of the new position
    only through the parent."""
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            _setup(cur)
            cur.execute("SHOW MASTER STATUS")
            saved = cur.fetchone()[:2]
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("DROP TABLE club.posts")  # purged unseen
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("PURGE BINARY LOGS TO 'binlog.000003'")
        store = AlertStore(str(tmp_path / "s.sqlite3"), src.dsn.redacted())
        store.save(saved[0], int(saved[1]))
        troubles: list[str] = []

        def slow_report(text: str) -> None:  # as slow as a Slack post: the parent saves positions later
            troubles.append(text)
            time.sleep(0.5)
        watcher, poster = build_watcher(_watch_settings(tmp_path / "s.sqlite3"), src.dsn,
                                        client=AlertSlackClient("xoxb-test", slack.api_url), on_trouble=slow_report)
        thread = threading.Thread(target=watcher.run_forever, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not troubles and time.monotonic() < deadline:
                time.sleep(0.05)
            with src.connect() as conn, conn.cursor() as cur:
                cur.execute("DROP TABLE club.log")
            slack.wait_for(lambda calls: [c for c in _alert_calls(calls) if "club.log" in c.text], timeout=20,
                           what="the alert after the skip")
            time.sleep(1.0)
        finally:
            watcher.stop()
            poster.stop()
            thread.join(timeout=10)
    gone = [t for t in troubles if "is gone" in t]
    assert len(gone) == 1 and f"{saved[0]}:{saved[1]}" in gone[0], troubles
