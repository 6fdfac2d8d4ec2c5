"""The persistent job store (SQLite): jobs, their progress and thread events, and the audit log.

Shared by the bot process (creates jobs, reports progress) and the worker process (runs them).
Everything a restarted bot or worker needs to carry on is here. A job's states and the changes
between them are in TRANSITIONS; the tables, and how an older file is brought up to date, are in
handlers/sqlite_store.py.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from handlers.sqlite_store import StoreFile


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

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


_JSON = {"args", "progress", "result", "error"}


class JobStore:
    def __init__(self, path: str | Path, clock=time.time) -> None:
        self.path = str(path)
        self.clock = clock
        self._file = StoreFile(self.path)

    def _conn(self) -> sqlite3.Connection:
        return self._file.conn()

    # -- jobs ----------------------------------------------------------------------------------
    def create(self, kind: str, target: str, requester: str, *, state: str = JobState.QUEUED,
               args: dict | None = None, origin: str = "console", channel: str | None = None,
               plan_id: str | None = None, stage_job: str | None = None) -> Job:
        """A new job, R1, R2, ..."""
        kind, state = _kind(kind), _state(state)
        if state not in ACTIVE:
            raise IllegalTransition(f"a job cannot start {state}: it starts as one of {_words(ACTIVE)}")
        now = self.clock()
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            seq = (db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0])
            job_id = f"R{seq}"
            db.execute("INSERT INTO jobs (id, kind, target, state, requester, args, origin, channel, plan_id, "
                       "stage_job, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (job_id, kind, target, state, requester, json.dumps(args or {}), origin, channel,
                        plan_id, stage_job, now, now))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, *, states: tuple[str, ...] | None = None, kind: str | None = None, limit: int = 50) -> list[Job]:
        sql, params = "SELECT * FROM jobs WHERE 1=1", []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params += [_state(s) for s in states]   # a misspelt state is an error, not an empty list
        if kind:
            sql += " AND kind = ?"
            params.append(_kind(kind))
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [_job(r) for r in self._conn().execute(sql, params).fetchall()]

    def update(self, job_id: str, *, bump_card: bool = True, **fields: object) -> None:
        """Set fields of a job; never its state, which only `transition` changes."""
        if "state" in fields:
            raise IllegalTransition(f"job {job_id}: update() does not change a state; use transition(), "
                                    f"which checks TRANSITIONS")
        sets, params = [], []
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            params.append(json.dumps(value, default=str) if key in _JSON else value)
        sets.append("updated = ?")
        params.append(self.clock())
        if bump_card:
            sets.append("card_version = card_version + 1")
        params.append(job_id)
        self._conn().execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", params)

    def transition(self, job_id: str, from_states: tuple[str, ...], to_state: str, **fields: object) -> bool:
        """Atomically move a job from one of `from_states`; False if someone else moved it first.
        A move the transition table does not allow raises IllegalTransition, whatever the job's state."""
        to_state = _state(to_state)
        from_states = tuple(_state(s) for s in from_states)
        for from_state in from_states:
            if to_state not in TRANSITIONS[from_state]:
                allowed = _words(sorted(TRANSITIONS[from_state])) or "nothing (it is finished)"
                raise IllegalTransition(f"job {job_id}: {from_state} -> {to_state} is not a state change a job "
                                        f"makes; from {from_state} it goes to {allowed} "
                                        f"(TRANSITIONS in handlers/jobstore.py)")
        sets = ["state = ?", "updated = ?", "card_version = card_version + 1"]
        params: list = [to_state, self.clock()]
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            params.append(json.dumps(value, default=str) if key in _JSON else value)
        cur = self._conn().execute(
            f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND state IN ({','.join('?' * len(from_states))})",
            [*params, job_id, *from_states])
        return cur.rowcount == 1

    def running_on(self, target: str) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE target = ? AND kind != ? AND state = ? ORDER BY seq LIMIT 1",
                                   (target, JobKind.PLAN, JobState.RUNNING)).fetchone()
        return _job(row) if row else None

    # -- thread events ---------------------------------------------------------------------------
    def add_event(self, job_id: str, text: str) -> None:
        self._conn().execute("INSERT INTO events (job, ts, text) VALUES (?,?,?)", (job_id, self.clock(), text))

    def unposted_events(self, job_id: str) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self._conn().execute(
            "SELECT id, text FROM events WHERE job = ? AND posted = 0 ORDER BY id", (job_id,)).fetchall()]

    def events(self, job_id: str) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT text FROM events WHERE job = ? ORDER BY id", (job_id,))]

    def mark_posted(self, event_id: int) -> None:
        self._conn().execute("UPDATE events SET posted = 1 WHERE id = ?", (event_id,))

    # -- what operators decided about the incident ------------------------------------------------
    def set_choice(self, stop: str | None, skips: list[str], user: str, why: str) -> None:
        """The operators' choice: where plans stop (None: the bot decides) and what they skip, for
        every later plan, stage and prod that does not name its own stop or skips."""
        self._conn().execute("INSERT INTO choice (id, stop, skips, user, why, ts) VALUES (1,?,?,?,?,?) "
                             "ON CONFLICT(id) DO UPDATE SET stop = excluded.stop, skips = excluded.skips, "
                             "user = excluded.user, why = excluded.why, ts = excluded.ts",
                             (stop, json.dumps(list(skips)), user, why, self.clock()))

    def choice(self) -> dict | None:
        row = self._conn().execute("SELECT stop, skips, user, why, ts FROM choice WHERE id = 1").fetchone()
        if row is None:
            return None
        return {"stop": row["stop"], "skips": json.loads(row["skips"]), "user": row["user"], "why": row["why"],
                "ts": row["ts"]}

    def clear_choice(self) -> bool:
        return self._conn().execute("DELETE FROM choice").rowcount > 0

    def mark_expected(self, tx: str, gtid: str | None, user: str, reason: str) -> None:
        """An event an operator called expected (its transaction's file:pos and GTID): later plans
        list it as "expected" and never stop there by themselves."""
        self._conn().execute("INSERT INTO expected_events (tx, gtid, user, reason, ts) VALUES (?,?,?,?,?) "
                             "ON CONFLICT(tx) DO UPDATE SET gtid = excluded.gtid, user = excluded.user, "
                             "reason = excluded.reason, ts = excluded.ts", (tx, gtid, user, reason, self.clock()))

    def expected_events(self) -> list[dict]:
        return [dict(r) for r in self._conn().execute(
            "SELECT tx, gtid, user, reason, ts FROM expected_events ORDER BY ts, tx").fetchall()]

    def expected(self) -> list[str]:
        """What a plan takes as PlanRequest.expected: every transaction's file:pos and GTID."""
        return sorted({v for e in self.expected_events() for v in (e["tx"], e["gtid"]) if v})

    # -- audit -----------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, job: str | None = None, detail: str = "") -> None:
        self._conn().execute("INSERT INTO audit (ts, actor, action, job, detail) VALUES (?,?,?,?,?)",
                             (self.clock(), actor, action, job, detail))

    def audit_log(self, limit: int = 30) -> list[dict]:
        rows = self._conn().execute("SELECT ts, actor, action, job, detail FROM audit ORDER BY id DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [dict(r) for r in rows]


def _job(row: sqlite3.Row) -> Job:
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
