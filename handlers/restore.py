"""`/restore ...`: platform neutral. Takes a parsed Command and a Reply; starts jobs, answers.

Nothing here runs the engine: jobs go to the job store and the worker process picks them up,
so an answer never waits on a replay.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Protocol

from handlers import messages
from handlers.commands import Command
from handlers.dispatcher import Reply, job_args
from handlers.jobstore import ACTIVE, APPROVAL_MINUTES, Job, JobKind, JobState, JobStore
from handlers.presenter import replies as say
from handlers.presenter.answers import args_text, choice_shown, history
from handlers.presenter.jobs import describe
from handlers.store_schema import DEFAULT_CLUSTER

__all__ = ["APPROVAL_MINUTES", "RestoreHandler"]


class Approvers(Protocol):
    def can_operate(self, user: str) -> bool: ...
    def can_approve(self, user: str) -> bool: ...


class RestoreHandler:
    """`/restore ...` and the plan card's buttons. Who may give which command the dispatcher has
    checked already; what is left here are the rules about jobs (one per target, the prod gate,
    no self-approval, a requester may take back a request)."""

    commands = ("help", "plan", "stage", "prod", "status", "abort", "history", "approve", "reject", "drill", "choice",
                "choice clear", "choose stop", "choose skip", "undo", "undo approve")

    def __init__(self, store: JobStore, access: Approvers, *, channel: str | None, has_prod: bool,
                 undo_targets: dict[str, bool] | None = None, clusters=None) -> None:
        """`clusters`: handlers.clusters.Clusters, each with its own prod, undo targets and channel
        (None: one cluster, described by `has_prod`, `undo_targets` and `channel`)."""
        self.store = store
        self.clusters = clusters
        self.access = access
        self.channel = channel
        self.has_prod = has_prod
        # The kept targets an undo may write into, each with whether it is production (a prod entry
        # in the config): approving an undo there takes the prod gate. A sandbox is not one of them.
        self.undo_targets = undo_targets or {}

    def handle(self, cmd: Command, reply: Reply) -> None:
        getattr(self, "_" + cmd.name.replace(" ", "_"))(cmd, reply)

    def _cluster(self, cmd: Command):
        """The cluster the (dispatched) command is for: its prod, undo targets and channel."""
        if self.clusters is None:
            return SimpleNamespace(name=None, has_prod=self.has_prod, undo_targets=self.undo_targets,
                                   channel=self.channel)
        return self.clusters.resolve(cmd.cluster)

    # -- each subcommand -------------------------------------------------------------------------
    def _help(self, cmd: Command, reply: Reply) -> None:
        reply.ephemeral(messages.USAGE)

    def _plan(self, cmd: Command, reply: Reply) -> None:
        self._start(cmd, reply, JobKind.PLAN, "-")

    def _stage(self, cmd: Command, reply: Reply) -> None:
        self._start(cmd, reply, JobKind.STAGE, "stage")

    def _drill(self, cmd: Command, reply: Reply) -> None:
        """Restore the newest base snapshot plus the archived binlogs into a sandbox, and verify."""
        self._start(cmd, reply, JobKind.DRILL, "drill")

    def _start(self, cmd: Command, reply: Reply, kind: JobKind, target: str) -> None:
        if kind != JobKind.PLAN and (busy := self._busy(target, cmd.cluster)):
            reply.ephemeral(say.busy(target, busy))
            return
        args, choice = self._plan_args_of(cmd) if kind != JobKind.DRILL else (job_args(cmd), None)
        job = self.store.create(kind, target, cmd.user, args=args, origin=cmd.origin,
                                channel=self._cluster(cmd).channel)
        self.store.audit(cmd.user, f"queued {kind}", job.id, args_text(args))
        reply.queued(job)
        if choice is not None:
            reply.ephemeral(say.choice_applied(choice))

    def _plan_args_of(self, cmd: Command) -> tuple[dict, dict | None]:
        """What decides the plan of a plan, stage or prod job: the stop and skips typed in; if none
        were, the operators' saved choice (a plan card's buttons, an alert's *This is the incident*);
        and every event marked Expected. Stored on the job, so the worker, the prod gate and a
        resumed run all see the same. Returns the args and the choice applied (or None)."""
        args = job_args(cmd)
        cluster = self._cluster(cmd).name or DEFAULT_CLUSTER   # the choice and expected events are its own
        choice = None if cmd.chosen else self.store.choice(cluster)
        if choice is not None:
            args["stop_before"] = choice["stop"] or "auto"
            args["skips"] = list(choice["skips"])
        if expected := self.store.expected(cluster):
            args["expected"] = expected
        return args, choice

    def _prod(self, cmd: Command, reply: Reply) -> None:
        cluster = self._cluster(cmd)
        if not cluster.has_prod:
            reply.ephemeral(messages.NO_PROD_TARGET)
            return
        if busy := self._busy("prod", cmd.cluster):
            reply.ephemeral(say.busy("prod", busy))
            return
        args, _choice = self._plan_args_of(cmd)
        stage = next((j for j in self.store.jobs(kind=JobKind.STAGE, states=(JobState.SUCCEEDED,), limit=20)
                      if _plan_args(j.args) == args and j.plan_id), None)
        if stage is None:
            typed = args_text(args)
            self.store.audit(cmd.user, "refused prod", None, "no verified stage run of this plan"
                             + (f" ({typed})" if typed else ""))
            reply.ephemeral(say.no_stage(typed))
            return
        job = self.store.create(JobKind.PROD, "prod", cmd.user, state=JobState.AWAITING_APPROVAL, args=args, origin=cmd.origin,
                                channel=cluster.channel, plan_id=stage.plan_id, stage_job=stage.id)
        self.store.audit(cmd.user, "requested prod", job.id, _on(job) + f"plan {stage.plan_id} from stage {stage.id}")
        reply.approval_request(job, say.approval_request(job, stage, APPROVAL_MINUTES))

    def _approve(self, cmd: Command, reply: Reply) -> None:
        job = self._job(cmd, reply)
        if job is not None:
            self._gate(cmd, reply, job, second_person=job.kind == JobKind.PROD or bool(job.args.get("guarded")))

    def _undo_approve(self, cmd: Command, reply: Reply) -> None:
        """An undo preview's *Approve undo*: any operator on a target without a prod entry (the
        requester too), the prod gate on one with it."""
        job = self._job(cmd, reply)
        if job is None:
            return
        if job.kind != JobKind.UNDO:
            reply.ephemeral(say.not_waiting(job))
            return
        self._gate(cmd, reply, job, second_person=bool(job.args.get("guarded")))

    def _gate(self, cmd: Command, reply: Reply, job: Job, *, second_person: bool) -> None:
        """The approval gate, for prod restores and undos alike: `second_person` (production) takes an
        approver who is not the requester; then the approval window, then the one state change that
        lets the worker run it."""
        if not (self.access.can_approve(cmd.user) or (not second_person and self.access.can_operate(cmd.user))):
            self.store.audit(cmd.user, "refused approve", job.id, "not an approver")
            reply.ephemeral(say.not_approver(cmd.user, job))
            return
        if second_person and cmd.user == job.requester:
            self.store.audit(cmd.user, "refused approve", job.id, "self-approval")
            reply.ephemeral(say.self_approval(cmd.user, job))
            return
        if self._expire(job, reply):
            return
        if not self.store.transition(job.id, (JobState.AWAITING_APPROVAL,), JobState.QUEUED, approver=cmd.user):
            reply.ephemeral(say.not_waiting(self.store.get(job.id)))
            return
        self.store.audit(cmd.user, f"approved {job.kind}", job.id, _on(job) + say.approval_detail(job))
        self.store.add_event(job.id, say.approved(cmd.user, job))
        reply.say(say.approved(cmd.user, job))
        reply.queued(self.store.get(job.id), ack=False)

    def _reject(self, cmd: Command, reply: Reply) -> None:
        job = self._job(cmd, reply)
        if job is None:
            return
        if not (self.access.can_approve(cmd.user) or cmd.user == job.requester):  # a requester may take it back
            self.store.audit(cmd.user, "refused reject", job.id, "not an approver")
            reply.ephemeral(say.not_approver(cmd.user))
            return
        if not self.store.transition(job.id, (JobState.AWAITING_APPROVAL,), JobState.REJECTED, approver=cmd.user):
            reply.ephemeral(say.not_waiting(job))
            return
        self.store.audit(cmd.user, f"rejected {job.kind}", job.id, _on(job).strip())
        if job.kind == JobKind.UNDO:   # its card stands: the thread says why nothing follows
            self.store.add_event(job.id, say.rejected(cmd.user, job))
        reply.say(say.rejected(cmd.user, job))
        reply.showing(self.store.get(job.id))

    def _undo(self, cmd: Command, reply: Reply) -> None:
        """`/restore undo SPEC [stage|prod]`, or an alert's *Undo this*: a job whose preview (a dry
        run) ends on its card with *Approve undo* and *Reject*; approved, the same job applies it.
        An alert names no target: stage when it is a kept server, else prod (by default stage is a
        throwaway sandbox, where an undo has nothing to write into; prod still takes its gate)."""
        cluster = self._cluster(cmd)
        kept = cluster.undo_targets
        target = cmd.target or ("prod" if "stage" not in kept and "prod" in kept else "stage")
        guarded = kept.get(target)
        if guarded is None:
            reply.ephemeral(say.undo_no_target(target, configured=target == "stage"))
            return
        if busy := self._busy(target, cmd.cluster):
            reply.ephemeral(say.busy(target, busy))
            return
        on = {"cluster": cmd.cluster} if cmd.cluster else {}
        job = self.store.create(JobKind.UNDO, target, cmd.user, args={"event": cmd.spec, "guarded": guarded, **on},
                                origin=cmd.origin, channel=cluster.channel)
        self.store.audit(cmd.user, "queued undo", job.id, _on(job) + f"{cmd.spec} on {target}")
        reply.queued(job)

    def _status(self, cmd: Command, reply: Reply) -> None:
        job = self._job(cmd, reply, default_active=True)
        if job is not None:
            self._expire(job, None)
            job = self.store.get(job.id)
            reply.ephemeral(describe(job))
            reply.showing(job)

    def _abort(self, cmd: Command, reply: Reply) -> None:
        job = self._job(cmd, reply, default_active=True)
        if job is None:
            return
        if job.finished:
            reply.ephemeral(say.abort_done(job))
            reply.showing(job)
            return
        if not self.store.transition(job.id, (JobState.QUEUED, JobState.AWAITING_APPROVAL), JobState.ABORTED):
            self.store.update(job.id, abort_requested=1)
        self.store.audit(cmd.user, "abort", job.id, _on(job).strip())
        reply.say(say.abort_requested(job))
        reply.showing(self.store.get(job.id))

    def _history(self, cmd: Command, reply: Reply) -> None:
        reply.ephemeral(history(self.store.audit_log(25)))

    def _choice(self, cmd: Command, reply: Reply) -> None:
        """`/restore choice`: the operators' saved stop/skips and the events marked Expected."""
        if cmd.cluster is None and self.clusters is not None and len(self.clusters.names) > 1:
            # each cluster has its own: all of them, each under its name (`--cluster NAME` for one)
            reply.ephemeral("\n".join(f"*{name}*: " + choice_shown(self.store.choice(name), self.store.expected_events(name))
                                      for name in self.clusters.names))
            return
        cluster = self._cluster(cmd).name or DEFAULT_CLUSTER
        reply.ephemeral(choice_shown(self.store.choice(cluster), self.store.expected_events(cluster)))

    def _choice_clear(self, cmd: Command, reply: Reply) -> None:
        """`/restore choice clear` forgets the saved stop and skips (the bot decides again)."""
        name = self._cluster(cmd).name
        had = self.store.clear_choice(name or DEFAULT_CLUSTER)
        self.store.audit(cmd.user, "cleared choice", None, f"cluster={name}" if name else "")
        if had:
            reply.say(say.choice_cleared(cmd.user))
        else:
            reply.ephemeral(messages.CHOICE_NONE)

    # -- the plan card's buttons ------------------------------------------------------------------
    def _choose_stop(self, cmd: Command, reply: Reply) -> None:
        self._choose(cmd, reply, stop_here=True)

    def _choose_skip(self, cmd: Command, reply: Reply) -> None:
        self._choose(cmd, reply, stop_here=False)

    def _choose(self, cmd: Command, reply: Reply, *, stop_here: bool) -> None:
        """A plan card's *Stop before this one* or *Skip only this one* on the candidate whose
        transaction is `cmd.spec` (its GTID or file:pos), on plan job `cmd.job`: a new plan, from
        the card's plan with that change, which becomes the operators' choice for later plans, stage
        and prod. `cmd.chosen`: the candidate is the card's stop (skipping it lets the bot find the next)."""
        base = self.store.get((cmd.job or "").upper())
        if base is None:
            reply.ephemeral(say.no_such_job(cmd.job))
            return
        spec = cmd.spec
        stop, skips = base.args.get("stop_before", "auto"), list(base.args.get("skips", []))
        if stop_here:
            stop, skips = spec, [s for s in skips if s != spec]
        else:
            stop = "auto" if cmd.chosen or stop == spec else stop
            skips = skips + [spec] if spec not in skips else skips
        cluster = base.args.get("cluster")
        why = say.chose(stop_here, cmd.where or spec, base)
        self.store.set_choice(None if stop == "auto" else stop, skips, cmd.user, why, cluster or DEFAULT_CLUSTER)
        self.store.audit(cmd.user, "chose", base.id, _on(base) + why)
        reply.say(say.choice_made(cmd.user, why, stop, skips))
        self._start(Command("plan", cmd.user, origin=cmd.origin, stop_before=stop, skips=tuple(skips), chosen=True,
                            cluster=cluster), reply, JobKind.PLAN, "-")

    # -- shared checks -----------------------------------------------------------------------------
    def _busy(self, target: str, cluster: str | None = None) -> Job | None:
        """The active job on `target` of this cluster (other clusters' targets are other servers)."""
        for job in self.store.jobs(states=ACTIVE, limit=50):
            if job.target == target and job.args.get("cluster") == cluster and not self._expire(job, None):
                return job
        return None

    def _job(self, cmd: Command, reply: Reply, default_active: bool = False) -> Job | None:
        if cmd.job:
            job = self.store.get(cmd.job.upper())
            if job is None:
                reply.ephemeral(say.no_such_job(cmd.job))
            return job
        jobs = self.store.jobs(states=ACTIVE, limit=1) if default_active else []
        if not jobs:
            jobs = self.store.jobs(limit=1)
        if not jobs:
            reply.ephemeral(messages.NO_JOB)
            return None
        return jobs[0]

    def _expire(self, job: Job, reply: Reply | None) -> bool:
        since = max(job.created, (job.result or {}).get("waiting_since") or 0)   # an undo waits once previewed
        if job.state == JobState.AWAITING_APPROVAL and self.store.clock() - since > APPROVAL_MINUTES * 60:
            if self.store.transition(job.id, (JobState.AWAITING_APPROVAL,), JobState.EXPIRED):
                self.store.audit("restore-bot", "approval expired", job.id)
            if reply:
                reply.ephemeral(say.expired(job, APPROVAL_MINUTES))
            return True
        return False


def _on(job: Job) -> str:
    """`cluster=NAME ` for an audit entry about a job of a named cluster."""
    return f"cluster={job.args['cluster']} " if job.args.get("cluster") else ""


def _plan_args(args: dict) -> dict:
    """What decides the plan: a stage run with --restart verifies the same plan as one without."""
    return {k: v for k, v in args.items() if k != "restart"}
