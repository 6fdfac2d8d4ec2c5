"""The KakaoTalk skill endpoint with real skill JSON, a real worker and real servers.

One small incident (a `club` database dumped, written to, dropped) and a production server are
shared by the module; a local HTTP server stands in for Kakao's callback URLs and for the team's
webhook receiver, records every call and lets the tests check the HMAC signatures. The scenarios
run in file order: plan and stage (with a callback) before prod, approved by a second Kakao user.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask import Flask

from bot.config import Secret, load_settings
from bot.kakao import TOKEN_HEADER, register_kakao
from bot.kakao_webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    KakaoWebhookPoster,
    WebhookError,
    from_kakao,
    kakao_reporter,
    verify,
)
from bot.reporter import Reporter
from bot.worker import Worker
from handlers.alerts import AlertStore
from handlers.app import application
from handlers.jobstore import JobStore
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums
from tests.support.incident_factory import club_posts

TOKEN = "kakao-token-3f9a1c"
SECRET = "webhook-secret-77b2e0"
JOB_TIMEOUT = 90.0

pytestmark = pytest.mark.timeout(240)


class Recorder:
    """A local HTTP server recording every POST: Kakao's callback URLs and the webhook receiver."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.script: dict[str, list[int]] = {}  # path -> statuses to answer first (then 200)
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rec.lock:
                    rec.calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    queue = rec.script.get(self.path)
                    status = queue.pop(0) if queue else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"taskId": "t1", "status": "SUCCESS"}' if status == 200 else b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["path"] == path]

    def texts(self, path: str = "/hook") -> list[str]:
        return [json.loads(c["body"])["text"] for c in self.at(path)]


