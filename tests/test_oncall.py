"""Who is on call (weekly rotation, `/oncall set`, RESTORE_BOT_ONCALL) and how an unacknowledged alert escalates."""
from __future__ import annotations

import dataclasses
import time
from datetime import date

from bot.alert_client import AlertSlackClient
from bot.config import load_settings
from handlers.alerts import AlertPoster, AlertStore, Oncall
from tests.support.alert_samples import alert_at
from tests.support.fake_slack import FakeSlack


def _oncall(tmp_path, toml: str = "", env: dict | None = None) -> tuple[Oncall, AlertStore]:
    config = tmp_path / "restore-bot.toml"
    config.write_text(toml)
    settings = load_settings(str(config), env=env or {})
    store = AlertStore(str(tmp_path / "s.sqlite3"), "mysql://src")
    return Oncall(settings, store), store


ROTATION = '[oncall]\nrotation = ["UA", "UB", "UC"]\nrotation_start = "2026-01-07"\n'  # a Wednesday


def test_weekly_rotation_turns_on_mondays_and_wraps(tmp_path):
    oncall, _ = _oncall(tmp_path, ROTATION)
    # the week of the start date (Monday 5 January) is UA's; each Monday hands over to the next
    assert [oncall.current(date(2026, 1, d)) for d in (5, 7, 11, 12, 18, 19, 26)] == \
        ["UA", "UA", "UA", "UB", "UB", "UC", "UA"]
    assert oncall.next_after("UB") == "UC" and oncall.next_after("UC") == "UA"


def test_override_beats_rotation_and_fallback_is_last(tmp_path):
    oncall, store = _oncall(tmp_path, ROTATION, env={"RESTORE_BOT_ONCALL": "UFALL"})
    assert oncall.current(date(2026, 1, 12)) == "UB"
    store.set_oncall("UZED")
    assert oncall.current(date(2026, 1, 12)) == "UZED"
    (tmp_path / "other").mkdir()
    nobody_set, _ = _oncall(tmp_path / "other", "", env={"RESTORE_BOT_ONCALL": "UFALL"})
    assert nobody_set.current(date(2026, 1, 12)) == "UFALL"


def _pings(calls) -> list[str]:
    return [c.text for c in calls if c.method == "chat.postMessage" and c.thread_ts]


def test_unacknowledged_alert_pings_again_then_the_next_person_then_the_group(tmp_path):
    """Three rounds in the alert's thread; a round Slack refused is posted at the next interval, not skipped."""
    oncall, store = _oncall(tmp_path, ROTATION)
    store.set_oncall("UA")
    with FakeSlack() as fake:
        poster = AlertPoster(AlertSlackClient("xoxb-test", fake.api_url), "CINC", store, oncall, "mysql://src",
                             escalate_after=0.3, usergroup="S0ONCALL", keep_warm=0).start()
        try:
            poster.post(alert_at(100))
            fake.fail("chat.postMessage", 1)  # the first re-ping
            fake.wait_for(lambda calls: len(_pings(calls)) >= 4, timeout=15,
                          what="a refused round and three posted ones")
            time.sleep(1.2)  # three rounds is all: no fourth
        finally:
            poster.stop()
        pings = [c for c in fake.snapshot() if c.method == "chat.postMessage" and c.thread_ts]
        alert_ts = fake.find("chat.postMessage")[0].ts
    assert [c.answer.get("ok") for c in pings] == [False, True, True, True], FakeSlack.describe(pings)
    assert "<@UA>" in pings[1].text and "not acknowledged" in pings[1].text
    assert "<@UB>" in pings[2].text and "<!subteam^S0ONCALL>" in pings[3].text
    assert {c.thread_ts for c in pings} == {alert_ts}  # in the alert's thread


def test_acknowledged_alert_stops_escalating(tmp_path):
    oncall, store = _oncall(tmp_path, ROTATION)
    store.set_oncall("UA")
    with FakeSlack() as fake:
        poster = AlertPoster(AlertSlackClient("xoxb-test", fake.api_url), "CINC", store, oncall, "mysql://src",
                             escalate_after=0.4, keep_warm=0).start()
        try:
            alert = alert_at(100)
            poster.post(alert)
            fake.wait_for(_pings, timeout=15, what="the first re-ping")
            assert store.ack(alert.key, "UA")
            time.sleep(1.5)  # more than three intervals
        finally:
            poster.stop()
        pings = _pings(fake.snapshot())
    assert len(pings) == 1, pings


def test_escalation_goes_on_after_a_restart(tmp_path):
    """The bot restarts with an alert nobody acknowledged: the new poster picks its escalation up
    from the store; an acknowledged one stays quiet."""
    oncall, store = _oncall(tmp_path, ROTATION)
    store.set_oncall("UA")
    with FakeSlack() as fake:
        client = AlertSlackClient("xoxb-test", fake.api_url)
        first = AlertPoster(client, "CINC", store, oncall, "mysql://src", escalate_after=0, keep_warm=0).start()
        try:
            first.post(alert_at(100))
            first.post(alert_at(200))
        finally:
            first.stop()  # the process ends: its timers are gone
        store.ack(alert_at(200).key, "UA")
        again = AlertPoster(client, "CINC", store, oncall, "mysql://src", escalate_after=0.3, keep_warm=0).start()
        try:
            fake.wait_for(_pings, timeout=15, what="the re-ping after the restart")
            time.sleep(0.2)
        finally:
            again.stop()
        pings = [c for c in fake.snapshot() if c.method == "chat.postMessage" and c.thread_ts]
        first_alert = fake.find("chat.postMessage", text="binlog.000001:100")[0]
    assert pings and {c.thread_ts for c in pings} == {first_alert.ts}, FakeSlack.describe(pings)
    assert "<@UA>" in pings[0].text and "not acknowledged" in pings[0].text


