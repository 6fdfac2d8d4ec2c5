"""KakaoTalk's answers: plain text (no mrkdwn) of at most 1000 characters, and quick replies that
send the typed forms of Slack's buttons."""
from __future__ import annotations

import re

from handlers import messages
from handlers.jobstore import Job
from handlers.presenter.jobs import describe, kind_title
from handlers.presenter import undo_card
from handlers.presenter.plan_card import kakao_replies

TEXT_LIMIT = 1000          # simpleText.text
QUICK_REPLIES = 10         # Kakao shows at most ten
OUTPUTS = 3                # outputs in one skill response


def plain(text: str) -> str:
    """Slack mrkdwn (`*bold*`, `code`, <@user>, <#channel>) as KakaoTalk's plain text."""
    text = re.sub(r"<([@#])([^<>|\s]+)>", r"\1\2", text)
    return re.sub(r"`([^`\n]*)`", r"\1", re.sub(r"\*([^*\n]+)\*", r"\1", text))


def skill_response(text: str, quick_replies: list[dict] | None = None) -> dict:
    """A skill response (version 2.0): the text as up to three simpleText outputs (one takes 1000
    characters: the usage alone is longer), and quick replies if any."""
    outputs = [{"simpleText": {"text": part}} for part in _parts(plain(text))]
    doc: dict = {"version": "2.0", "template": {"outputs": outputs}}
    if quick_replies:
        doc["template"]["quickReplies"] = quick_replies[:QUICK_REPLIES]
    return doc


def _parts(text: str) -> list[str]:
    """`text` cut at line ends into at most OUTPUTS parts of at most TEXT_LIMIT characters ("…" where cut)."""
    parts: list[str] = []
    for line in text.split("\n"):
        if parts and len(parts[-1]) + 1 + len(line) <= TEXT_LIMIT:
            parts[-1] += "\n" + line
        else:
            parts.append(line)
    parts = [_cut(p) for p in parts]
    if len(parts) > OUTPUTS:
        parts = parts[:OUTPUTS - 1] + [_cut(parts[OUTPUTS - 1] + "\n…")]
    return parts


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 1] + "…"


def callback_wait(text: str) -> dict:
    """The immediate answer to a request whose outcome comes later through its callback URL."""
    return {"version": "2.0", "useCallback": True, "data": {"text": plain(text)}}


def quick(verb: str, job: str) -> dict:
    return {"label": messages.KAKAO_LABELS[verb].format(job=job)[:14], "action": "message",
            "messageText": f"/restore {verb} {job}"}


def job_replies(job: Job) -> list[dict]:
    if undo_card.waiting(job):   # an undo's preview: the typed forms of *Approve undo* and *Reject*
        return undo_card.kakao_replies(job) + [quick("status", job.id)]
    if job.finished:   # a plan's candidates: the typed forms of the Slack card's buttons
        return kakao_replies(job) + [quick("status", job.id)]
    return [quick("status", job.id), quick("abort", job.id)]


def approval_replies(job: Job) -> list[dict]:
    return [quick("approve", job.id), quick("reject", job.id)]


def approval_text(job: Job, text: str) -> str:
    return f"{text}\n{messages.KAKAO_APPROVE_HINT.format(job=job.id)}"


def queued(job: Job, *, callback: bool) -> str:
    return (messages.KAKAO_ACK_CALLBACK if callback else messages.KAKAO_ACK).format(kind=kind_title(job), job=job.id)


def still_running(job: Job, seconds: float) -> str:
    return messages.KAKAO_STILL_RUNNING.format(job=job.id, seconds=int(seconds), status=describe(job))
