"""`serve` with [watch] and [keep]: alerts reach Slack, /oncall and Acknowledge work, the archive fills."""
from __future__ import annotations

import json
import os
import secrets
import time

import pytest

from handlers.jobstore import JobStore
from restore.mysql.leftovers import OwnedDir
from restore.mysql.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack, SlackSigner
from tests.support.slack_bot import Bot

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server

CHANNEL = "CWATCH"
WATCH_PASSWORD = "Wpw-" + secrets.token_hex(4)


@pytest.fixture
def served(tmp_path):
    owned = OwnedDir("rbw")   # rbw-<pid>-<hex>, short: sandbox sockets live under it
    tmpdir = str(owned.path)
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.a (id INT PRIMARY KEY)")
            cur.execute("CREATE TABLE club.b (id INT PRIMARY KEY)")
            # The bot watches as a user with a password: it must never show up in Slack or the log.
            cur.execute(f"CREATE USER watcher@'%' IDENTIFIED BY '{WATCH_PASSWORD}'")
            cur.execute("GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO watcher@'%'")
        source = f"mysql://watcher:{WATCH_PASSWORD}@127.0.0.1:{src.port}"
        config = tmp_path / "restore-bot.toml"
        config.write_text(f"""
[slack]
channel = "{CHANNEL}"
[access]
operators = ["UOPS"]
approvers = ["UAPP"]
[watch]
source = {json.dumps(source)}
databases = ["club"]
[oncall]
rotation = ["UKIM"]
rotation_start = "2026-01-05"
[keep]
archive_dir = "archive"
[store]
path = "jobs.sqlite3"
""")
        secret = secrets.token_hex(16)
        fake = FakeSlack().start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RESTORE_BOT_"))}
        env.update(SLACK_BOT_TOKEN="xoxb-" + secrets.token_hex(6), SLACK_SIGNING_SECRET=secret,
                   SLACK_API_URL=fake.api_url, PYTHONUNBUFFERED="1", TMPDIR=tmpdir)
        bot = Bot(config, env, tmp_path / "serve.log", tmpdir)
        try:
            bot.start()
            time.sleep(1.5)  # the watcher takes its starting position
            yield src, fake, SlackSigner(bot.url, secret, fake), tmp_path
        finally:
            bot.stop()
            bot.sweep()
            fake.stop()
            owned.remove()


def _alerts(calls):
    return [c for c in calls if c.method == "chat.postMessage" and "🚨" in c.text]


def _button(call, action_id: str) -> str:
    """The value of an alert's button, as Slack sends it back when clicked."""
    return next(e["value"] for b in call.body["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == action_id)


def test_alert_acknowledge_oncall_and_archive(served):
    src, fake, signer, work = served
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE club.a")
    first = fake.wait_for(_alerts, timeout=20, what="the DROP TABLE alert")[0]
    assert "<@UKIM>" in first.text and "DROP TABLE club.a" in first.text and first.channel == CHANNEL

    time.sleep(0.5)  # a person reads before clicking; the bot records the message's ts meanwhile
    answer, _ = signer.click("alert_ack", _button(first, "alert_ack"), "UKIM", CHANNEL)
    assert answer.status == 200
    acked = fake.wait_for(lambda calls: [c for c in calls if "Acknowledged by <@UKIM>" in c.text], timeout=10,
                          what="the acknowledgement")[0]
    assert acked.thread_ts == first.ts

    answer, key = signer.command("", "USOMEONE", CHANNEL, command="/oncall")
    assert answer.status == 200
    shown = fake.wait_for(lambda calls: [c for c in calls if c.path == f"/response_url/{key}"], timeout=10,
                          what="the /oncall reply")[0]
    assert "<@UKIM>" in shown.text
    answer, key = signer.command("set <@ULEE|lee>", "USTRANGER", CHANNEL, command="/oncall")
    refused = fake.wait_for(lambda calls: [c for c in calls if c.path == f"/response_url/{key}"], timeout=10,
                            what="the refusal")[0]
    assert "<@ULEE> is on call" not in refused.text and "operator" in refused.text, refused.text
    answer, _ = signer.command("set <@ULEE|lee>", "UOPS", CHANNEL, command="/oncall")
    fake.wait_for(lambda calls: [c for c in calls if "<@ULEE> is on call now" in c.text], timeout=10,
                  what="the hand-over")

    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE club")
    second = fake.wait_for(lambda calls: len(_alerts(calls)) >= 2 and _alerts(calls), timeout=20,
                           what="the DROP DATABASE alert")[1]
    assert "<@ULEE>" in second.text and "DROP DATABASE club" in second.text

    # "Plan restore" asks for a plan that stops right before the DROP DATABASE
    spec = _button(second, "alert_plan")
    answer, _ = signer.click("alert_plan", spec, "UOPS", CHANNEL)
    assert answer.status == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (plans := JobStore(work / "jobs.sqlite3").jobs(kind="plan")):
        time.sleep(0.1)
    assert [(j.requester, j.args.get("stop_before")) for j in plans] == [("UOPS", spec)], plans
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW BINLOG EVENTS IN 'binlog.000001'")
        events = cur.fetchall()
    drop = next(i for i, e in enumerate(events) if "DROP DATABASE" in e[5])
    # the spec is the GTID or FILE:POS of the transaction holding the DROP (its GTID event, just before it)
    assert spec in (f"binlog.000001:{events[drop - 1][1]}", events[drop - 1][5].split()[-1]), (spec, events[drop - 1])
    assert not any(WATCH_PASSWORD in c.text for c in fake.snapshot())
    assert WATCH_PASSWORD not in (work / "serve.log").read_text()

    deadline = time.monotonic() + 15
    archived = work / "archive" / "binlog.000001"
    while time.monotonic() < deadline and not (archived.exists() and archived.stat().st_size > 1000):
        time.sleep(0.2)
    assert archived.exists() and archived.read_bytes()[:4] == b"\xfebin"
