"""`/restore ...`: platform neutral. Takes a parsed Command and a Replier; starts jobs, answers.

Nothing here runs the engine: jobs go to the job store and the worker process picks them up,
so an answer never waits on a replay.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bot import messages
from bot.commands import Command
from bot.jobstore import ACTIVE, Job, JobStore

APPROVAL_MINUTES = 15


class Replier(Protocol):
    def ephemeral(self, text: str) -> None: ...
    def say(self, text: str) -> None: ...
    def approval_request(self, job: Job, text: str) -> None: ...


class Access(Protocol):
    def can_operate(self, user: str) -> bool: ...
    def can_approve(self, user: str) -> bool: ...


class RestoreHandler:
    def __init__(self, store: JobStore, access: Access, *, channel: str | None, has_prod: bool) -> None:
        self.store = store
        self.access = access
        self.channel = channel
        self.has_prod = has_prod

    def handle(self, cmd: Command, reply: Replier) -> Job | None:
        self.store.audit(cmd.user, f"request {cmd.name}", cmd.job, _args_text(cmd))
        return getattr(self, f"_{cmd.name}")(cmd, reply)

    # -- each subcommand -------------------------------------------------------------------------
    def _help(self, cmd: Command, reply: Replier) -> None:
        reply.ephemeral(messages.USAGE)

    def _plan(self, cmd: Command, reply: Replier) -> Job | None:
        return self._start(cmd, reply, "plan", "-")

    def _stage(self, cmd: Command, reply: Replier) -> Job | None:
        return self._start(cmd, reply, "stage", "stage")

    def _drill(self, cmd: Command, reply: Replier) -> Job | None:
        """Restore the newest base snapshot plus the archived binlogs into a sandbox, and verify."""
        return self._start(cmd, reply, "drill", "drill")

    def _start(self, cmd: Command, reply: Replier, kind: str, target: str) -> Job | None:
        if not self._operator(cmd, reply, f"start a {kind} job"):
            return None
        if kind != "plan" and (busy := self._busy(target)):
            reply.ephemeral(messages.BUSY_TARGET.format(target=target, job=busy.id, state=busy.state))
            return None
        job = self.store.create(kind, target, cmd.user, args=_job_args(cmd), origin=cmd.origin,
                                channel=self.channel, reply=cmd.extra.get("reply", {}))
        self.store.audit(cmd.user, f"queued {kind}", job.id, _args_text(cmd))
        self._ack(cmd, reply, job)
        return job

    def _prod(self, cmd: Command, reply: Replier) -> Job | None:
        if not self._operator(cmd, reply, "request a prod restore"):
            return None
        if not self.has_prod:
            reply.ephemeral(messages.NO_PROD_TARGET)
            return None
        if busy := self._busy("prod"):
            reply.ephemeral(messages.BUSY_TARGET.format(target="prod", job=busy.id, state=busy.state))
            return None
        args = _job_args(cmd)
        stage = next((j for j in self.store.jobs(kind="stage", states=("succeeded",), limit=20)
                      if _plan_args(j.args) == args and j.plan_id), None)
        if stage is None:
            self.store.audit(cmd.user, "refused prod", None, "no verified stage run of this plan")
            reply.ephemeral(messages.NO_STAGE)
            return None
        job = self.store.create("prod", "prod", cmd.user, state="awaiting_approval", args=args, origin=cmd.origin,
                                channel=self.channel, reply=cmd.extra.get("reply", {}), plan_id=stage.plan_id,
                                stage_job=stage.id)
        summary = (stage.result or {}).get("summary", "")
        self.store.audit(cmd.user, "requested prod", job.id, f"plan {stage.plan_id} from stage {stage.id}")
        reply.approval_request(job, messages.APPROVAL_REQUEST.format(
            requester=cmd.user, job=job.id, plan_id=stage.plan_id, stage_job=stage.id, summary=summary,
            minutes=APPROVAL_MINUTES))
        return job

    def _approve(self, cmd: Command, reply: Replier) -> Job | None:
        job = self._job(cmd, reply)
        if job is None:
            return None
        if not self.access.can_approve(cmd.user):
            self.store.audit(cmd.user, "refused approve", job.id, "not an approver")
            reply.ephemeral(messages.NOT_APPROVER.format(user=cmd.user))
            return None
        if cmd.user == job.requester:
            self.store.audit(cmd.user, "refused approve", job.id, "self-approval")
            reply.ephemeral(messages.SELF_APPROVAL.format(user=cmd.user, job=job.id))
            return None
        if self._expire(job, reply):
            return None
        if not self.store.transition(job.id, ("awaiting_approval",), "queued", approver=cmd.user):
            reply.ephemeral(messages.NOT_WAITING.format(job=job.id, state=self.store.get(job.id).state))
            return None
        self.store.audit(cmd.user, "approved prod", job.id)
        self.store.add_event(job.id, messages.APPROVED.format(user=cmd.user, job=job.id))
        reply.say(messages.APPROVED.format(user=cmd.user, job=job.id))
        return self.store.get(job.id)

    def _reject(self, cmd: Command, reply: Replier) -> Job | None:
        job = self._job(cmd, reply)
        if job is None:
            return None
        if not (self.access.can_approve(cmd.user) or cmd.user == job.requester):
            self.store.audit(cmd.user, "refused reject", job.id, "not an approver")
            reply.ephemeral(messages.NOT_APPROVER.format(user=cmd.user))
            return None
        if not self.store.transition(job.id, ("awaiting_approval",), "rejected", approver=cmd.user):
            reply.ephemeral(messages.NOT_WAITING.format(job=job.id, state=job.state))
            return None
        self.store.audit(cmd.user, "rejected prod", job.id)
        reply.say(messages.REJECTED.format(user=cmd.user, job=job.id))
        return self.store.get(job.id)

    def _status(self, cmd: Command, reply: Replier) -> Job | None:
        job = self._job(cmd, reply, default_active=True)
        if job is not None:
            self._expire(job, None)
            reply.ephemeral(describe(self.store.get(job.id)))
        return job

    def _abort(self, cmd: Command, reply: Replier) -> Job | None:
        if not self._operator(cmd, reply, "abort a job"):
            return None
        job = self._job(cmd, reply, default_active=True)
        if job is None:
            return None
        if job.finished:
            reply.ephemeral(messages.ABORT_DONE.format(job=job.id, state=job.state))
            return job
        if not self.store.transition(job.id, ("queued", "awaiting_approval"), "aborted"):
            self.store.update(job.id, abort_requested=1)
        self.store.audit(cmd.user, "abort", job.id)
        reply.say(messages.ABORT_REQUESTED.format(job=job.id))
        return self.store.get(job.id)

    def _history(self, cmd: Command, reply: Replier) -> None:
        entries = self.store.audit_log(25)
        if not entries:
            reply.ephemeral(messages.HISTORY_EMPTY)
            return
        lines = [f"{datetime.fromtimestamp(e['ts']).strftime('%m-%d %H:%M:%S')}  {e['actor']}  {e['action']}"
                 f"{' ' + e['job'] if e['job'] else ''}{'  — ' + e['detail'] if e['detail'] else ''}"
                 for e in reversed(entries)]
        reply.ephemeral("\n".join(lines))

    # -- shared checks -----------------------------------------------------------------------------
    def _operator(self, cmd: Command, reply: Replier, what: str) -> bool:
        if self.access.can_operate(cmd.user):
            return True
        self.store.audit(cmd.user, f"refused {cmd.name}", cmd.job, "not an operator")
        reply.ephemeral(messages.NOT_ALLOWED.format(user=cmd.user, what=what))
        return False

    def _busy(self, target: str) -> Job | None:
        for job in self.store.jobs(states=ACTIVE, limit=20):
            if job.target == target and not self._expire(job, None):
                return job
        return None

    def _job(self, cmd: Command, reply: Replier, default_active: bool = False) -> Job | None:
        if cmd.job:
            job = self.store.get(cmd.job.upper())
            if job is None:
                reply.ephemeral(messages.NO_SUCH_JOB.format(job=cmd.job))
            return job
        jobs = self.store.jobs(states=ACTIVE, limit=1) if default_active else []
        if not jobs:
            jobs = self.store.jobs(limit=1)
        if not jobs:
            reply.ephemeral(messages.NO_JOB)
            return None
        return jobs[0]

    def _expire(self, job: Job, reply: Replier | None) -> bool:
        if job.state == "awaiting_approval" and self.store.clock() - job.created > APPROVAL_MINUTES * 60:
            if self.store.transition(job.id, ("awaiting_approval",), "expired"):
                self.store.audit("restore-bot", "approval expired", job.id)
            if reply:
                reply.ephemeral(messages.EXPIRED.format(job=job.id, minutes=APPROVAL_MINUTES))
            return True
        return False

    def _ack(self, cmd: Command, reply: Replier, job: Job) -> None:
        kind = messages.CARD_TITLE.get(job.kind, job.kind)
        if self.channel:
            reply.ephemeral(messages.ACK.format(kind=kind, job=job.id, channel=self.channel))
        else:
            reply.ephemeral(messages.ACK_CONSOLE.format(kind=kind, job=job.id))


def _job_args(cmd: Command) -> dict:
    args = {"stop_before": cmd.stop_before, "skips": list(cmd.skips)}
    if cmd.restart:
        args["restart"] = True
    return args


def _plan_args(args: dict) -> dict:
    """What decides the plan: a stage run with --restart verifies the same plan as one without."""
    return {k: v for k, v in args.items() if k != "restart"}


def _args_text(cmd: Command) -> str:
    parts = []
    if cmd.stop_before != "auto":
        parts.append(f"--stop-before {cmd.stop_before}")
    parts += [f"--skip {s}" for s in cmd.skips]
    if cmd.restart:
        parts.append("--restart")
    return " ".join(parts)


def describe(job: Job) -> str:
    """A job in a few lines: what, state, phase and progress, outcome."""
    kind = messages.CARD_TITLE.get(job.kind, job.kind)
    lines = [f"*{kind} {job.id}* — {job.state}" + (f", phase {job.phase}" if job.phase else "")]
    p = job.progress or {}
    if job.state == "running" and p.get("total"):
        pct = 100.0 * p.get("done", 0) / max(1, p["total"])
        lines.append(f"{pct:.0f}% · {p.get('rate', 0):,.0f} rows/s · ETA {p.get('eta', '?')} s")
    if job.result and job.result.get("summary"):
        lines.append(job.result["summary"])
    if job.error:
        lines.append(f"error: {job.error.get('message')}")
        if job.error.get("hint"):
            lines.append(messages.NEXT_STEP_AFTER_FAILURE.format(hint=job.error["hint"]))
    return "\n".join(lines)
