"""The KakaoTalk transport: a Kakao i Open Builder skill at `POST /kakao/skill`, plus an outgoing webhook.

Skill requests: Kakao does not sign them, so the caller must send the `[kakao] token` in the
`X-Restore-Bot-Token` header (wrong, missing, or no token configured: 401). `userRequest.user.id`
becomes the user `kakao:<id>` (write it so in `[access]`); the utterance (`/restore stage`,
`restore status R3`, `status R3`) goes through the same parser and handler as Slack. The answer is
skill response JSON version 2.0 (simpleText + quickReplies), well within Kakao's 5 s. When a job
starts and the request carried `userRequest.callbackUrl`, the answer is `useCallback: true` and a
background thread later POSTs exactly one skill response to that URL (Kakao accepts one call within
a minute): the outcome if the job finished within `callback_wait` (50 s), else its current status.

Outgoing webhook: because of that single callback, every step of a job asked for on KakaoTalk is
also POSTed to `[kakao] webhook_url` as JSON `{"text": "..."}` by a `Reporter` that accepts only Kakao jobs +
`KakaoWebhookPoster`, and so is a prod approval request (the approver is usually in another chat).
Each POST carries two headers a receiver checks:

    X-Restore-Bot-Timestamp: <unix seconds>
    X-Restore-Bot-Signature: sha256=<hex HMAC-SHA256(key=webhook_secret, msg=f"{timestamp}.{raw body}")>

i.e. `hmac.new(secret, timestamp.encode() + b"." + raw_body, "sha256").hexdigest()` over the raw
request bytes (UTF-8 JSON); reject stale timestamps (`verify()` below does both, 5 min window).
Failed POSTs are retried on connection errors, 429 and 5xx with backoff by urllib3's `Retry`.
Neither the token nor the secret is ever put into a message or a log line.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from urllib.parse import urlsplit

import requests
from flask import Flask, jsonify, request
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from handlers.restore import describe

from handlers import messages
from handlers.commands import CommandError, parse
from handlers.jobstore import Job, JobStore
from handlers.plan_card import kakao_replies, short_text
from bot.reporter import Reporter, card_text

# -- what the bot says on KakaoTalk (besides bot/messages.py) ------------------------------------------
KAKAO_ACK = "{kind} job {job} queued; `/restore status {job}` shows how it is doing."
KAKAO_ACK_CALLBACK = "{kind} job {job} queued — working on it; I answer here with the outcome within a minute."
KAKAO_STILL_RUNNING = "Job {job} is not done yet after {seconds} s:\n{status}\n`/restore status {job}` for more."
KAKAO_APPROVE_HINT = "A different approver sends `/restore approve {job}` (or `/restore reject {job}`)."
KAKAO_ONCALL = "`/oncall` needs the on-call settings of `restore-bot serve`; use Slack or the console."
LABEL_STATUS, LABEL_ABORT, LABEL_APPROVE, LABEL_REJECT = "Status {job}", "Abort {job}", "Approve {job}", "Reject {job}"
ERR_UNAUTHORIZED = "unauthorized: send the configured token in X-Restore-Bot-Token"
ERR_NOT_SKILL = "not a skill request: userRequest.utterance and userRequest.user.id are required"
# ----------------------------------------------------------------------------------------------------

TOKEN_HEADER = "X-Restore-Bot-Token"
SIGNATURE_HEADER = "X-Restore-Bot-Signature"
TIMESTAMP_HEADER = "X-Restore-Bot-Timestamp"
TEXT_LIMIT = 1000          # simpleText.text
CALLBACK_WAIT = 50.0       # Kakao takes the callback within 60 s of the request

log = logging.getLogger("restore-bot.kakao")


class WebhookError(RuntimeError):
    """The webhook could not be reached or kept failing; str() names only the host."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, max_age: float = 300,
           now: float | None = None) -> bool:
    """What a webhook receiver does: the signature matches and the timestamp is recent."""
    try:
        fresh = abs((time.time() if now is None else now) - int(timestamp)) <= max_age
    except (TypeError, ValueError):
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body).encode(), (signature or "").encode())


def plain(text: str) -> str:
    """Slack mrkdwn (`*bold*`, `code`, <@user>, <#channel>) as KakaoTalk's plain text."""
    text = re.sub(r"<([@#])([^<>|\s]+)>", r"\1\2", text)
    return re.sub(r"`([^`\n]*)`", r"\1", re.sub(r"\*([^*\n]+)\*", r"\1", text))


def _host(url: str) -> str:  # URLs may carry credentials in their path or query: log the host only
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or "?"


