"""`/restore ...`: platform neutral. Takes a parsed Command and a Replier; starts jobs, answers.

Nothing here runs the engine: jobs go to the job store and the worker process picks them up,
so an answer never waits on a replay.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from handlers import messages
from handlers.commands import Command
from handlers.jobstore import ACTIVE, Job, JobStore

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
        args, choice = self._plan_args_of(cmd) if kind != "drill" else (_job_args(cmd), None)
        job = self.store.create(kind, target, cmd.user, args=args, origin=cmd.origin,
                                channel=self.channel, reply=cmd.extra.get("reply", {}))
        self.store.audit(cmd.user, f"queued {kind}", job.id, _args_text(args))
        self._ack(cmd, reply, job)
        if choice is not None:
            reply.ephemeral(messages.CHOICE_APPLIED.format(user=choice["user"], why=choice["why"],
                                                           what=_choice_text(choice)))
        return job

    def _plan_args_of(self, cmd: Command) -> tuple[dict, dict | None]:
        """What decides the plan of a plan, stage or prod job: the stop and skips typed in; if none
        were, the operators' saved choice (a plan card's buttons, an alert's *This is the incident*);
        and every event marked Expected. Stored on the job, so the worker, the prod gate and a
        resumed run all see the same. Returns the args and the choice applied (or None)."""
        args = _job_args(cmd)
        choice = None if cmd.chosen else self.store.choice()
        if choice is not None:
            args["stop_before"] = choice["stop"] or "auto"
            args["skips"] = list(choice["skips"])
        if expected := self.store.expected():
            args["expected"] = expected
        return args, choice

    def _prod(self, cmd: Command, reply: Replier) -> Job | None:
        if not self._operator(cmd, reply, "request a prod restore"):
            return None
        if not self.has_prod:
            reply.ephemeral(messages.NO_PROD_TARGET)
            return None
        if busy := self._busy("prod"):
            reply.ephemeral(messages.BUSY_TARGET.format(target="prod", job=busy.id, state=busy.state))
            return None
        args, _choice = self._plan_args_of(cmd)
        stage = next((j for j in self.store.jobs(kind="stage", states=("succeeded",), limit=20)
                      if _plan_args(j.args) == args and j.plan_id), None)
        if stage is None:
            self.store.audit(cmd.user, "refused prod", None, "no verified stage run of this plan"
                             + (f" ({_args_text(args)})" if _args_text(args) else ""))
            reply.ephemeral(messages.NO_STAGE + (f"\n{messages.NO_STAGE_ARGS.format(args=_args_text(args))}"
                                                 if _args_text(args) else ""))
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

    def _choice(self, cmd: Command, reply: Replier) -> None:
        """`/restore choice`: the operators' saved stop/skips and the events marked Expected;
        `/restore choice clear` forgets the stop and skips (the bot decides again)."""
        if cmd.clear:
            if not self._operator(cmd, reply, "clear the saved choice"):
                return
            had = self.store.clear_choice()
            self.store.audit(cmd.user, "cleared choice", None)
            if had:
                reply.say(messages.CHOICE_CLEARED.format(user=cmd.user))
            else:
                reply.ephemeral(messages.CHOICE_NONE)
            return
        choice = self.store.choice()
        lines = [messages.CHOICE_SHOW.format(user=choice["user"], why=choice["why"], what=_choice_text(choice))
                 if choice else messages.CHOICE_NONE]
        for e in self.store.expected_events():
            lines.append(messages.EXPECTED_LINE.format(tx=e["tx"], gtid=f" (GTID {e['gtid']})" if e["gtid"] else "",
                                                       user=e["user"], reason=e["reason"]))
        reply.ephemeral("\n".join(lines))

    # -- decisions from buttons (plan card, alerts) -----------------------------------------------
    def choose(self, user: str, plan_job: str, action: str, spec: str, reply: Replier, *, where: str = "",
               chosen: bool = False, origin: str = "slack", extra: dict | None = None) -> Job | None:
        """A plan card's *Stop before this one* (`action` "stop") or *Skip only this one* ("skip")
        on the candidate whose transaction is `spec` (its GTID or file:pos): a new plan, from the
        card's plan with that change, which becomes the operators' choice for later plans, stage
        and prod. `chosen`: the candidate is the card's stop (skipping it lets the bot find the next)."""
        cmd = Command("plan", user, origin=origin, extra=extra or {})
        if not self._operator(cmd, reply, "change the plan"):
            return None
        base = self.store.get(plan_job)
        if base is None:
            reply.ephemeral(messages.NO_SUCH_JOB.format(job=plan_job))
            return None
        stop, skips = base.args.get("stop_before", "auto"), list(base.args.get("skips", []))
        if action == "stop":
            stop, skips = spec, [s for s in skips if s != spec]
            verb = messages.CHOSE_STOP
        else:
            stop = "auto" if chosen or stop == spec else stop
            skips = skips + [spec] if spec not in skips else skips
            verb = messages.CHOSE_SKIP
        why = verb.format(where=where or spec, job=plan_job)
        self.store.set_choice(None if stop == "auto" else stop, skips, user, why)
        self.store.audit(user, "chose", plan_job, why)
        reply.say(messages.CHOICE_MADE.format(user=user, why=why, what=_choice_text({"stop": stop, "skips": skips})))
        return self._start(Command("plan", user, stop_before=stop, skips=tuple(skips), origin=origin, chosen=True,
                                   extra=extra or {}), reply, "plan", "-")

    def mark_expected(self, user: str, event: dict, reason: str, reply: Replier) -> bool:
        """An alert's *Expected*: later plans list the event as expected and never stop there by themselves."""
        if not self._operator(Command("choice", user), reply, "mark an event expected"):
            return False
        tx = f"{event['tx_file']}:{event['tx_pos']}"
        self.store.mark_expected(tx, event.get("gtid"), user, reason)
        self.store.audit(user, "marked expected", None, f"{tx}{' GTID ' + event['gtid'] if event.get('gtid') else ''}: {reason}")
        return True

    def mark_incident(self, user: str, event: dict, reason: str, reply: Replier) -> str | None:
        """An alert's *This is the incident*: later plans that name no stop stop before this
        transaction (its GTID, else its file:pos). Returns that stop."""
        if not self._operator(Command("choice", user), reply, "mark the incident"):
            return None
        spec = event.get("gtid") or f"{event['tx_file']}:{event['tx_pos']}"
        why = messages.CHOSE_INCIDENT.format(reason=reason)
        self.store.set_choice(spec, [], user, why)
        self.store.audit(user, "marked incident", None, f"stop before {spec}: {reason}")
        return spec

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


def _args_text(args: Command | dict) -> str:
    if isinstance(args, Command):
        args = _job_args(args)
    parts = []
    if args.get("stop_before", "auto") != "auto":
        parts.append(f"stop={args['stop_before']}")
    parts += [f"skip={s}" for s in args.get("skips", [])]
    if args.get("restart"):
        parts.append("--restart")
    if args.get("expected"):
        parts.append(f"({len(args['expected'])} expected)")
    return " ".join(parts)


def _choice_text(choice: dict) -> str:
    stop = choice.get("stop") or "auto"
    text = messages.CHOICE_STOP_AUTO if stop == "auto" else messages.CHOICE_STOP.format(stop=stop)
    if choice.get("skips"):
        text += messages.CHOICE_SKIPS.format(skips=", ".join(f"`{s}`" for s in choice["skips"]))
    return text


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
