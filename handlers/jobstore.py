"""The persistent job store: jobs, their progress and thread events, and the audit log.

Shared by the bot process (creates jobs, reports progress) and the worker process (runs them), and
by several serve instances when the store is a database server. Everything a restarted bot or
worker needs to carry on is here. A job's states and the changes between them are in TRANSITIONS;
the tables are in handlers/store_schema.py, where they live and how they are migrated in
handlers/store.py.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import sqlalchemy as sa

from handlers.store import Store, open_store
from handlers.store_schema import DEFAULT_CLUSTER, audit, choice, events, expected_events, jobs


class JobState(str, Enum):
    """A job's state. A str, so it equals its value: "running" == JobState.RUNNING, and JSON and
    SQLite hold the plain word."""
    QUEUED = "queued"                         # waiting for a worker
    AWAITING_APPROVAL = "awaiting_approval"   # a prod restore waiting for a second operator; an undo's preview
    RUNNING = "running"                       # a worker has it (worker_pid)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    REJECTED = "rejected"                     # the approver said no
    EXPIRED = "expired"                       # nobody approved in time

    def __str__(self) -> str:   # f"{state}" is the word on every Python (3.11 changed format() of mixins)
        return self.value


class JobKind(str, Enum):
    """What a job does; a str like JobState."""
    PLAN = "plan"
    STAGE = "stage"
    PROD = "prod"
    DRILL = "drill"
    BACKUP = "backup"
    UNDO = "undo"      # a preview (dry run) that waits for approval, then the apply of that preview

    def __str__(self) -> str:
        return self.value


APPROVAL_MINUTES = 15   # a job awaiting approval (prod, an undo's preview) expires after this long

ACTIVE = (JobState.QUEUED, JobState.AWAITING_APPROVAL, JobState.RUNNING)
FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.ABORTED, JobState.REJECTED, JobState.EXPIRED)

# Every state change a job may make; anything else is a bug and `JobStore.transition` refuses it.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING,              # a worker takes it
                                JobState.ABORTED}),            # /restore abort before it started
    JobState.AWAITING_APPROVAL: frozenset({JobState.QUEUED,    # approved
                                           JobState.REJECTED, JobState.EXPIRED, JobState.ABORTED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.ABORTED,
                                 JobState.QUEUED,              # its worker stopped or died: another resumes it
                                 JobState.AWAITING_APPROVAL}), # an undo's preview is ready: approve to apply
    **{state: frozenset() for state in FINISHED},
}


class IllegalTransition(ValueError):
    """A state change the transition table does not allow (a programming error, not a race)."""


@dataclass
class Job:
    id: str
    kind: JobKind
    target: str
    state: JobState
    phase: str
    requester: str
    approver: str | None
    args: dict
    plan_id: str | None
    stage_job: str | None
    progress: dict
    result: dict | None
    error: dict | None
    abort_requested: bool
    worker_pid: int | None
    origin: str
    channel: str | None
    card_ts: str | None
    card_version: int
    posted_version: int
    created: float
    updated: float
    owner: str | None = None           # the serve instance running it (claim_next), when it heartbeats
    heartbeat_at: float | None = None  # the store's clock at its owner's last heartbeat

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


_JSON = {"args", "progress", "result", "error"}


class JobStore:
    """Jobs, their thread events, the operators' choices and the audit log, in the store at a SQLite
    path or a database URL (handlers/store.py). Several serve instances may share one on a server:
    claim_next, heartbeat and take_over_stale are how their workers split the queue."""

    def __init__(self, path: str | Path | Store, clock=time.time) -> None:
        self.clock = clock
        self.store = open_store(path)
        self.path = self.store.where

    # -- jobs ----------------------------------------------------------------------------------
    def create(self, kind: str, target: str, requester: str, *, state: str = JobState.QUEUED,
               args: dict | None = None, origin: str = "console", channel: str | None = None,
               plan_id: str | None = None, stage_job: str | None = None) -> Job:
        """A new job, R1, R2, ... (numbered by the store's own sequence: instances never collide)."""
        kind, state = _kind(kind), _state(state)
        if state not in ACTIVE:
            raise IllegalTransition(f"a job cannot start {state}: it starts as one of {_words(ACTIVE)}")
        now = self.clock()
        with self.store.write() as db:
            seq = db.execute(jobs.insert().values(
                id=f"new-{uuid.uuid4().hex}", kind=kind.value, target=target, state=state.value,
                requester=requester, args=json.dumps(args or {}), progress="{}", origin=origin,
                channel=channel, plan_id=plan_id, stage_job=stage_job, created=now,
                updated=now)).inserted_primary_key[0]
            job_id = f"R{seq}"
            db.execute(jobs.update().where(jobs.c.seq == seq).values(id=job_id))
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        with self.store.read() as db:
            row = db.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return _job(row) if row else None

    def jobs(self, *, states: tuple[str, ...] | None = None, kind: str | None = None, limit: int = 50) -> list[Job]:
        query = sa.select(jobs)
        if states:
            query = query.where(jobs.c.state.in_([_state(s).value for s in states]))   # a misspelt state is an error
        if kind:
            query = query.where(jobs.c.kind == _kind(kind).value)
        with self.store.read() as db:
            rows = db.execute(query.order_by(jobs.c.seq.desc()).limit(limit)).mappings().all()
        return [_job(r) for r in rows]

    def update(self, job_id: str, *, bump_card: bool = True, **fields: object) -> None:
        """Set fields of a job; never its state, which only `transition` changes."""
        if "state" in fields:
            raise IllegalTransition(f"job {job_id}: update() does not change a state; use transition(), "
                                    f"which checks TRANSITIONS")
        values = {**_encoded(fields), "updated": self.clock()}
        if bump_card:
            values["card_version"] = jobs.c.card_version + 1
        with self.store.read() as db:
            db.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def transition(self, job_id: str, from_states: tuple[str, ...], to_state: str, *,
                   owned_by: str | None = None, **fields: object) -> bool:
        """Atomically move a job from one of `from_states`; False if someone else moved it first
        (`owned_by`: or if another instance owns it now). A move the transition table does not allow
        raises IllegalTransition, whatever the job's state."""
        to_state = _state(to_state)
        from_states = tuple(_state(s) for s in from_states)
        for from_state in from_states:
            if to_state not in TRANSITIONS[from_state]:
                allowed = _words(sorted(TRANSITIONS[from_state])) or "nothing (it is finished)"
                raise IllegalTransition(f"job {job_id}: {from_state} -> {to_state} is not a state change a job "
                                        f"makes; from {from_state} it goes to {allowed} "
                                        f"(TRANSITIONS in handlers/jobstore.py)")
        values = {**_encoded(fields), "state": to_state.value, "updated": self.clock(),
                  "card_version": jobs.c.card_version + 1}
        with self.store.read() as db:
            cur = db.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state.in_([s.value for s in from_states]),
                                                 *([jobs.c.owner == owned_by] if owned_by else []))
                             .values(**values))
        return cur.rowcount == 1

    def running_on(self, target: str) -> Job | None:
        with self.store.read() as db:
            row = db.execute(_running_on(target).order_by(jobs.c.seq).limit(1)).mappings().first()
        return _job(row) if row else None

    # -- several instances on one store ---------------------------------------------------------------
    def claim_next(self, instance_id: str, *, pid: int | None = None) -> Job | None:
        """Take the oldest queued job this instance may run (one restore per target of a cluster at a
        time; a plan runs beside anything): RUNNING, owned by `instance_id`, heartbeat now. None if
        there is none. Claims are one at a time across instances (the store's claim lock; on SQLite
        the file's write lock): two instances claiming two jobs for one target at once would each see
        it free. Rows another transaction holds are skipped, not waited for (FOR UPDATE SKIP LOCKED)."""
        with self.store.claiming() as db:
            queued = db.execute(sa.select(jobs.c.id, jobs.c.kind, jobs.c.target, jobs.c.args)
                                .where(jobs.c.state == JobState.QUEUED.value).order_by(jobs.c.seq).limit(20)
                                .with_for_update(skip_locked=True)).all()
            for job_id, kind, target, args in queued:
                if kind != JobKind.PLAN.value and _busy(db, target, _cluster(args)):
                    continue
                db.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == JobState.QUEUED.value).values(
                    state=JobState.RUNNING.value, owner=instance_id, heartbeat_at=self.store.now(),
                    worker_pid=pid if pid is not None else os.getpid(), updated=self.clock(),
                    card_version=jobs.c.card_version + 1))
                break
            else:
                return None
        return self.get(job_id)

    def heartbeat(self, job_id: str, instance_id: str) -> bool:
        """The running job's owner says it lives. False: the job is no longer this instance's (it
        finished, or another instance took it over): its worker must stop working on it."""
        with self.store.read() as db:
            cur = db.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.owner == instance_id,
                                                 jobs.c.state == JobState.RUNNING.value)
                             .values(heartbeat_at=self.store.now()))
        return cur.rowcount == 1

    def take_over_stale(self, instance_id: str, older_than: float, *, pid: int | None = None) -> list[Job]:
        """Running jobs whose owner has not heartbeaten for `older_than` seconds become this instance's,
        still RUNNING with their phase and progress: the worker resumes each from its target's checkpoint.
        Each take-over is in the audit log. Jobs a worker of before heartbeats (no owner) are left to
        Worker.recover."""
        taken = []
        with self.store.write() as db:
            stale = db.execute(sa.select(jobs.c.id, jobs.c.owner).where(
                jobs.c.state == JobState.RUNNING.value, jobs.c.owner.is_not(None), jobs.c.owner != instance_id,
                jobs.c.heartbeat_at < self.store.now() - older_than).with_for_update(skip_locked=True)).all()
            for job_id, owner in stale:
                cur = db.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.owner == owner,
                                                     jobs.c.state == JobState.RUNNING.value).values(
                    owner=instance_id, heartbeat_at=self.store.now(), updated=self.clock(),
                    worker_pid=pid if pid is not None else os.getpid(), card_version=jobs.c.card_version + 1))
                if cur.rowcount == 1:
                    db.execute(audit.insert().values(ts=self.clock(), actor=instance_id, action="took over",
                                                     job=job_id, detail=f"{owner} stopped heartbeating"))
                    taken.append(job_id)
        return [self.get(job_id) for job_id in taken]

    # -- thread events ---------------------------------------------------------------------------
    def add_event(self, job_id: str, text: str) -> None:
        with self.store.read() as db:
            db.execute(events.insert().values(job=job_id, ts=self.clock(), text=text, posted=0))

    def unposted_events(self, job_id: str) -> list[tuple[int, str]]:
        with self.store.read() as db:
            rows = db.execute(sa.select(events.c.id, events.c.text).where(events.c.job == job_id, events.c.posted == 0)
                              .order_by(events.c.id)).all()
        return [(r[0], r[1]) for r in rows]

    def events(self, job_id: str) -> list[str]:
        with self.store.read() as db:
            return list(db.execute(sa.select(events.c.text).where(events.c.job == job_id).order_by(events.c.id))
                        .scalars())

    def mark_posted(self, event_id: int) -> None:
        with self.store.read() as db:
            db.execute(events.update().where(events.c.id == event_id).values(posted=1))

    # -- what operators decided about the incident ------------------------------------------------
    def set_choice(self, stop: str | None, skips: list[str], user: str, why: str,
                   cluster: str = DEFAULT_CLUSTER) -> None:
        """The operators' choice for `cluster`: where its plans stop (None: the bot decides) and what
        they skip, for every later plan, stage and prod of it that does not name its own stop or skips."""
        with self.store.read() as db:
            self.store.upsert(db, choice, {"cluster": cluster, "stop": stop, "skips": json.dumps(list(skips)),
                                           "user": user, "why": why, "ts": self.clock()}, "cluster")

    def choice(self, cluster: str = DEFAULT_CLUSTER) -> dict | None:
        with self.store.read() as db:
            row = db.execute(sa.select(choice.c.stop, choice.c.skips, choice.c.user, choice.c.why, choice.c.ts)
                             .where(choice.c.cluster == cluster)).mappings().first()
        if row is None:
            return None
        return {**row, "skips": json.loads(row["skips"])}

    def clear_choice(self, cluster: str = DEFAULT_CLUSTER) -> bool:
        with self.store.read() as db:
            return db.execute(choice.delete().where(choice.c.cluster == cluster)).rowcount > 0

    def mark_expected(self, tx: str, gtid: str | None, user: str, reason: str, cluster: str = DEFAULT_CLUSTER) -> None:
        """An event an operator called expected (its transaction's file:pos and GTID) on `cluster`:
        later plans of it list it as "expected" and never stop there by themselves."""
        values = {"cluster": cluster, "tx": tx, "gtid": gtid, "user": user, "reason": reason, "ts": self.clock()}
        e = expected_events.c
        with self.store.write() as db:   # the key is (cluster, tx): an update, else an insert
            if db.execute(expected_events.update().where(e.cluster == cluster, e.tx == tx).values(**values)).rowcount == 0:
                db.execute(expected_events.insert().values(**values))

    def expected_events(self, cluster: str = DEFAULT_CLUSTER) -> list[dict]:
        e = expected_events.c
        with self.store.read() as db:
            rows = db.execute(sa.select(e.tx, e.gtid, e.user, e.reason, e.ts).where(e.cluster == cluster)
                              .order_by(e.ts, e.tx)).mappings().all()
        return [dict(r) for r in rows]

    def expected(self, cluster: str = DEFAULT_CLUSTER) -> list[str]:
        """What a plan of `cluster` takes as PlanRequest.expected: every transaction's file:pos and GTID."""
        return sorted({v for e in self.expected_events(cluster) for v in (e["tx"], e["gtid"]) if v})

    # -- audit -----------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, job: str | None = None, detail: str = "") -> None:
        with self.store.read() as db:
            db.execute(audit.insert().values(ts=self.clock(), actor=actor, action=action, job=job, detail=detail))

    def audit_log(self, limit: int = 30) -> list[dict]:
        a = audit.c
        with self.store.read() as db:
            rows = db.execute(sa.select(a.ts, a.actor, a.action, a.job, a.detail).order_by(a.id.desc()).limit(limit))
            return [dict(r) for r in rows.mappings()]


