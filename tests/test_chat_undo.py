"""`/restore undo` from chat against real servers: Slack requests signed as Slack signs them reach
the bot (bolt behind a real HTTP server), its worker and reporter run in this process, and what
the bot says is read back from the fake Slack Web API's record.

The story is test_undo's: a DELETE without WHERE on two tables in one transaction, an UPDATE
without WHERE on another, later traffic with a rename and a later write to the same column. Both
are undone from the preview card; the damaged tables must equal an oracle server given the same
history without the disasters (CHECKSUM TABLE), and the conflict must be on the card.
"""
from __future__ import annotations

import io
import json
import re
import threading
import time

import pytest
from flask import Flask
from rich.console import Console
from werkzeug.serving import make_server

from bot.config import load_settings
from bot.console import ConsoleSession
from bot.kakao import TOKEN_HEADER, register_kakao
from bot.reporter import Reporter
from bot.serve import build_http
from bot.slack_app import SlackPoster, build_bolt_app, register_slack, web_client
from bot.worker import Worker
from handlers.alerts import AlertPoster, AlertStore, Oncall
from handlers.app import application
from handlers.commands import ALERT_UNDO, REJECT_ACTION, UNDO_APPROVE_ACTION
from handlers.jobstore import JobStore
from restore.live.watcher import Alert
from tests.support.db import checksums, master_status, target_url
from tests.support.fake_slack import FakeSlack, SlackSigner
from tests.support.undo_story import history as _history, last_gtid as _last_gtid, run as _run

pytestmark = pytest.mark.mysql

OPS1, APP1, APP2 = "UOPS1", "UAPP1", "UAPP2"
SECRET, TOKEN, CHANNEL, KAKAO_TOKEN = "signing-secret-undo", "xoxb-undo", "CINC", "kakao-token-undo"
WAIT = 60.0


def _settings(tmp_path, source, api_url: str = "http://127.0.0.1:9/api/"):
    """Stage is `source` by its socket, prod the same server by TCP (a target with a prod entry)."""
    config = tmp_path / "restore-bot.toml"
    people = [OPS1, APP1, APP2]
    config.write_text(f"""
[source]
binlogs = "{source.binlog_dir}"
[targets.stage]
dsn = "{target_url(source)}"
[targets.prod]
dsn = "{source.url}"
[slack]
channel = "{CHANNEL}"
[access]
operators = {json.dumps(people + [f"kakao:{p}" for p in people])}
approvers = {json.dumps(people + [f"kakao:{p}" for p in people])}
[kakao]
token = "{KAKAO_TOKEN}"
[store]
path = "{tmp_path / 'jobs.sqlite3'}"
""")
    return load_settings(str(config), env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
                                           "SLACK_API_URL": api_url})


