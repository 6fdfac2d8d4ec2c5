"""The persistent job store (SQLite): jobs, their progress and thread events, and the audit log.

Shared by the bot process (creates jobs, reports progress) and the worker process (runs them).
Everything a restarted bot or worker needs to carry on is here.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ACTIVE = ("queued", "awaiting_approval", "running")
FINISHED = ("succeeded", "failed", "aborted", "rejected", "expired")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT '',
    requester TEXT NOT NULL,
    approver TEXT,
    args TEXT NOT NULL DEFAULT '{}',
    plan_id TEXT,
    stage_job TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    abort_requested INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    origin TEXT NOT NULL DEFAULT 'console',
    channel TEXT,
    card_ts TEXT,
    card_version INTEGER NOT NULL DEFAULT 0,
    posted_version INTEGER NOT NULL DEFAULT 0,
    reply TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    ts REAL NOT NULL,
    text TEXT NOT NULL,
    posted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS choice (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stop TEXT,
    skips TEXT NOT NULL DEFAULT '[]',
    user TEXT NOT NULL,
    why TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS expected_events (
    tx TEXT PRIMARY KEY,
    gtid TEXT,
    user TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    job TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
"""


@dataclass
class Job:
    id: str
    kind: str
    target: str
    state: str
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
    reply: dict
    created: float
    updated: float

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


_JSON = {"args", "progress", "result", "error", "reply"}


class JobStore:
    def __init__(self, path: str | Path, clock=time.time) -> None:
        self.path = str(path)
        self.clock = clock
        self._local = threading.local()
        with self._conn() as db:
            db.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    # -- jobs ----------------------------------------------------------------------------------
    def create(self, kind: str, target: str, requester: str, *, state: str = "queued", args: dict | None = None,
               origin: str = "console", channel: str | None = None, reply: dict | None = None,
               plan_id: str | None = None, stage_job: str | None = None) -> Job:
        now = self.clock()
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            seq = (db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0])
            job_id = f"R{seq}"
            db.execute("INSERT INTO jobs (id, kind, target, state, requester, args, origin, channel, reply, plan_id, "
                       "stage_job, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (job_id, kind, target, state, requester, json.dumps(args or {}), origin, channel,
                        json.dumps(reply or {}), plan_id, stage_job, now, now))
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
            params += list(states)
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [_job(r) for r in self._conn().execute(sql, params).fetchall()]

    def update(self, job_id: str, *, bump_card: bool = True, **fields: object) -> None:
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
        """Atomically move a job from one of `from_states`; False if someone else moved it first."""
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
        row = self._conn().execute("SELECT * FROM jobs WHERE target = ? AND kind != 'plan' AND state = 'running' "
                                   "ORDER BY seq LIMIT 1", (target,)).fetchone()
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
        data[key] = json.loads(raw) if raw else ({} if key in ("args", "progress", "reply") else None)
    data["abort_requested"] = bool(data["abort_requested"])
    return Job(**data)
