"""One way in for every command: metrics, audit and access checks, then the one handler for it.

Transports (Slack, KakaoTalk, the console) turn a request into a `Command` (`handlers.commands`)
and a `Reply` of their own, and call `Dispatcher.dispatch`. Handlers all have one shape,
`handle(cmd, reply) -> None`, and say which command names they take; they never check who may
give a command (the table here does) nor count requests.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from prometheus_client import Counter

from handlers import messages
from handlers.commands import CLUSTER_COMMANDS, Command, CommandError, from_action, parse
from handlers.jobstore import Job, JobStore
from handlers.presenter import jobs as job_text
from handlers.presenter import replies as say
from handlers.presenter.answers import args_text, bad_input

REQUESTS = Counter("restore_bot_requests_total", "chat requests by subcommand", ["command"])

# Who may give which command (the rest: anyone who can reach the bot). A reject is the
# approvers' or the requester's, an undo's approval an operator's or an approver's (on production
# an approver's, not the requester's): those rules need the job, so the handler applies them.
OPERATOR_ONLY = frozenset({"plan", "stage", "drill", "prod", "abort", "choice clear", "choose stop", "choose skip",
                           "alert expected", "alert incident", "backup now", "oncall set", "undo"})
APPROVER_ONLY = frozenset({"approve"})


class Access(Protocol):
    def can_operate(self, user: str) -> bool: ...
    def can_approve(self, user: str) -> bool: ...


class Reply:
    """How a command answers the person who gave it and the team; each transport subclasses it.

    `ephemeral` goes to that person only; `say` to the team (into a message's thread when
    `thread` = (channel, ts) names one); `approval_request` asks a second person to approve a
    job; `queued` tells that the command made `job` run (acknowledged unless `ack` is false:
    an approval says so itself); `showing` that the command was about `job`. The last job either
    way is kept in `job`, a job made to run in `started`, for transports that follow it up.
    """

    channel: str | None = None   # where job cards go (said in the acknowledgement), if anywhere

    def __init__(self) -> None:
        self.job: Job | None = None
        self.started: Job | None = None

    def ephemeral(self, text: str) -> None:
        raise NotImplementedError

    def say(self, text: str, *, thread: tuple[str, str] | None = None) -> None:
        self.ephemeral(text)

    def approval_request(self, job: Job, text: str) -> None:
        self.job = job
        self.say(text)

    def queued(self, job: Job, *, ack: bool = True) -> None:
        self.job = self.started = job
        if ack:
            self.ephemeral(job_text.queued(job, self.channel))

    def showing(self, job: Job) -> None:
        self.job = job


class ClusterNames(Protocol):
    named: bool                    # the config has [clusters]: commands and jobs name theirs

    def resolve(self, typed: str | None): ...   # the cluster (with .name); CommandError listing the choices


class Handler(Protocol):
    commands: tuple[str, ...]   # the Command names it takes

    def handle(self, cmd: Command, reply: Reply) -> None: ...


class Dispatcher:
    def __init__(self, store: JobStore, access: Access, handlers: list[Handler],
                 clusters: ClusterNames | None = None) -> None:
        self.store, self.access, self.clusters = store, access, clusters
        self.routes = {name: handler for handler in handlers for name in handler.commands}

    # -- what transports call ------------------------------------------------------------------
    def parse(self, text: str, user: str, origin: str) -> Command:
        """`handlers.commands.parse`, counting what cannot be read; raises CommandError."""
        try:
            return parse(text, user, origin)
        except CommandError:
            REQUESTS.labels("invalid").inc()
            raise

    def text(self, text: str, user: str, origin: str, reply: Reply) -> None:
        """Typed text: answered with the usage when it cannot be read, else dispatched."""
        try:
            cmd = self.parse(text, user, origin)
        except CommandError as exc:
            reply.ephemeral(bad_input(exc, exc.usage))
            return
        self.dispatch(cmd, reply)

    def action(self, action_id: str, value: str, user: str, origin: str, reply: Reply) -> None:
        """A button click (action id and value)."""
        try:
            cmd = from_action(action_id, value, user, origin)
        except CommandError as exc:
            REQUESTS.labels("invalid").inc()
            reply.ephemeral(str(exc))
            return
        self.dispatch(cmd, reply)

    def dispatch(self, cmd: Command, reply: Reply) -> None:
        REQUESTS.labels(cmd.name).inc()
        self.store.audit(cmd.user, f"request {cmd.name}", cmd.job, _detail(cmd))
        if cmd.name in CLUSTER_COMMANDS and (self.clusters is not None or cmd.cluster):
            try:
                if self.clusters is None:
                    raise CommandError(messages.CLUSTER_UNKNOWN.format(name=cmd.cluster, choices="none configured"))
                cluster = self.clusters.resolve(cmd.cluster)
            except CommandError as exc:   # none named with several configured, or an unknown name
                why = str(exc) + (messages.UNDO_WORDS if cmd.name == "undo" and cmd.cluster else "")
                self.store.audit(cmd.user, f"refused {cmd.name}", cmd.job, why)
                reply.ephemeral(why)
                return
            cmd = replace(cmd, cluster=cluster.name if self.clusters.named else None)
        handler = self.routes.get(cmd.name)
        if handler is None:   # e.g. /oncall where the on-call settings are not loaded
            reply.ephemeral(say.not_here(cmd.name))
            return
        if self._allowed(cmd, reply):
            handler.handle(cmd, reply)

    # -- middleware ----------------------------------------------------------------------------
    def _allowed(self, cmd: Command, reply: Reply) -> bool:
        if cmd.name in OPERATOR_ONLY and not self.access.can_operate(cmd.user):
            self.store.audit(cmd.user, f"refused {cmd.name}", cmd.job, "not an operator")
            reply.ephemeral(say.not_allowed(cmd.user, cmd.name))
            return False
        if cmd.name in APPROVER_ONLY and not self.access.can_approve(cmd.user):
            self.store.audit(cmd.user, f"refused {cmd.name}", cmd.job, "not an approver")
            reply.ephemeral(say.not_approver(cmd.user))
            return False
        return True


def job_args(cmd: Command) -> dict:
    """What a plan, stage or prod command typed that decides its plan, as stored on the job."""
    args = {"stop_before": cmd.stop_before, "skips": list(cmd.skips)}
    if cmd.cluster:   # set only when the config names its clusters (the dispatcher settles it)
        args["cluster"] = cmd.cluster
    if cmd.restart:
        args["restart"] = True
    return args


def _detail(cmd: Command) -> str:
    if cmd.name == "undo":
        return (f"cluster={cmd.cluster} " if cmd.cluster else "") + f"{cmd.spec} on {cmd.target or 'the alert target'}"
    return " ".join(t for t in (args_text(job_args(cmd)), cmd.who, cmd.spec, cmd.alert) if t)