class Chat:
    """The bot in this process (dispatcher, bolt over HTTP, worker, reporter) over one source server:
    stage is that server by its socket, prod the same server by TCP (a target with a prod entry)."""

    def __init__(self, tmp_path, fake: FakeSlack, source) -> None:
        self.fake, self.source = fake, source
        self.settings = _settings(tmp_path, source, fake.api_url)
        self.store = JobStore(self.settings.store_path)
        self.client = web_client(TOKEN, fake.api_url)
        app = application(self.settings, self.store, self.settings.access, channel=CHANNEL)
        web = build_http(self.store)
        register_slack(web, build_bolt_app(self.settings, app, self.client))
        self.server = make_server("127.0.0.1", 0, web, threaded=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.signer = SlackSigner(f"http://127.0.0.1:{self.server.server_port}", SECRET, fake)
        self.worker = Worker(self.settings, self.store)
        threading.Thread(target=self.worker.run_forever, kwargs={"poll": 0.05}, daemon=True).start()
        self.reporter = Reporter(self.store, SlackPoster(self.client, CHANNEL), interval=0.1, poll=0.05).start()

    def close(self) -> None:
        self.worker.stopping.set()
        self.reporter.stop()
        self.server.shutdown()

    # -- talking to the bot --------------------------------------------------------------------
    def undo(self, text: str, user: str = OPS1) -> str:
        """`/restore undo TEXT`: the job id from the acknowledgement."""
        mark = self.fake.mark()
        answer, key = self.signer.command(f"undo {text}", user, CHANNEL)
        assert answer.status == 200, answer
        return self._queued(mark, key)

    def _queued(self, mark: int, key: str) -> str:
        def ack(calls):
            return [m[1] for c in calls[mark:] if c.path == f"/response_url/{key}" or c.method == "chat.postEphemeral"
                    if (m := re.search(r"job \*(R\d+)\* queued", c.text))]
        return self.fake.wait_for(ack, 10, "the undo job's acknowledgement")[0]

    def click(self, action: str, value: str, user: str) -> int:
        mark = self.fake.mark()
        answer, _key = self.signer.click(action, value, user, CHANNEL)
        assert answer.status == 200, answer
        return mark

    def said_to(self, user: str, since: int, text: str) -> str:
        return self.fake.wait_for(lambda calls: [c.text for c in calls[since:] if c.method == "chat.postEphemeral"
                                                 and c.body.get("user") == user and text in c.text],
                                  10, f"an answer to {user} saying {text!r}")[0]

    # -- the card --------------------------------------------------------------------------------
    def versions(self, job: str, calls=None) -> list:
        calls = self.fake.snapshot() if calls is None else calls
        posts = [c for c in calls if c.method == "chat.postMessage" and not c.thread_ts and f"`{job}`" in c.text]
        if not posts:
            return []
        return posts[:1] + [c for c in calls if c.method == "chat.update" and c.body.get("ts") == posts[0].ts]

    def thread(self, job: str) -> list[str]:
        calls = self.fake.snapshot()
        first = self.versions(job, calls)[:1]
        return [c.text for c in calls if first and c.method == "chat.postMessage" and c.thread_ts == first[0].ts]

    def card(self, job: str, *, says: str, timeout: float = WAIT):
        """The newest version of the job's card once it says `says`."""
        def now(calls):
            versions = self.versions(job, calls)
            return versions[-1] if versions and says in versions[-1].text else None
        try:
            return self.fake.wait_for(now, timeout, f"card {job} saying {says!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\njob: {self.store.get(job)}\nevents: {self.store.events(job)}") from None

    def preview(self, job: str):
        """The preview card, with its two buttons (value: the job)."""
        card = self.card(job, says=UNDO_APPROVE_ACTION)
        blocks = card.body["blocks"]
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        buttons = {e["action_id"]: e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]}
        assert buttons == {UNDO_APPROVE_ACTION: job, REJECT_ACTION: job}, blocks
        return card

    def finished(self, job: str, state: str):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            current = self.store.get(job)
            if current.finished and current.posted_version >= current.card_version \
                    and not self.store.unposted_events(job):
                assert current.state == state, (current.state, current.error, self.store.events(job))
                return current
            time.sleep(0.05)
        raise AssertionError(f"job {job} did not finish: {self.store.get(job)}")


@pytest.fixture
def fake():
    with FakeSlack() as server:
        yield server


@pytest.fixture
def chat_on(tmp_path, fake):
    made = []

    def make(source) -> Chat:
        made.append(Chat(tmp_path, fake, source))
        return made[0]
    yield make
    for chat in made:
        chat.close()


