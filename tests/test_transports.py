"""Every command through every transport: the console, Slack (requests signed as Slack signs them,
against the fake Web API) and KakaoTalk's skill endpoint each reach the same dispatcher and give
the same answer; the ones that start work create the same job.

No server is started: jobs are only queued (no worker runs), which is all a transport decides.
Each case gets a fresh job store; `setup` puts in it what the command needs (a job to show,
approve or abort). The request counter and the audit log prove the shared middleware ran.
"""
from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from rich.console import Console
from werkzeug.serving import make_server

from bot.config import load_settings
from bot.console import ConsoleSession
from bot.kakao import TOKEN_HEADER, register_kakao
from bot.serve import build_http
from bot.slack_app import build_bolt_app, register_slack, web_client
from handlers.app import application
from handlers.commands import ALERT_PLAN, ALERT_UNDO, APPROVE_ACTION, UNDO_APPROVE_ACTION
from handlers.jobstore import JobStore
from tests.support.fake_slack import FakeSlack, SlackSigner

OPS, APPROVER, STRANGER = "UOPS1", "UAPP1", "UNOBODY9"
SECRET, TOKEN, KAKAO_TOKEN = "signing-secret-5e1f", "xoxb-transports", "kakao-token-transports"
CHANNEL = "CINC"
ANSWER_SECONDS = 10.0   # Slack answers after the acknowledgement, on bolt's threads


def _config(tmp_path, api_url: str) -> object:
    (tmp_path / "backups").mkdir()
    config = tmp_path / "restore-bot.toml"
    config.write_text(f"""
[targets.prod]
dsn = "mysql://root@127.0.0.1:1"
[slack]
channel = "{CHANNEL}"
[access]
operators = ["{OPS}", "kakao:{OPS}"]
approvers = ["{APPROVER}", "kakao:{APPROVER}"]
[keep]
backup_dir = "{tmp_path / 'backups'}"
[oncall]
rotation = ["UKIM", "ULEE"]
rotation_start = "2026-01-05"
[kakao]
token = "${{KAKAO_TOKEN}}"
[store]
path = "{tmp_path / 'jobs.sqlite3'}"
""")
    return load_settings(str(config), env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
                                           "SLACK_API_URL": api_url, "KAKAO_TOKEN": KAKAO_TOKEN})


def _words(text: str) -> str:
    """What a person reads, whatever the transport's markup: no *bold*, `code`, <@user> or <#channel> marks."""
    return re.sub(r"[*`<>@#]", "", text)


class ConsoleWay:
    name = "console"

    def __init__(self, tmp_path, fake: FakeSlack) -> None:
        self.settings = _config(tmp_path, fake.api_url)
        self.store = JobStore(self.settings.store_path)
        self.out = io.StringIO()
        self.session = ConsoleSession(self.settings, self.store, self.settings.access, user=OPS,
                                      console=Console(file=self.out, width=400), ask=lambda prompt: "")

    def user(self, who: str) -> str:
        return who

    def send(self, text: str, who: str, expect: str) -> str:
        start = len(self.out.getvalue())
        self.session.answer(text, user=who)
        return _words(self.out.getvalue()[start:])

    def close(self) -> None:
        pass


class KakaoWay:
    name = "kakao"

    def __init__(self, tmp_path, fake: FakeSlack) -> None:
        self.settings = _config(tmp_path, fake.api_url)
        self.store = JobStore(self.settings.store_path)
        web = Flask("kakao-transport-test")
        register_kakao(web, self.settings, self.store, application(self.settings, self.store, self.settings.access,
                                                                   channel=None))
        self.client = web.test_client()

    def user(self, who: str) -> str:
        return f"kakao:{who}"

    def send(self, text: str, who: str, expect: str) -> str:
        req = {"utterance": text, "user": {"id": who, "type": "botUserKey"}, "lang": "ko"}
        resp = self.client.post("/kakao/skill", json={"userRequest": req}, headers={TOKEN_HEADER: KAKAO_TOKEN})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        doc = resp.get_json()
        texts = [o["simpleText"]["text"] for o in doc["template"]["outputs"]]
        assert doc["version"] == "2.0" and 1 <= len(texts) <= 3 and all(len(t) <= 1000 for t in texts), doc
        return _words("\n".join(texts))

    def close(self) -> None:
        pass


