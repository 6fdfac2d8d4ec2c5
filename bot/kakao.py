"""The KakaoTalk transport: a Kakao i Open Builder skill at `POST /kakao/skill`.

Kakao does not sign skill requests, so the caller must send the `[kakao] token` in the
`X-Restore-Bot-Token` header (wrong, missing, or no token configured: 401). `userRequest.user.id`
becomes the user `kakao:<id>` (write it so in `[access]`); the utterance (`/restore stage`,
`restore status R3`, `status R3`, `/backup list`, `/oncall`) goes to the same parser and
dispatcher as Slack's. The answer is skill response JSON 2.0 (simpleText + quickReplies), well
within Kakao's 5 s. When the request made a job run and carried `userRequest.callbackUrl`, the
answer is `useCallback: true` and a thread later POSTs exactly one skill response to that URL
(Kakao takes one call within a minute): the outcome if the job finished within `callback_wait`
(50 s), else its status. The job's steps go to the webhook (`bot.kakao_webhook`).
"""
from __future__ import annotations

import hmac
import logging
import threading
import time

import requests
from flask import Flask, jsonify, request
from urllib3.util import Retry

from bot.kakao_webhook import KakaoWebhookPoster, WebhookError, http_session, redacted_host
from handlers.dispatcher import Dispatcher, Reply
from handlers.jobstore import Job, JobStore
from handlers.presenter import kakao as say
from handlers.presenter.jobs import outcome
from handlers.presenter.undo_card import waiting

ERR_UNAUTHORIZED = "unauthorized: send the configured token in X-Restore-Bot-Token"
ERR_NOT_SKILL = "not a skill request: userRequest.utterance and userRequest.user.id are required"
TOKEN_HEADER = "X-Restore-Bot-Token"
CALLBACK_WAIT = 50.0       # Kakao takes the callback within 60 s of the request

log = logging.getLogger("restore-bot.kakao")


class KakaoReply(Reply):
    """Collects the answers into one skill response."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.approval: str | None = None   # an approval request's text, for the team's webhook too
        self.acked = False

    def ephemeral(self, text: str) -> None:
        self.texts.append(text)

    def approval_request(self, job: Job, text: str) -> None:
        self.job, self.approval = job, say.approval_text(job, text)
        self.texts.append(self.approval)

    def queued(self, job: Job, *, ack: bool = True) -> None:
        super().queued(job, ack=False)
        if ack:
            self.acked = True
            self.texts.append(say.queued(job, callback=False))


def register_kakao(web: Flask, settings, store: JobStore, app: Dispatcher, *, poster: KakaoWebhookPoster | None = None,
                   callback_wait: float = CALLBACK_WAIT, poll: float = 0.5) -> None:
    """Add `POST /kakao/skill` to `web`; `app` answers. `poster` (default: one for `[kakao] webhook_url`)
    also gets approval requests."""
    secret = settings.kakao.token
    token = secret.reveal().encode() if secret is not None else None
    if token is None:
        log.warning("no [kakao] token is configured: /kakao/skill refuses every request")
    if poster is None and settings.kakao.webhook_url:
        poster = KakaoWebhookPoster(settings.kakao.webhook_url, settings.kakao.webhook_secret)
    # one call per callbackUrl: retry only when the connection never opened (nothing was delivered)
    callbacks = http_session(Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.3))
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
        while not (job.finished or waiting(job)) and time.monotonic() < deadline:
            time.sleep(poll)
            job = store.get(job_id)
        text = outcome(job) if job.finished or waiting(job) else say.still_running(job, callback_wait)
        try:
            resp = callbacks.post(url, json=say.skill_response(text, say.job_replies(job)), timeout=10)
            if resp.status_code >= 300:
                log.warning("Kakao callback for job %s: %s answered HTTP %s", job_id, redacted_host(url), resp.status_code)
        except requests.RequestException as exc:
            log.warning("Kakao callback for job %s: %s unreachable (%s)", job_id, redacted_host(url), type(exc).__name__)

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
        reply = KakaoReply()
        app.text(utterance, f"kakao:{user}", "kakao", reply)
        text = "\n\n".join(reply.texts)
        if reply.approval is not None:
            if poster is not None:
                threading.Thread(target=broadcast, args=(reply.approval,), daemon=True, name="kakao-approval").start()
            return jsonify(say.skill_response(text, say.approval_replies(reply.job)))
        job = reply.started
        if job is None or job.finished:   # quick replies to follow a job the answer was about
            shown = reply.job
            return jsonify(say.skill_response(text, say.job_replies(shown) if shown and not shown.finished else None))
        url = req.get("callbackUrl")
        if isinstance(url, str) and url.startswith(("http://", "https://")) and claim(url):
            threading.Thread(target=follow, args=(job.id, url, arrived + callback_wait), daemon=True,
                             name=f"kakao-callback-{job.id}").start()
            return jsonify(say.callback_wait(say.queued(job, callback=True) if reply.acked else text))
        return jsonify(say.skill_response(text, say.job_replies(job)))