def test_the_disasters_undone_from_chat_equal_the_oracle_and_prod_needs_a_second_approver(
        source_factory, target, chat_on):
    source = source_factory("ROW")
    marks = _history(source, disaster=True)
    _history(target, disaster=False)
    chat = chat_on(source)

    # the DELETE (two tables, one transaction) on stage: the preview card, then its requester approves
    job = chat.undo(marks["delete"])
    card = chat.preview(job)
    assert "shop.orders*: 19 to insert back" in card.text and "shop.log*: 4 to insert back" in card.text, card.text
    assert "note 1 😀 ñ" in card.text                                   # a sample of decoded values
    assert "conflict* shop.orders id=5" in card.text and "reused key" in card.text   # the key taken again
    assert "later transactions on these rows" in card.text
    assert chat.store.get(job).state == "awaiting_approval"
    chat.click(UNDO_APPROVE_ACTION, job, OPS1)
    done = chat.finished(job, "succeeded")
    final = chat.card(job, says="succeeded")
    assert "Undone on stage in one transaction" in final.text and "Verified: every written row" in final.text
    assert UNDO_APPROVE_ACTION not in final.text, final.text   # the buttons go once answered
    steps = chat.thread(job)
    for step in ("▶ read started", "▶ preview started", "preview `", "Approved by <@UOPS1>", "▶ apply started",
                 "✓ verify", "✔ succeeded"):
        assert any(t.startswith(step) or step in t for t in steps), (step, steps)
    assert done.approver == OPS1

    # the UPDATE on prod: the conflict on the card; its requester may not approve it, a second person does
    job2 = chat.undo(f"{marks['update']} prod")
    card = chat.preview(job2)
    assert "conflict* shop.customer id=3 column email" in card.text, card.text
    assert "'c3@example.com'" in card.text and "'again3@example.com'" in card.text
    assert "a *different* approver" in card.text
    since = chat.click(UNDO_APPROVE_ACTION, job2, OPS1)
    assert "you requested" in chat.said_to(OPS1, since, "a *different* approver must approve")
    assert chat.store.get(job2).state == "awaiting_approval"
    chat.click(UNDO_APPROVE_ACTION, job2, APP1)
    chat.finished(job2, "succeeded")
    assert "1 conflict(s), kept" in chat.card(job2, says="succeeded").text

    got, want = checksums(source.connect(), ["shop"]), checksums(target.connect(), ["shop"])
    assert got == want, (got, want)
    audit = [(e["actor"], e["action"], e["job"]) for e in chat.store.audit_log(100)]
    for entry in [(OPS1, "queued undo", job), (OPS1, "approved undo", job), ("restore-bot", "undo preview", job),
                  ("restore-bot", "undo applied", job), (OPS1, "refused approve", job2), (APP1, "approved undo", job2)]:
        assert entry in audit, (entry, audit)

    # again: the target holds the record of the undo, nothing is written
    job3 = chat.undo(marks["delete"])
    chat.finished(job3, "succeeded")
    assert "Undone already on stage" in chat.card(job3, says="succeeded").text
    assert checksums(source.connect(), ["shop"]) == want


@pytest.fixture
def small(source_factory):
    source = source_factory("ROW")
    _run(source, ["CREATE DATABASE s", "CREATE TABLE s.t (id INT PRIMARY KEY, v VARCHAR(40))",
                  "INSERT INTO s.t VALUES " + ", ".join(f"({i}, 'v{i}')" for i in range(1, 13))])
    return source


def test_reject_writes_nothing_and_a_changed_target_asks_for_a_new_preview(small, chat_on):
    chat = chat_on(small)
    _run(small, ["DELETE FROM s.t"])
    gtid = _last_gtid(small)
    empty = checksums(small.connect(), ["s"])

    job = chat.undo(gtid)
    chat.preview(job)
    chat.click(REJECT_ACTION, job, APP1)
    chat.finished(job, "rejected")
    assert "Rejected by <@UAPP1>" in "\n".join(chat.thread(job))
    assert checksums(small.connect(), ["s"]) == empty

    job = chat.undo(gtid)
    chat.preview(job)
    _run(small, ["SET sql_log_bin = 0", "INSERT INTO s.t VALUES (2, 'written after the preview')"])
    chat.click(UNDO_APPROVE_ACTION, job, OPS1)
    failed = chat.finished(job, "failed")
    assert "would now differ from preview" in failed.error["message"], failed.error
    assert f"/restore undo {gtid}` for a new preview" in chat.card(job, says="failed").text
    with small.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, v FROM s.t")
        assert cur.fetchall() == ((2, "written after the preview"),)