def _running_on(target: str, *columns: sa.Column) -> sa.Select:
    return sa.select(*(columns or (jobs,))).where(jobs.c.target == target, jobs.c.kind != JobKind.PLAN.value,
                                                  jobs.c.state == JobState.RUNNING.value)


def _cluster(args: str | None) -> str | None:
    return (json.loads(args) if args else {}).get("cluster")


def _busy(db: sa.Connection, target: str, cluster: str | None) -> bool:
    """A restore runs on `target` of `cluster` (the same target name in another cluster is another server)."""
    return any(_cluster(args) == cluster for (args,) in db.execute(_running_on(target, jobs.c.args)))


def _encoded(fields: dict) -> dict:
    return {k: (json.dumps(v, default=str) if k in _JSON else (v.value if isinstance(v, Enum) else v))
            for k, v in fields.items()}


def _job(row) -> Job:
    data = dict(row)
    data.pop("seq", None)
    for key in _JSON:
        raw = data.get(key)
        data[key] = json.loads(raw) if raw else ({} if key in ("args", "progress") else None)
    data["abort_requested"] = bool(data["abort_requested"])
    data["kind"], data["state"] = JobKind(data["kind"]), JobState(data["state"])
    return Job(**data)


def _state(value: str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a job state: one of {_words(JobState)}") from None


def _kind(value: str) -> JobKind:
    try:
        return JobKind(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a job kind: one of {_words(JobKind)} (JobKind in handlers/jobstore.py)") \
            from None


def _words(values) -> str:
    return ", ".join(str(v) for v in values)