def wait_for(what, timeout: float = JOB_TIMEOUT, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := what():
            return result
        time.sleep(step)
    return what()


def skill_request(utterance: str, user: str, callback: str | None = None) -> dict:
    """A skill request as Kakao i Open Builder sends it."""
    req = {"timezone": "Asia/Seoul", "params": {"ignoreMe": "true"}, "block": {"id": "blk1", "name": "restore"},
           "utterance": utterance, "lang": "ko",
           "user": {"id": user, "type": "botUserKey", "properties": {"botUserKey": user, "bot_user_key": user}}}
    if callback:
        req["callbackUrl"] = callback
    return {"intent": {"id": "blk1", "name": "restore"}, "userRequest": req,
            "bot": {"id": "bot1", "name": "restore-bot"},
            "action": {"name": "restore", "clientExtra": None, "params": {}, "id": "act1", "detailParams": {}}}


def text_of(doc: dict) -> str:
    return doc["template"]["outputs"][0]["simpleText"]["text"]


def quick(doc: dict) -> list[str]:
    return [q["messageText"] for q in doc["template"].get("quickReplies", [])]


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def incident(tmp_path_factory):
    work = tmp_path_factory.mktemp("kakao-incident")
    inc = club_posts(40).build_on_new_source(work)
    return {"work": work, "snapshot": inc.snapshot, "binlogs": inc.binlog_dir, "before": inc.before}


@pytest.fixture(scope="module")
def prod():
    with Sandbox() as server:
        yield server


@pytest.fixture(scope="module")
def recorder():
    rec = Recorder()
    yield rec
    rec.server.shutdown()


@pytest.fixture(scope="module")
def bot(incident, prod, recorder):
    work = incident["work"]
    config = work / "restore-bot.toml"
    config.write_text(f"""
[source]
snapshots = ["{incident['snapshot']}"]
binlogs = "{incident['binlogs']}"
[targets.prod]
dsn = "mysql://root@127.0.0.1:{prod.port}?unix_socket={prod.socket}"
[store]
path = "{work / 'jobs.sqlite3'}"
[access]
operators = ["kakao:U1"]
approvers = ["kakao:U2", "kakao:U1"]  # U1 may approve, but not its own request
[kakao]
token = "${{KAKAO_TOKEN}}"
webhook_url = "{recorder.url('/hook')}"
webhook_secret = "${{KAKAO_WEBHOOK_SECRET}}"
""")
    settings = load_settings(str(config), env={"KAKAO_TOKEN": TOKEN, "KAKAO_WEBHOOK_SECRET": SECRET})
    store = JobStore(settings.store_path)
    web = Flask("restore-bot-test")
    alerts = AlertStore(str(settings.store_path), "-")
    alerts.set_oncall("kakao:U7")
    app = application(settings, store, settings.access, channel=None, alerts=alerts)
    register_kakao(web, settings, store, app)
    worker = Worker(settings, store)
    threading.Thread(target=worker.run_forever, daemon=True, name="worker").start()
    reporter = kakao_reporter(settings, store, interval=0.5, poll=0.2).start()
    client = web.test_client()

    def say(utterance: str, user: str = "U1", callback: str | None = None, token: str | None = TOKEN):
        headers = {TOKEN_HEADER: token} if token is not None else {}
        return client.post("/kakao/skill", json=skill_request(utterance, user, callback), headers=headers)

    yield {"settings": settings, "store": store, "app": app, "say": say}
    worker.stopping.set()
    reporter.stop()


def finished(store: JobStore, job_id: str):
    return wait_for(lambda: (j := store.get(job_id)) and j.finished and j)


def assert_signed(calls: list[dict]) -> None:
    for c in calls:
        h = {k.lower(): v for k, v in c["headers"].items()}
        assert verify(SECRET, h[TIMESTAMP_HEADER.lower()], c["body"], h[SIGNATURE_HEADER.lower()]), c
        assert TOKEN.encode() not in c["body"] and SECRET.encode() not in c["body"]


# -- scenarios ------------------------------------------------------------------------------------

@pytest.mark.mysql
def test_token_missing_or_wrong_is_401(bot, incident, caplog):
    say = bot["say"]
    for token in (None, "", "not-the-token", TOKEN + "x"):
        resp = say("/restore help", token=token)
        assert resp.status_code == 401, token
        assert TOKEN not in resp.get_data(as_text=True)
    assert say("/restore help").status_code == 200
    # nothing configured: every request is refused, and the log says why (never with a token in it)
    settings = load_settings(None, env={})
    web = Flask("no-token")
    register_kakao(web, settings, bot["store"], bot["app"])
    resp = web.test_client().post("/kakao/skill", json=skill_request("/restore help", "U1"),
                                  headers={TOKEN_HEADER: TOKEN})
    assert resp.status_code == 401
    assert "no [kakao] token is configured" in caplog.text and TOKEN not in caplog.text


@pytest.mark.mysql
def test_help_within_5s_and_oncall(bot):
    for utterance in ("/restore help", "restore help", "/restore"):
        t0 = time.monotonic()
        resp = bot["say"](utterance)
        assert time.monotonic() - t0 < 5
        doc = resp.get_json()
        assert resp.status_code == 200 and doc["version"] == "2.0"
        assert "/restore stage" in text_of(doc) and "*restore-bot*" not in text_of(doc)  # plain text, no mrkdwn
    assert "On call now" in text_of(bot["say"]("/oncall").get_json())
    assert "kakao:U7" in text_of(bot["say"]("oncall").get_json())
    bad = text_of(bot["say"]("/restore frobnicate").get_json())
    assert "frobnicate" in bad and "/restore plan" in bad
    assert bot["store"].jobs() == []


@pytest.mark.mysql
def test_stranger_refused(bot):
    doc = bot["say"]("/restore stage", user="U9").get_json()
    assert "kakao:U9" in text_of(doc) and "operator list" in text_of(doc)
    assert "quickReplies" not in doc["template"]
    assert bot["store"].jobs() == []
    assert any(e["actor"] == "kakao:U9" and e["action"] == "refused stage" for e in bot["store"].audit_log())


@pytest.mark.mysql
def test_plan_then_stage_to_success(bot, recorder, caplog):
    caplog.set_level(logging.DEBUG)
    store, say = bot["store"], bot["say"]
    # no callbackUrl: the answer carries the job and quick replies
    doc = say("restore plan").get_json()
    plan_id = quick(doc)[0].split()[-1]
    assert quick(doc) == [f"/restore status {plan_id}", f"/restore abort {plan_id}"], doc
    assert plan_id in text_of(doc)
    plan = finished(store, plan_id)
    assert plan.state == "succeeded", plan.error

    t0 = time.monotonic()
    resp = say("/restore stage", callback=recorder.url("/cb/stage"))
    assert time.monotonic() - t0 < 5
    doc = resp.get_json()
    assert doc["version"] == "2.0" and doc["useCallback"] is True, doc
    stage_id = store.jobs(kind="stage", limit=1)[0].id
    assert stage_id in doc["data"]["text"]
    calls = wait_for(lambda: recorder.at("/cb/stage"), timeout=60)
    assert calls, "no callback within a minute"
    cb = json.loads(calls[0]["body"])
    stage = store.get(stage_id)
    assert stage.state == "succeeded", stage.error
    assert cb["version"] == "2.0" and stage_id in text_of(cb) and "succeeded" in text_of(cb), cb
    assert f"/restore status {stage_id}" in quick(cb)

    # every step reached the webhook, signed
    assert wait_for(lambda: f"[{stage_id}] ✔ succeeded" in "\n".join(recorder.texts()), timeout=30)
    texts = recorder.texts()
    assert any(stage_id in t and "requested by @kakao:U1" in t for t in texts), texts  # the card
    for step in ("▶ replay started", "✓ replay finished", "▶ verify started", "✔ succeeded: Plan"):
        assert any(t.startswith(f"[{stage_id}] {step}") for t in texts), (step, texts)
    assert sum(t.startswith(f"[{plan_id}] ✔ succeeded") for t in texts) == 1, texts
    assert all("<@" not in t for t in texts), texts
    assert_signed(recorder.at("/hook"))
    time.sleep(1.0)
    assert len(recorder.at("/cb/stage")) == 1  # one callback per request, never more
    assert TOKEN not in caplog.text and SECRET not in caplog.text


@pytest.mark.mysql
def test_status(bot):
    stage = bot["store"].jobs(kind="stage", limit=1)[0]
    for utterance in (f"/restore status {stage.id}", f"status {stage.id.lower()}"):
        text = text_of(bot["say"](utterance, user="U2").get_json())
        assert stage.id in text and "succeeded" in text and "Verified" in text, text
    assert "no job R99" in text_of(bot["say"]("/restore status R99").get_json())


@pytest.mark.mysql
def test_callback_reports_status_when_job_outlasts_the_wait(bot, recorder):
    web = Flask("short-wait")
    register_kakao(web, bot["settings"], bot["store"], bot["app"], callback_wait=0.0)
    resp = web.test_client().post("/kakao/skill", json=skill_request("/restore plan", "U1", recorder.url("/cb/short")),
                                  headers={TOKEN_HEADER: TOKEN})
    assert resp.get_json()["useCallback"] is True
    calls = wait_for(lambda: recorder.at("/cb/short"), timeout=10)
    text = text_of(json.loads(calls[0]["body"]))
    job = bot["store"].jobs(kind="plan", limit=1)[0]
    assert "not done yet" in text and job.id in text and "succeeded" not in text, text
    assert finished(bot["store"], job.id).state == "succeeded"
    time.sleep(0.5)
    assert len(recorder.at("/cb/short")) == 1


@pytest.mark.mysql
def test_prod_approved_by_second_kakao_user(bot, recorder, prod, incident):
    store, say = bot["store"], bot["say"]
    doc = say("/restore prod").get_json()
    job = store.jobs(kind="prod", limit=1)[0]
    assert job.state == "awaiting_approval" and job.requester == "kakao:U1"
    assert "Prod restore requested" in text_of(doc) and f"/restore approve {job.id}" in text_of(doc)
    assert quick(doc) == [f"/restore approve {job.id}", f"/restore reject {job.id}"]
    # the approver is in another chat: the request goes to the team webhook too
    assert wait_for(lambda: any("Prod restore requested" in t and job.id in t for t in recorder.texts()), timeout=10)

    text = text_of(say(f"/restore approve {job.id}").get_json())  # the requester cannot approve
    assert "different" in text and store.get(job.id).state == "awaiting_approval"
    text = text_of(say(f"/restore approve {job.id}", user="U3").get_json())  # nor can a non-approver
    assert "only approvers" in text and store.get(job.id).state == "awaiting_approval"

    doc = say(f"/restore approve {job.id}", user="U2", callback=recorder.url("/cb/prod")).get_json()
    assert doc["useCallback"] is True and "Approved by @kakao:U2" in doc["data"]["text"], doc
    assert store.get(job.id).state in ("queued", "running", "succeeded")
    done = finished(store, job.id)
    assert done.state == "succeeded", done.error
    assert done.approver == "kakao:U2"
    calls = wait_for(lambda: recorder.at("/cb/prod"), timeout=60)
    assert len(calls) == 1 and "succeeded" in text_of(json.loads(calls[0]["body"]))
    with prod.connect() as conn:
        assert checksums(conn, ["club"]) == incident["before"]
    assert wait_for(lambda: any(t.startswith(f"[{job.id}] ✔ succeeded") for t in recorder.texts()), timeout=30)
    texts = recorder.texts()
    for step in ("▶ fence started", "▶ swap started", "✓ swap finished"):
        assert any(t.startswith(f"[{job.id}] {step}") for t in texts), (step, texts)
    assert_signed(recorder.at("/hook"))
    time.sleep(0.5)
    assert len(recorder.at("/cb/prod")) == 1


@pytest.mark.mysql
def test_plan_candidates_come_as_quick_replies_that_send_stop_and_skip(bot, recorder):
    """Issue 10: a finished plan's answer lists its candidates; its quick replies send the typed
    forms of the Slack card's buttons (`/restore plan stop=GTID`, `skip=GTID`), which the parser
    takes in KakaoTalk as everywhere."""
    store, say = bot["store"], bot["say"]
    say("/restore plan", callback=recorder.url("/cb/candidates"))
    calls = wait_for(lambda: recorder.at("/cb/candidates"), timeout=60)
    cb = json.loads(calls[0]["body"])
    plan_job = store.jobs(kind="plan", limit=1)[0]
    drop = plan_job.result["plan"]["candidates"][-1]
    assert "DROP DATABASE club" in drop["reason"] and drop["chosen"], plan_job.result["plan"]["candidates"]
    text = text_of(cb)
    assert "Disaster candidates (1)" in text and f"certain ← the stop {drop['gtid']}" in text, text
    replies = {q["label"]: q["messageText"] for q in cb["template"]["quickReplies"]}
    assert replies["Stop #1"] == f"/restore plan stop={drop['gtid']}", replies
    assert replies["Skip #1"] == f"/restore plan skip={drop['gtid']}", replies
    assert all(len(label) <= 14 for label in replies)

    say(replies["Skip #1"])   # as a tap on the quick reply sends it
    skipped = store.jobs(kind="plan", limit=1)[0]
    assert skipped.args == {"stop_before": "auto", "skips": [drop["gtid"]]}, skipped.args
    done = finished(store, skipped.id)
    assert done.state == "succeeded", done.error
    assert [s["gtid"] for s in done.result["plan"]["skips"]] == [drop["gtid"]] and done.result["plan"]["stop"] is None
    say(f"restore plan stop={drop['tx_file']}:{drop['tx_pos']}")   # file:pos, without the slash
    typed = finished(store, store.jobs(kind="plan", limit=1)[0].id)
    assert typed.state == "succeeded" and typed.result["plan"]["stop"]["gtid"] == drop["gtid"], typed.error


# -- the webhook poster on its own ----------------------------------------------------------------

def test_webhook_retries_5xx_signs_and_sends_state_changes_only(recorder):
    recorder.script["/flaky"] = [503, 502]
    poster = KakaoWebhookPoster(recorder.url("/flaky"), Secret(SECRET), retries=3, backoff=0.01)
    poster.send("*Stage restore* `R7` requested by <@kakao:U1>")
    calls = recorder.at("/flaky")
    assert len(calls) == 3
    assert json.loads(calls[-1]["body"]) == {"text": "Stage restore R7 requested by @kakao:U1"}
    assert_signed(calls)
    h = calls[-1]["headers"]
    assert not verify(SECRET, h[TIMESTAMP_HEADER], calls[-1]["body"] + b" ", h[SIGNATURE_HEADER])
    assert not verify(SECRET, str(int(h[TIMESTAMP_HEADER]) - 3600), calls[-1]["body"], h[SIGNATURE_HEADER])

    recorder.script["/down"] = [500] * 10
    with pytest.raises(WebhookError) as err:
        KakaoWebhookPoster(recorder.url("/down"), Secret(SECRET), retries=2, backoff=0.01).send("x")
    assert "HTTP 500" in str(err.value) and SECRET not in str(err.value) and "/down" not in str(err.value)

    class J:  # just what the poster reads of a job
        def __init__(self, state):
            self.id, self.state = "R7", state
    poster = KakaoWebhookPoster(recorder.url("/cards"), Secret(SECRET))
    poster.post_card(J("queued"), "card queued")
    poster.update_card(J("queued"), "kakao:R7", "card queued 10%")
    poster.update_card(J("running"), "kakao:R7", "card running")
    poster.update_card(J("running"), "kakao:R7", "card running 50%")
    poster.post_thread(J("running"), "kakao:R7", "▶ replay started")
    assert recorder.texts("/cards") == ["card queued", "card running", "[R7] ▶ replay started"]


def test_reporter_reports_kakao_jobs_only(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create("stage", "stage", "UOPS1", origin="slack")
    kakao_job = store.create("stage", "stage", "kakao:U1", origin="kakao")

    class Poster:
        def __init__(self):
            self.cards = []

        def post_card(self, job, text):
            self.cards.append(job.id)
            return "ref"

        def update_card(self, job, ref, text):
            pass

        def post_thread(self, job, ref, text):
            pass
    poster = Poster()
    reporter = Reporter(store, poster, accept=from_kakao)
    reporter.tick()
    assert poster.cards == [kakao_job.id]
