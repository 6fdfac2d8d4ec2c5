"""The alert path as the latency bench sees it at the fake Slack (bench/alert_latency.py): which
calls are alerts, which statement an alert names, and the real AlertPoster with timestamps of when
each alert left its queue and when its HTTP call started and ended."""
from __future__ import annotations

import re
import time
from types import SimpleNamespace

from handlers.alerts import AlertPoster

ALERT_MARK = "🚨"


def is_alert(call) -> bool:
    return call.method == "chat.postMessage" and call.status == 200 and ALERT_MARK in call.text


def token_re(token: str) -> re.Pattern:
    # tokens are fixed width (dt_0007), but guard against a longer neighbour (dt_00071) anyway
    return re.compile(re.escape(token) + r"(?![0-9])")


def alert_re(token: str, gtid: str | None) -> re.Pattern:
    """What finds the alert about one statement in a Slack message: the unique object it destroys, or its
    GTID. The alert masks comments (handlers.alerts.mask_literals), and a DROP DATABASE names its
    iteration only in one, so the GTID the session reports after it (@@last_gtid) finds that one."""
    if not gtid:
        return token_re(token)
    return re.compile(re.escape(token) + r"(?![0-9])|GTID " + re.escape(gtid) + r"(?![0-9])")


class TimedPoster(AlertPoster):
    """The real AlertPoster, plus timestamps of when each alert left the queue and its HTTP call."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.marks: dict[str, dict] = {}
        real = self.client.chat_postMessage

        def timed_post(**kw2):
            key = self._current
            self.marks.setdefault(key, {})["http_start"] = time.time()
            try:
                return real(**kw2)
            finally:
                self.marks[key]["http_end"] = time.time()

        self.client = SimpleNamespace(chat_postMessage=timed_post, keep_warm=self.client.keep_warm)

    def _post(self, alert) -> None:
        self._current = alert.key
        self.marks.setdefault(alert.key, {})["dequeued"] = time.time()
        super()._post(alert)


def oncall_settings() -> SimpleNamespace:
    return SimpleNamespace(oncall=SimpleNamespace(rotation=("UKIM", "ULEE"), rotation_start=None, fallback=None,
                                                  escalate_after_minutes=5, usergroup=None))
