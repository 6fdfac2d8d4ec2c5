"""A job in words: its status lines, its progress card, and the acknowledgement of a queued job."""
from __future__ import annotations

from handlers import messages
from handlers.jobstore import Job, JobKind, JobState
from handlers.presenter import undo_card
from handlers.presenter.plan_card import candidates_text, short_text, verdicts_text


def kind_title(job: Job) -> str:
    return messages.CARD_TITLE.get(job.kind, job.kind)


def cluster_of(job: Job) -> str:
    """` · cluster billing` for a job of a named cluster ([clusters] in the config), else nothing."""
    name = (job.args or {}).get("cluster")
    return f" · cluster *{name}*" if name else ""


def describe(job: Job) -> str:
    """A job in a few lines: what, state, phase and progress, outcome."""
    lines = [f"*{kind_title(job)} {job.id}*{cluster_of(job)} — {job.state}" + (f", phase {job.phase}" if job.phase else "")]
    p = job.progress or {}
    if job.state == JobState.RUNNING and p.get("total"):
        pct = 100.0 * p.get("done", 0) / max(1, p["total"])
        lines.append(f"{pct:.0f}%{_pace(p)}")
    if job.result and job.result.get("summary"):
        lines.append(job.result["summary"])
    if job.error:
        lines.append(f"error: {job.error.get('message')}")
        if job.error.get("hint"):
            lines.append(messages.NEXT_STEP_AFTER_FAILURE.format(hint=job.error["hint"]))
    return "\n".join(lines)


def _pace(p: dict) -> str:
    """How fast the running phase goes: rows for the replay; bytes for the others (load, copy of a
    physical backup, move), whose engine line says how much of how much, the rate and the ETA."""
    if p.get("phase") != "replay":
        return f" · {p['detail']}" if p.get("detail") else ""
    return f" · {p.get('rate', 0):,.0f} rows/s · ETA {p.get('eta', '?')} s"


def card_text(job: Job, *, candidates: bool = True) -> str:
    """The job's progress card. `candidates`: with a finished plan's candidate list (Slack shows it
    as blocks with buttons instead)."""
    head = f"*{kind_title(job)}* `{job.id}`{cluster_of(job)} requested by <@{job.requester}>"
    undo = undo_card.card_extra(job)
    if job.state == JobState.SUCCEEDED:
        extra = [t for t in (candidates_text(job) if candidates else "", verdicts_text(job), undo) if t]
        return (f"{head}\n✅ *{messages.SUCCEEDED}* in {(job.result or {}).get('seconds', '?')} s\n{describe(job)}"
                + "".join("\n" + t for t in extra))
    if job.state == JobState.FAILED:
        return f"{head}\n❌ *{messages.FAILED}*\n{describe(job)}" + (f"\n{undo}" if undo else "")
    if job.state in (JobState.ABORTED, JobState.REJECTED, JobState.EXPIRED):
        return f"{head}\n⏹ *{job.state}*" + (f"\n{undo}" if undo else "")
    if undo:   # an undo's preview, waiting for approval (Slack shows it as blocks with buttons)
        return f"{head}\n⏸ *{messages.UNDO_WAITING}*" + (f"\n{undo}" if candidates else "")
    p = job.progress or {}
    bar = ""
    if p.get("total"):
        frac = min(1.0, p.get("done", 0) / max(1, p["total"]))
        bar = f"\n`{'█' * int(frac * 20):<20}` {frac * 100:.0f}%{_pace(p)}"
    return f"{head}\n⏳ {job.state}{', phase *' + job.phase + '*' if job.phase else ''}{bar}"


def queued(job: Job, channel: str | None) -> str:
    """The answer to whoever queued `job`: where its card goes (`channel`), or just that it is queued."""
    name = (job.args or {}).get("cluster")
    kind = kind_title(job) + (f" ({name})" if name else "")
    if job.kind == JobKind.BACKUP:
        return messages.BACKUP_QUEUED.format(job=job.id) + (f" ({name})" if name else "")
    if channel:
        return messages.ACK.format(kind=kind, job=job.id, channel=job.channel or channel)
    return messages.ACK_CONSOLE.format(kind=kind, job=job.id)


def outcome(job: Job) -> str:
    """A finished job in one answer of at most a few lines a candidate (KakaoTalk's callback)."""
    listed = short_text(job) or undo_card.short_text(job)   # the card's list in short: answers take 1000 characters
    nxt = (job.result or {}).get("next") if job.state == JobState.SUCCEEDED else None
    return card_text(job, candidates=not listed) + (f"\n{listed}" if listed else "") + (f"\n{nxt}" if nxt else "")