def _session(retry: Retry) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class KakaoWebhookPoster:
    """The reporter's Poster for KakaoTalk jobs: each card, card state change and thread step is one POST."""

    def __init__(self, url: str, secret=None, *, timeout: float = 10.0, retries: int = 4, backoff: float = 0.5,
                 clock=time.time) -> None:
        self.url, self._secret, self.timeout, self.clock = url, secret, timeout, clock
        self.session = _session(Retry(total=retries, backoff_factor=backoff, allowed_methods=None,
                                      status_forcelist=(429, 500, 502, 503, 504), raise_on_status=False))
        self._last_state: dict[str, str] = {}
        if secret is None:
            log.warning("[kakao] webhook_secret is not set: webhook messages to %s go out unsigned", _host(url))

    def send(self, text: str) -> None:
        body = json.dumps({"text": plain(text)}, ensure_ascii=False).encode("utf-8")
        ts = str(int(self.clock()))
        headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: ts}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret.reveal(), ts, body)
        try:
            resp = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise WebhookError(f"webhook {_host(self.url)} unreachable ({type(exc).__name__})") from None
        if resp.status_code >= 500 or resp.status_code == 429:  # still failing after the retries: try later
            raise WebhookError(f"webhook {_host(self.url)} answered HTTP {resp.status_code}")
        if resp.status_code >= 300:  # the receiver refuses it (bad signature?): resending would not help
            log.warning("webhook %s refused a message: HTTP %s", _host(self.url), resp.status_code)

    def post_card(self, job: Job, text: str) -> str:
        self.send(text)
        self._last_state[job.id] = job.state
        return f"kakao:{job.id}"

    def update_card(self, job: Job, ref: str, text: str) -> None:
        if self._last_state.get(job.id) != job.state:  # progress ticks would be noise: state changes only
            self.send(text)
            self._last_state[job.id] = job.state

    def post_thread(self, job: Job, ref: str | None, text: str) -> None:
        self.send(f"[{job.id}] {text}")  # one stream for all jobs: say whose step this is


def from_kakao(job: Job) -> bool:
    return job.origin == "kakao"


def kakao_reporter(settings, store: JobStore, poster: KakaoWebhookPoster | None = None, **kw) -> Reporter | None:
    """The reporter for `[kakao] webhook_url` (call `.start()`); None when no webhook is configured."""
    if poster is None and not settings.kakao.webhook_url:
        return None
    kw.setdefault("poll", 1.0)
    return Reporter(store, poster or KakaoWebhookPoster(settings.kakao.webhook_url, settings.kakao.webhook_secret),
                    accept=from_kakao, **kw)


