"""KakaoTalk's outgoing webhook: every step of a job asked for on KakaoTalk, and prod approval requests.

Kakao takes one callback per skill request, so the steps of a Kakao job are POSTed to
`[kakao] webhook_url` as JSON `{"text": "..."}` by a `Reporter` that accepts only Kakao jobs and
a `KakaoWebhookPoster`; so is a prod approval request (the approver is usually in another chat).
Each POST carries two headers a receiver checks:

    X-Restore-Bot-Timestamp: <unix seconds>
    X-Restore-Bot-Signature: sha256=<hex HMAC-SHA256(key=webhook_secret, msg=f"{timestamp}.{raw body}")>

i.e. `hmac.new(secret, timestamp.encode() + b"." + raw_body, "sha256").hexdigest()` over the raw
request bytes (UTF-8 JSON); reject stale timestamps (`verify()` below does both, 5 min window).
Failed POSTs are retried on connection errors, 429 and 5xx with backoff by urllib3's `Retry`.
Neither the secret nor the webhook's path or query (they may hold credentials) is ever put into
a message or a log line.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from bot.reporter import Reporter
from handlers.jobstore import Job, JobStore
from handlers.presenter.kakao import plain

SIGNATURE_HEADER = "X-Restore-Bot-Signature"
TIMESTAMP_HEADER = "X-Restore-Bot-Timestamp"

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


def redacted_host(url: str) -> str:  # URLs may carry credentials in their path or query: log the host only
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or "?"


def http_session(retry: Retry) -> requests.Session:
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
        self.session = http_session(Retry(total=retries, backoff_factor=backoff, allowed_methods=None,
                                      status_forcelist=(429, 500, 502, 503, 504), raise_on_status=False))
        self._last_state: dict[str, str] = {}
        if secret is None:
            log.warning("[kakao] webhook_secret is not set: webhook messages to %s go out unsigned", redacted_host(url))

    def send(self, text: str) -> None:
        body = json.dumps({"text": plain(text)}, ensure_ascii=False).encode("utf-8")
        ts = str(int(self.clock()))
        headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: ts}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret.reveal(), ts, body)
        try:
            resp = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise WebhookError(f"webhook {redacted_host(self.url)} unreachable ({type(exc).__name__})") from None
        if resp.status_code >= 500 or resp.status_code == 429:  # still failing after the retries: try later
            raise WebhookError(f"webhook {redacted_host(self.url)} answered HTTP {resp.status_code}")
        if resp.status_code >= 300:  # the receiver refuses it (bad signature?): resending would not help
            log.warning("webhook %s refused a message: HTTP %s", redacted_host(self.url), resp.status_code)

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
