"""The alert path's own Slack client: `chat.postMessage` over a kept-alive connection.

slack_sdk's WebClient opens a new connection for every call. For job cards that costs nothing
anyone notices; for an alert it is a TCP and a TLS handshake with Slack (several round trips)
before the message can leave, at the moment the seconds count. This client keeps its
connection in a `requests.Session` and, between alerts, calls `auth.test` now and then
(`keep_warm`) so that Slack does not close it for being idle — an alert then goes out on a
connection that is already open. It also learns early that the token was revoked.

Only what the alert path needs: `chat_postMessage(**fields)` returning Slack's answer as a dict,
and Slack's refusals raised as `slack_sdk.errors.SlackApiError`, as WebClient raises them.
"""
from __future__ import annotations

import json
import logging

import requests
from requests.adapters import HTTPAdapter
from slack_sdk.errors import SlackApiError
from urllib3.util.retry import Retry

log = logging.getLogger("restore-handlers.alerts")


class RateLimited(SlackApiError):
    """HTTP 429: Slack asks us to wait `retry_after` seconds before the next call of this method."""

    def __init__(self, method: str, retry_after: float, answer: dict) -> None:
        super().__init__(f"{method}: rate limited, retry after {retry_after:g} s", answer)
        self.retry_after = retry_after


class AlertSlackClient:
    def __init__(self, token: str, api_url: str, *, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}",
                                     "Content-Type": "application/json; charset=utf-8"})
        # Only failures to connect are retried here: the request was never sent, so it cannot be
        # posted twice. Anything later is the caller's to retry (AlertPoster backs off).
        retry = Retry(total=None, connect=2, read=0, redirect=0, status=0, other=0, backoff_factor=0.05,
                      respect_retry_after_header=False)
        self.session.mount(self.api_url, HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=retry))
        self._trouble: str | None = None  # what keep_warm last logged: said once, not every round

    def call(self, method: str, **fields) -> dict:
        resp = self.session.post(self.api_url + method, data=json.dumps(fields).encode(), timeout=self.timeout)
        try:
            answer = resp.json()
        except ValueError:
            answer = {"ok": False, "error": f"http_{resp.status_code}"}
        if resp.status_code == 429:
            raise RateLimited(method, float(resp.headers.get("Retry-After") or 1), answer)
        if resp.status_code != 200 or not answer.get("ok"):
            answer.setdefault("error", f"http_{resp.status_code}")
            raise SlackApiError(f"{method} failed: {answer.get('error')}", answer)
        return answer

    def chat_postMessage(self, **fields) -> dict:  # noqa: N802 (WebClient's name, so either client fits)
        return self.call("chat.postMessage", **fields)

    def keep_warm(self) -> None:
        """Between alerts: one cheap call, so the connection stays open (and a bad token shows)."""
        try:
            self.call("auth.test")
            trouble = None
        except SlackApiError as exc:
            trouble = f"Slack refused auth.test ({exc.response.get('error')})"
        except requests.RequestException as exc:
            trouble = f"Slack did not answer auth.test ({type(exc).__name__})"
        if trouble != self._trouble:
            if trouble:
                log.warning("%s: alerts may not get through", trouble)
            else:
                log.info("Slack answers again")
            self._trouble = trouble

    def close(self) -> None:
        self.session.close()
