"""`serve` with [watch] and [keep]: alerts reach Slack, /oncall and Acknowledge work, the archive fills."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time

import pytest

from fake_slack import FakeSlack, SlackSigner
from restore.sandbox import Sandbox
from test_slack_scenarios import Bot

CHANNEL = "CWATCH"


@pytest.fixture
def served(tmp_path):
    tmpdir = tempfile.mkdtemp(prefix="rbw-")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.a (id INT PRIMARY KEY)")
            cur.execute("CREATE TABLE club.b (id INT PRIMARY KEY)")
        config = tmp_path / "restore-bot.toml"
        config.write_text(f"""
[slack]
channel = "{CHANNEL}"
[access]
operators = ["UOPS"]
approvers = ["UAPP"]
[watch]
source = {json.dumps(src.url)}
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
            shutil.rmtree(tmpdir, ignore_errors=True)


def _alerts(calls):
    return [c for c in calls if c.method == "chat.postMessage" and "🚨" in c.text]


def test_alert_acknowledge_oncall_and_archive(served):
    src, fake, signer, work = served
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE club.a")
    first = fake.wait_for(_alerts, timeout=20, what="the DROP TABLE alert")[0]
    assert "<@UKIM>" in first.text and "DROP TABLE club.a" in first.text and first.channel == CHANNEL

    time.sleep(0.5)  # a person reads before clicking; the bot records the message's ts meanwhile
    answer, _ = signer.click("alert_ack", f"binlog.000001:{first.text.split('binlog.000001:')[1].split()[0]}",
                             "UKIM", CHANNEL)
    assert answer.status == 200
    acked = fake.wait_for(lambda calls: [c for c in calls if "Acknowledged by <@UKIM>" in c.text], timeout=10,
                          what="the acknowledgement")[0]
    assert acked.thread_ts == first.ts

    answer, key = signer.command("", "USOMEONE", CHANNEL, command="/oncall")
    assert answer.status == 200
    shown = fake.wait_for(lambda calls: [c for c in calls if c.path == f"/response_url/{key}"], timeout=10,
                          what="the /oncall reply")[0]
    assert "<@UKIM>" in shown.text
    answer, _ = signer.command("set <@ULEE|lee>", "USTRANGER", CHANNEL, command="/oncall")
    answer, _ = signer.command("set <@ULEE|lee>", "UOPS", CHANNEL, command="/oncall")
    fake.wait_for(lambda calls: [c for c in calls if "<@ULEE> is on call now" in c.text], timeout=10,
                  what="the hand-over")

    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE club")
    second = fake.wait_for(lambda calls: len(_alerts(calls)) >= 2 and _alerts(calls), timeout=20,
                           what="the DROP DATABASE alert")[1]
    assert "<@ULEE>" in second.text and "DROP DATABASE club" in second.text
    assert not any("s3cret" in c.text for c in fake.snapshot())

    deadline = time.monotonic() + 15
    archived = work / "archive" / "binlog.000001"
    while time.monotonic() < deadline and not (archived.exists() and archived.stat().st_size > 1000):
        time.sleep(0.2)
    assert archived.exists() and archived.read_bytes()[:4] == b"\xfebin"
