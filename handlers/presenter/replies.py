"""The handlers' answers, from what they decided: refusals, the prod gate, approvals, aborts,
the operators' choice, alerts marked. (Sentences from `handlers.messages`.)"""
from __future__ import annotations

from handlers import messages
from handlers.jobstore import Job, JobKind
from handlers.presenter.answers import choice_text


# -- access (the dispatcher's middleware) ------------------------------------------------------
def not_allowed(user: str, command: str) -> str:
    """`user` may not give `command` (a Command name): only operators may."""
    return messages.NOT_ALLOWED.format(user=user, what=messages.OPERATORS_ONLY.get(command, f"do `{command}`"))


def not_approver(user: str, job: Job | None = None) -> str:
    undo = job is not None and job.kind == JobKind.UNDO
    return (messages.NOT_APPROVER_UNDO if undo else messages.NOT_APPROVER).format(user=user)


def not_here(name: str) -> str:
    return messages.NOT_HERE.format(name=name)


# -- jobs ----------------------------------------------------------------------------------------
def busy(target: str, job: Job) -> str:
    return messages.BUSY_TARGET.format(target=target, job=job.id, state=job.state)


def no_such_job(job_id: str | None) -> str:
    return messages.NO_SUCH_JOB.format(job=job_id)


def no_stage(typed: str) -> str:
    """The prod gate found no verified stage run of this plan; `typed`: the plan's arguments."""
    return messages.NO_STAGE + (f"\n{messages.NO_STAGE_ARGS.format(args=typed)}" if typed else "")


def approval_request(job: Job, stage: Job, minutes: int) -> str:
    name = (job.args or {}).get("cluster")
    return messages.APPROVAL_REQUEST.format(requester=job.requester, job=job.id + (f"* of cluster *{name}" if name else ""),
                                            plan_id=stage.plan_id, stage_job=stage.id,
                                            summary=(stage.result or {}).get("summary", ""), minutes=minutes)


def self_approval(user: str, job: Job) -> str:
    return messages.SELF_APPROVAL.format(user=user, job=job.id)


def not_waiting(job: Job) -> str:
    return messages.NOT_WAITING.format(job=job.id, state=job.state)


def approved(user: str, job: Job) -> str:
    if job.kind == JobKind.UNDO:
        return messages.UNDO_APPROVED.format(user=user, job=job.id, pid=preview_id(job))
    return messages.APPROVED.format(user=user, job=job.id)


def approval_detail(job: Job) -> str:
    """What the audit trail says was approved."""
    if job.kind == JobKind.UNDO:
        return f"{job.args.get('event')} on {job.target}, preview {preview_id(job)}"
    return f"plan {job.plan_id}" if job.plan_id else ""


def preview_id(job: Job) -> str:
    return ((job.result or {}).get("undo") or {}).get("preview_id") or "?"


def rejected(user: str, job: Job) -> str:
    return (messages.UNDO_REJECTED if job.kind == JobKind.UNDO else messages.REJECTED).format(user=user, job=job.id)


def undo_no_target(target: str, *, configured: bool) -> str:
    return messages.UNDO_NO_TARGET.format(target=target, what="a throwaway sandbox" if configured else "not configured")


def expired(job: Job, minutes: int) -> str:
    return messages.EXPIRED.format(kind=job.kind, job=job.id, minutes=minutes)


def abort_done(job: Job) -> str:
    return messages.ABORT_DONE.format(job=job.id, state=job.state)


def abort_requested(job: Job) -> str:
    return messages.ABORT_REQUESTED.format(job=job.id)


# -- the operators' choice -------------------------------------------------------------------
def choice_applied(choice: dict) -> str:
    return messages.CHOICE_APPLIED.format(user=choice["user"], why=choice["why"], what=choice_text(choice))


def choice_cleared(user: str) -> str:
    return messages.CHOICE_CLEARED.format(user=user)


def chose(stop_here: bool, where: str, plan_job: Job) -> str:
    """Why the choice was made, as saved with it: *Stop before this one* or *Skip only this one* on a card."""
    return (messages.CHOSE_STOP if stop_here else messages.CHOSE_SKIP).format(where=where, job=plan_job.id)


def choice_made(user: str, why: str, stop: str, skips: list[str]) -> str:
    return messages.CHOICE_MADE.format(user=user, why=why, what=choice_text({"stop": stop, "skips": skips}))


# -- alerts --------------------------------------------------------------------------------------
def alert_acked(user: str) -> str:
    return messages.ALERT_ACKED.format(user=user)


def alert_expected(user: str, tx: str, gtid: str | None) -> str:
    return messages.ALERT_EXPECTED.format(user=user, tx=tx, gtid=f", GTID {gtid}" if gtid else "")


def incident_why(reason: str) -> str:
    return messages.CHOSE_INCIDENT.format(reason=reason)


def alert_incident(user: str, spec: str) -> str:
    return messages.ALERT_INCIDENT.format(user=user, spec=spec)