def test_alert_slack_refused_before_a_restart_is_posted_after_it(tmp_path):
    """Slack refuses the alert, and the bot stops before its retry: the watcher will not read that
    event again (its position is past it), so the next start posts it from the store, once."""
    oncall, store = _oncall(tmp_path, ROTATION)
    store.set_oncall("UA")
    with FakeSlack() as fake:
        client = AlertSlackClient("xoxb-test", fake.api_url)
        fake.fail("chat.postMessage", 1)
        first = AlertPoster(client, "CINC", store, oncall, "mysql://src", escalate_after=0, keep_warm=0).start()
        try:
            first.post(alert_at(100))
        finally:
            first.stop()  # before the retry
        again = AlertPoster(client, "CINC", store, oncall, "mysql://src", escalate_after=0, keep_warm=0).start()
        try:
            fake.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage" and c.status == 200
                                         and "binlog.000001:100" in c.text], timeout=15, what="the alert, reposted")
            time.sleep(0.5)
        finally:
            again.stop()
        posts = [c for c in fake.snapshot() if c.method == "chat.postMessage"]
    assert [(c.answer.get("ok"), "DROP TABLE club.log" in c.text) for c in posts] == [(False, True), (True, True)]
    assert "<@UA>" in posts[1].text and "alert_plan" in posts[1].text
    assert store.get(alert_at(100).key)["ts"] == posts[1].ts


def test_a_drill_that_crashes_still_tells_the_channel_and_the_oncall_person(tmp_path, monkeypatch):
    """Not a RestoreError but a bug: the job fails with "internal error", and its thread says so,
    mentioning who is on call, as a failed drill does."""
    from bot.worker import Worker
    from handlers.jobstore import JobStore

    config = tmp_path / "restore-bot.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "jobs.sqlite3"}"\n')
    settings = load_settings(str(config), env={"RESTORE_BOT_ONCALL": "UFALL"})
    store = JobStore(settings.store_path)
    worker = Worker(settings, store)

    def crash(job, hooks):
        raise KeyError("something nobody expected")
    monkeypatch.setattr(worker, "_execute", crash)
    job = store.create("drill", "drill", "restore-bot", state="running")
    worker.run_job(job.id)
    events = store.events(job.id)
    assert store.get(job.id).state == "failed"
    assert len(events) == 1 and "internal error: KeyError" in events[0] and "worker's log" in events[0], events
    assert "<@UFALL> (on call)" in events[0], events



def test_an_alert_store_written_before_severities_opens_and_its_alerts_still_escalate(tmp_path):
    """Issue 10 added columns to the alerts table (severity, and what an operator marked the event):
    a store file of the earlier layout, with a recorded alert whose body has no severity, opens
    (the columns are added), that alert still counts as certain, and it is marked and read back."""
    import json
    import sqlite3
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE watch_position (source TEXT PRIMARY KEY, file TEXT NOT NULL, pos INTEGER NOT NULL);
        CREATE TABLE alerts (key TEXT PRIMARY KEY, source TEXT NOT NULL, reason TEXT NOT NULL, oncall TEXT, ts TEXT,
            channel TEXT, created REAL NOT NULL, acked_by TEXT, escalations INTEGER NOT NULL DEFAULT 0, body TEXT);
        CREATE TABLE oncall_override (id INTEGER PRIMARY KEY CHECK (id = 1), user TEXT NOT NULL, since REAL);""")
    body = {k: v for k, v in alert_at(100).__dict__.items() if k != "severity"}
    old.execute("INSERT INTO alerts (key, source, reason, oncall, ts, channel, created, body) VALUES (?,?,?,?,?,?,?,?)",
                (body["key"], "mysql://src", body["reason"], "UA", "1.000001", "CINC", time.time(), json.dumps(body)))
    old.commit()
    old.close()
    store = AlertStore(str(path), "mysql://src")
    AlertStore(str(path), "mysql://src")          # a second process opening it: nothing to add any more
    info = store.get(body["key"])
    assert info["severity"] == "certain" and info["marked"] is None and info["event"]["tx_pos"] == body["tx_pos"]
    assert store.unacknowledged(0) == [body["key"]]
    assert store.mark(body["key"], "expected", "UB") and not store.mark(body["key"], "expected", "UB")
    info = store.get(body["key"])
    assert (info["marked"], info["marked_by"], info["acked_by"]) == ("expected", "UB", "UB")
    assert store.unacknowledged(0) == []           # marking it answers it: escalation stops
    suspect = dataclasses.replace(alert_at(200), severity="suspect")
    assert store.claim(suspect, None) and store.get(suspect.key)["severity"] == "suspect"
    store.posted(suspect.key, "CINC", "2.000001")
    assert store.unacknowledged(0) == []           # a notice never escalates, also after a restart