class KakaoReplier:
    """Collects the handler's replies into one skill response."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.approval: tuple[Job, str] | None = None

    def ephemeral(self, text: str) -> None:
        self.texts.append(text)

    def say(self, text: str) -> None:
        self.texts.append(text)

    def approval_request(self, job: Job, text: str) -> None:
        text = f"{text}\n{KAKAO_APPROVE_HINT.format(job=job.id)}"
        self.texts.append(text)
        self.approval = (job, text)


def _quick(label: str, job: str, verb: str) -> dict:
    return {"label": label.format(job=job)[:14], "action": "message", "messageText": f"/restore {verb} {job}"}


def _job_replies(job: Job) -> list[dict]:
    if job.finished:   # a plan's candidates: the typed forms of the Slack card's buttons
        return kakao_replies(job) + [_quick(LABEL_STATUS, job.id, "status")]
    return [_quick(LABEL_STATUS, job.id, "status"), _quick(LABEL_ABORT, job.id, "abort")]


def skill_response(text: str, quick_replies: list[dict] | None = None) -> dict:
    text = plain(text)
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT - 1] + "…"
    doc: dict = {"version": "2.0", "template": {"outputs": [{"simpleText": {"text": text}}]}}
    if quick_replies:
        doc["template"]["quickReplies"] = quick_replies[:10]
    return doc


def register_kakao(web: Flask, settings, store: JobStore, handler, *, poster: KakaoWebhookPoster | None = None,
                   callback_wait: float = CALLBACK_WAIT, poll: float = 0.5, oncall=None) -> None:
    """Add `POST /kakao/skill` to `web`. `poster` (default: one for `[kakao] webhook_url`) gets approval requests;
    `oncall` (a handlers.oncall.OncallHandler) answers `/oncall`."""
    secret = settings.kakao.token
    token = secret.reveal().encode() if secret is not None else None
    if token is None:
        log.warning("no [kakao] token is configured: /kakao/skill refuses every request")
    if poster is None and settings.kakao.webhook_url:
        poster = KakaoWebhookPoster(settings.kakao.webhook_url, settings.kakao.webhook_secret)
    # one call per callbackUrl: retry only when the connection never opened (nothing was delivered)
    callbacks = _session(Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.3))
    used: set[str] = set()
    used_lock = threading.Lock()

    def claim(url: str) -> bool:
        with used_lock:
            if url in used:
                return False
            if len(used) > 10_000:
                used.clear()
            used.add(url)
            return True

    def follow(job_id: str, url: str, deadline: float) -> None:
        """Wait for the job (until `deadline`), then make the one callback."""
        job = store.get(job_id)
        while not job.finished and time.monotonic() < deadline:
            time.sleep(poll)
            job = store.get(job_id)
        if job.finished:
            listed = short_text(job)   # the card's list in short: answers take 1000 characters
            text = card_text(job, candidates=not listed) + (f"\n{listed}" if listed else "") + \
                (f"\n{job.result['next']}" if job.state == "succeeded" and (job.result or {}).get("next") else "")
        else:
            text = KAKAO_STILL_RUNNING.format(job=job.id, seconds=int(callback_wait), status=describe(job))
        try:
            resp = callbacks.post(url, json=skill_response(text, _job_replies(job)), timeout=10)
            if resp.status_code >= 300:
                log.warning("Kakao callback for job %s: %s answered HTTP %s", job_id, _host(url), resp.status_code)
        except requests.RequestException as exc:
            log.warning("Kakao callback for job %s: %s unreachable (%s)", job_id, _host(url), type(exc).__name__)

    def broadcast(text: str) -> None:
        try:
            poster.send(text)
        except WebhookError as exc:
            log.warning("approval request not sent to the webhook: %s", exc)

    @web.post("/kakao/skill", endpoint="kakao_skill")
    def kakao_skill():
        arrived = time.monotonic()
        given = (request.headers.get(TOKEN_HEADER) or "").encode()
        if token is None or not hmac.compare_digest(given, token):
            log.warning("refused a Kakao skill request from %s: %s", request.remote_addr,
                        "no [kakao] token is configured" if token is None else
                        "token missing" if not given else "wrong token")
            return jsonify({"error": ERR_UNAUTHORIZED}), 401
        body = request.get_json(silent=True)
        req = body.get("userRequest") if isinstance(body, dict) else None
        user = (req.get("user") or {}).get("id") if isinstance(req, dict) else None
        utterance = req.get("utterance") if isinstance(req, dict) else None
        if not isinstance(utterance, str) or not isinstance(user, (str, int)) or not str(user):
            return jsonify({"error": ERR_NOT_SKILL}), 400
        user = f"kakao:{user}"
        callback_url = req.get("callbackUrl")
        words = utterance.split()
        if words and words[0].lstrip("/").lower() == "oncall":
            if oncall is None:
                return jsonify(skill_response(KAKAO_ONCALL))
            answers = KakaoReplier()
            oncall.handle(utterance, user, answers)
            return jsonify(skill_response("\n\n".join(answers.texts)))
        try:
            cmd = parse(utterance, user, "kakao")
        except CommandError as exc:
            return jsonify(skill_response(messages.BAD_INPUT.format(error=exc, usage=messages.USAGE)))
        replier = KakaoReplier()
        job = handler.handle(cmd, replier)
        text = "\n\n".join(replier.texts)
        if replier.approval is not None:
            job, approval_text = replier.approval
            if poster is not None:
                threading.Thread(target=broadcast, args=(approval_text,), daemon=True, name="kakao-approval").start()
            return jsonify(skill_response(text, [_quick(LABEL_APPROVE, job.id, "approve"),
                                                 _quick(LABEL_REJECT, job.id, "reject")]))
        started = job is not None and cmd.name in ("plan", "stage", "approve") and job.state in ("queued", "running")
        if not started:
            replies = _job_replies(job) if job is not None and cmd.name in ("status", "abort") \
                and not job.finished else None
            return jsonify(skill_response(text, replies))
        kind = messages.CARD_TITLE.get(job.kind, job.kind)
        if cmd.name != "approve":  # the handler's ack points at Slack's channel: say where things go here
            text = KAKAO_ACK.format(kind=kind, job=job.id)
        if isinstance(callback_url, str) and callback_url.startswith(("http://", "https://")) and claim(callback_url):
            threading.Thread(target=follow, args=(job.id, callback_url, arrived + callback_wait), daemon=True,
                             name=f"kakao-callback-{job.id}").start()
            wait_text = text if cmd.name == "approve" else KAKAO_ACK_CALLBACK.format(kind=kind, job=job.id)
            return jsonify({"version": "2.0", "useCallback": True, "data": {"text": plain(wait_text)}})
        return jsonify(skill_response(text, _job_replies(job)))