class SlackWay:
    """The bolt app behind a real HTTP server; requests signed with the signing secret; what the bot
    says (ack, respond(), chat.*) is read back from the fake Web API's record."""
    name = "slack"

    def __init__(self, tmp_path, fake: FakeSlack) -> None:
        self.fake = fake
        self.settings = _config(tmp_path, fake.api_url)
        self.store = JobStore(self.settings.store_path)
        app = application(self.settings, self.store, self.settings.access, channel=CHANNEL)
        web = build_http(self.store)
        register_slack(web, build_bolt_app(self.settings, app, web_client(TOKEN, fake.api_url)))
        self.server = make_server("127.0.0.1", 0, web, threaded=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.signer = SlackSigner(f"http://127.0.0.1:{self.server.server_port}", SECRET, fake)

    def user(self, who: str) -> str:
        return who

    def send(self, text: str, who: str, expect: str) -> str:
        words = text.split(maxsplit=1)   # `/backup list` is Slack's /backup command with the text "list"
        command, rest = (f"/{words[0].lstrip('/')}", words[1] if len(words) > 1 else "") \
            if words and words[0].lstrip("/") in ("backup", "oncall", "restore") else ("/restore", text)
        mark = self.fake.mark()
        answer, key = self.signer.command(rest, who, CHANNEL, command=command)
        assert answer.status == 200, answer
        return self.said(mark, answer.json().get("text") or "", expect)

    def click(self, action_id: str, value: str, who: str, expect: str) -> str:
        mark = self.fake.mark()
        answer, _key = self.signer.click(action_id, value, who, CHANNEL)
        assert answer.status == 200, answer
        return self.said(mark, "", expect)

    def said(self, mark: int, acked: str, expect: str) -> str:
        def text(calls) -> str:
            return _words("\n".join([acked] + [c.text for c in calls[mark:]]))
        try:
            return self.fake.wait_for(lambda calls: expect in text(calls) and text(calls), ANSWER_SECONDS,
                                      f"an answer saying {expect!r}")
        except AssertionError:
            return text(self.fake.snapshot())

    def close(self) -> None:
        self.server.shutdown()


WAYS = {"console": ConsoleWay, "slack": SlackWay, "kakao": KakaoWay}


@dataclass
class Case:
    text: str                       # as typed on the console or KakaoTalk (Slack: the slash command and its text)
    says: str                       # in the answer, on every transport
    routed: str = ""                # the Command name the dispatcher counts ("invalid": could not be read)
    who: str = OPS
    setup: Callable = lambda store: None
    job: dict = field(default_factory=dict)   # the job the command creates: kind and args


def _prod_waiting(store: JobStore) -> None:
    store.create("prod", "prod", "USOMEONE", state="awaiting_approval", args={"stop_before": "auto", "skips": []})


def _undo_waiting(store: JobStore) -> None:
    """An undo job on prod whose preview (as the worker stores it) waits for approval."""
    job = store.create("undo", "prod", "USOMEONE", args={"event": "0-1-5", "guarded": True})
    store.transition(job.id, ("queued",), "running")
    store.transition(job.id, ("running",), "awaiting_approval", result={"undo": {"preview_id": "p-1"}})


CASES = [
    Case("help", "/restore stage [stop=SPEC] [skip=SPEC ...] [--restart]", "help"),
    Case("/restore", "/backup now · /backup list", "help"),
    Case("help", "(--stop-before SPEC and --skip SPEC work too.)", "help"),   # the end of the usage (Kakao: 2 outputs)
    Case("frobnicate", "I don't know frobnicate.", "invalid"),
    Case("plan --stop-before", "argument --stop-before: expected one argument", "invalid"),
    Case("plan skip=0-1-5", "queued", "plan", job={"kind": "plan", "args": {"stop_before": "auto", "skips": ["0-1-5"]}}),
    Case("stage stop=end --restart", "queued", "stage",
         job={"kind": "stage", "args": {"stop_before": "end", "skips": [], "restart": True}}),
    Case("stage", "you are not on restore-bot's operator list, so I can't start a stage job", "stage", who=STRANGER),
    Case("drill", "queued", "drill", job={"kind": "drill", "args": {"stop_before": "auto", "skips": []}}),
    Case("prod", "There is no stage run that verified OK for this plan", "prod"),
    Case("status R99", "There is no job R99.", "status"),
    Case("status", "Stage restore R1 — queued", "status",
         setup=lambda store: store.create("stage", "stage", OPS)),
    Case("abort", "Abort requested for job R1", "abort", setup=lambda store: store.create("stage", "stage", OPS)),
    Case("approve R1", "Approved by", "approve", who=APPROVER, setup=_prod_waiting),
    Case("approve R1", "only approvers may approve a prod restore", "approve", setup=_prod_waiting),
    Case("reject R1", "Rejected by", "reject", who=APPROVER, setup=_prod_waiting),
    Case("undo 0-1-5 prod", "queued", "undo", job={"kind": "undo", "args": {"event": "0-1-5", "guarded": True}}),
    Case("undo 0-1-5", "Undo writes into a kept server, and target stage is a throwaway sandbox", "undo"),
    Case("undo 0-1-5 prod", "so I can't start an undo", "undo", who=STRANGER),
    Case("undo DELETE", "undo takes the transaction's GTID", "invalid"),
    Case("undo approve R1", "Approved by", "undo approve", who=APPROVER, setup=_undo_waiting),
    Case("undo approve R1", "only approvers may approve an undo", "undo approve", setup=_undo_waiting),
    Case("history", "request history", "history"),
    Case("choice", "No saved choice", "choice"),
    Case("choice clear", "No saved choice", "choice clear"),
    Case("backup list", "No backups yet", "backup list"),
    Case("/backup frob", "invalid choice: 'frob'", "invalid"),
    Case("backup now", "Backup job R1 queued", "backup now", job={"kind": "backup", "args": {}}),
    Case("oncall", "On call now:", "oncall"),
    Case("oncall set U2", "is on call now (set by", "oncall set"),
    Case("/oncall set", "/oncall set @user", "invalid"),
    Case("clusters", "default", "clusters"),   # a file without [clusters] is the one cluster "default"
    Case("plan --cluster default", "queued", "plan", job={"kind": "plan", "args": {"stop_before": "auto", "skips": []}}),
    Case("stage billing", "There is no cluster billing (choices: default).", "stage"),
]


def _counted(name: str) -> float:
    return REGISTRY.get_sample_value("restore_bot_requests_total", {"command": name}) or 0.0


@pytest.fixture(scope="module")
def fake():
    with FakeSlack() as server:
        yield server


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.text or 'empty'}{'-by-' + c.who if c.who != OPS else ''}")
def test_every_command_through_every_transport(way, case, tmp_path, fake):
    transport = WAYS[way](tmp_path, fake)
    try:
        case.setup(transport.store)
        before = [j.id for j in transport.store.jobs(limit=100)]
        counted = _counted(case.routed)
        answer = transport.send(case.text, case.who, _words(case.says))
    finally:
        transport.close()
    assert _words(case.says) in answer, f"{way}: {case.text!r} answered:\n{answer}"
    assert _counted(case.routed) == counted + 1, f"{way}: {case.text!r} was not counted as {case.routed!r}"
    if case.routed != "invalid":   # the dispatcher's audit of the request names its user
        requests = [e for e in transport.store.audit_log(100) if e["action"] == f"request {case.routed}"]
        assert [e["actor"] for e in requests] == [transport.user(case.who)], transport.store.audit_log(100)
    new = [j for j in transport.store.jobs(limit=100) if j.id not in before]
    if case.job:
        assert [(j.kind, j.args, j.requester, j.origin, j.state) for j in new] == \
            [(case.job["kind"], case.job["args"], transport.user(case.who), way, "queued")]
        assert new[0].id in answer, answer
    else:
        assert new == [], f"{way}: {case.text!r} created {new}"