def test_undo_this_on_an_alert_opens_the_preview_card(small, chat_on):
    chat = chat_on(small)
    file, pos, _gtid = master_status(small.connect())
    _run(small, ["DELETE FROM s.t"])
    gtid = _last_gtid(small)
    alert = Alert(key=f"{file}:{pos}:1:0", reason="mass DELETE on s.t: 12 of about 12 rows", statement="",
                  database="s", table="t", rows=12, file=file, pos=pos, tx_file=file, tx_pos=pos, gtid=gtid,
                  server_time=int(time.time()), thread_id=None, detected_at=time.time())
    alerts = AlertStore(str(chat.settings.store_path), "src")
    poster = AlertPoster(chat.client, CHANNEL, alerts, Oncall(chat.settings, alerts), "src", escalate_after=0)
    mark = chat.fake.mark()
    poster.post(alert)
    [posted] = chat.fake.find("chat.postMessage", since=mark, text="mass DELETE on s.t")
    blocks = posted.body["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    buttons = {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert buttons[ALERT_UNDO]["text"]["text"] == "Undo this" and buttons[ALERT_UNDO]["value"] == gtid

    since = chat.click(ALERT_UNDO, gtid, OPS1)
    job = chat._queued(since, "none")
    card = chat.preview(job)
    assert f"transaction `{gtid}`" in card.text and "s.t*: 12 to insert back" in card.text, card.text
    assert chat.store.get(job).args == {"event": gtid, "guarded": False}


def _rows(server) -> tuple:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, v FROM s.t ORDER BY id")
        return cur.fetchall()


def test_the_console_asks_who_approves_and_production_refuses_the_requester(small, tmp_path):
    before = _rows(small)
    _run(small, ["DELETE FROM s.t"])
    gtid = _last_gtid(small)
    settings = _settings(tmp_path, small)
    out, asked = io.StringIO(), []
    answers = iter([OPS1, APP1])   # the requester first (refused on prod), then a second approver

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)
    with ConsoleSession(settings, JobStore(settings.store_path), settings.access, user=OPS1,
                        console=Console(file=out, width=300), ask=ask) as session:
        session.repl([f"undo {gtid} prod"])
    text = out.getvalue()
    assert asked == ["Name of the operator approving undo R1 (empty rejects): "] * 2, asked
    assert "s.t: 12 to insert back" in text and "a different approver" in text, text
    assert "you requested R1 yourself" in text and "Approved by @UAPP1" in text, text
    assert "Undone on prod in one transaction" in text and "every written row holds its intended image" in text
    assert _rows(small) == before


def test_kakao_answers_with_the_preview_and_its_quick_replies_then_applies(small, tmp_path, fake):
    before = _rows(small)
    _run(small, ["DELETE FROM s.t"])
    gtid = _last_gtid(small)
    settings = _settings(tmp_path, small, fake.api_url)
    store = JobStore(settings.store_path)
    web = Flask("kakao-undo-test")
    register_kakao(web, settings, store, application(settings, store, settings.access, channel=None), poll=0.05)
    client = web.test_client()
    worker = Worker(settings, store)
    threading.Thread(target=worker.run_forever, kwargs={"poll": 0.05}, daemon=True).start()

    def say(text: str, key: str) -> dict:
        req = {"utterance": text, "user": {"id": OPS1}, "callbackUrl": fake.response_url(key)}
        resp = client.post("/kakao/skill", json={"userRequest": req}, headers={TOKEN_HEADER: KAKAO_TOKEN})
        assert resp.status_code == 200 and resp.get_json()["useCallback"], resp.get_json()
        return fake.wait_for(lambda calls: [c.body for c in calls if c.path == f"/response_url/{key}"], WAIT,
                             f"the callback {key}")[0]
    try:
        preview = say(f"/restore undo {gtid}", "k1")
        shown = "\n".join(o["simpleText"]["text"] for o in preview["template"]["outputs"])
        assert "s.t: 12 to insert back" in shown and "Approve undo" in shown, shown
        replies = {r["label"]: r["messageText"] for r in preview["template"]["quickReplies"]}
        assert replies["Approve R1"] == "/restore undo approve R1" and replies["Reject R1"] == "/restore reject R1"
        done = say(replies["Approve R1"], "k2")
        shown = "\n".join(o["simpleText"]["text"] for o in done["template"]["outputs"])
        assert "Undone on stage in one transaction" in shown, shown
    finally:
        worker.stopping.set()
    assert _rows(small) == before