def test_slack_buttons_go_through_the_dispatcher(tmp_path, fake):
    """*Approve* on a prod approval request, an alert's *Plan restore* and *Undo this*, and an undo
    preview's *Approve undo* are Commands like typed ones."""
    slack = SlackWay(tmp_path, fake)
    try:
        _prod_waiting(slack.store)
        approved = slack.click(APPROVE_ACTION, "R1", APPROVER, "Approved by")
        planned = slack.click(ALERT_PLAN, "0-1-77", OPS, "queued")
        refused = slack.click(ALERT_PLAN, "0-1-78", STRANGER, "operator list")
        _undo_waiting(slack.store)
        undo = slack.click(UNDO_APPROVE_ACTION, "R3", APPROVER, "Approved by")
        alerted = slack.click(ALERT_UNDO, "0-1-79", OPS, "busy")
    finally:
        slack.close()
    assert "Approved by UAPP1: prod job R1 starts now." in approved
    assert slack.store.get("R1").state == "queued" and slack.store.get("R1").approver == APPROVER
    plan = slack.store.get("R2")
    assert plan.kind == "plan" and plan.args == {"stop_before": "0-1-77", "skips": []} and "R2" in planned
    assert "so I can't start a plan job" in refused and slack.store.get("R3").kind == "undo"   # R3: the undo set up
    assert "Approved by UAPP1: undo job R3 applies preview p-1 now." in undo
    assert slack.store.get("R3").state == "queued" and slack.store.get("R3").approver == APPROVER
    # stage is a throwaway sandbox here: an alert's undo goes to prod, where the approved R1 and R3 wait to run
    assert "Target prod is busy with job R3" in alerted and slack.store.get("R4") is None
    actions = [(e["actor"], e["action"]) for e in slack.store.audit_log(100)]
    assert (APPROVER, "request approve") in actions and (STRANGER, "refused plan") in actions
    assert (APPROVER, "approved undo") in actions and (OPS, "request undo") in actions
