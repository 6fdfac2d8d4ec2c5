"""The restore coordinator: explicit phases, each recorded on the target once its effect is durable.

    prepare  -> check the target, record the plan           (state: prepared)
    load     -> load every snapshot                          (state: loaded)
    replay   -> apply the binlog range, checkpoint per batch (state: replaying -> replayed)
    verify   -> row counts and CHECKSUM TABLE                (state: verified)

Running the same command again after a crash resumes at the first unfinished phase; `restart`
(`--restart`) forgets an earlier run of the plan instead and starts over from the dumps.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pymysql.constants import CLIENT

from . import checkpoint
from .applier import Applier
from .dsn import Dsn
from .errors import TargetError, VerifyError
from .flavor import Flavor
from .hooks import Hooks, NullHooks
from .loader import load_snapshot
from .plan import Plan
from .scope import Scope
from .snapshot import Snapshot
from .verify import Verification, verify

EXISTING_CHOICES = ("refuse", "drop", "keep-aside")


@dataclass
class RestoreResult:
    plan: Plan
    target: str
    phases: list[dict] = field(default_factory=list)
    verification: Verification | None = None
    kept_aside: dict[str, str] = field(default_factory=dict)
    resumed: bool = False

    @property
    def ok(self) -> bool:
        return self.verification is not None and self.verification.ok

    def to_dict(self) -> dict:
        return {"ok": self.ok, "target": self.target, "resumed": self.resumed,
                "phases": self.phases, "kept_aside": self.kept_aside,
                "verification": self.verification.to_dict() if self.verification else None}


class RestoreRunner:
    def __init__(self, plan: Plan, snapshots: list[Snapshot], source, target: Dsn, *,
                 existing: str = "refuse", hooks: Hooks | None = None,
                 interrupt: Callable[[], None] | None = None, batch_transactions: int = 1000,
                 restart: bool = False) -> None:
        self.plan = plan
        self.snapshots = snapshots
        self.source = source
        self.target = target
        self.existing = existing
        self.hooks = hooks or NullHooks()
        self.interrupt = interrupt
        self.batch_transactions = batch_transactions
        self.restart = restart
        self.result = RestoreResult(plan, target.redacted())

    def run(self) -> RestoreResult:
        conn = self.target.connect(client_flag=CLIENT.MULTI_STATEMENTS)
        try:
            flavor = Flavor.detect(conn)
            state = self._phase("prepare", lambda: self._prepare(conn))
            if not state or not state.reached("loaded"):
                self._phase("load", lambda: self._load(conn))
                state = None if state is None else _with_phase(state, "loaded")
            if not state or not state.reached("replayed"):
                def replay() -> dict:
                    applier = Applier(conn, self.plan, Scope(self.plan.databases), self.source, flavor, self.hooks,
                                      interrupt=self.interrupt, batch_transactions=self.batch_transactions)
                    stats = applier.run(state if state and state.phase == "replaying" else None)
                    checkpoint.set_phase(conn, self.plan.plan_id, "replayed")
                    return {"transactions": stats.transactions, "events": stats.events,
                            "commits": stats.commits, "resumed_from": stats.resumed_from}
                self._phase("replay", replay)
            self._phase("verify", lambda: self._verify(conn))
        finally:
            conn.close()
        if not self.result.ok:
            problems = "; ".join(self.result.verification.problems()) if self.result.verification else ""
            error = VerifyError(f"verification failed on {self.result.target}: {problems}",
                                hint="the target does not hold what the plan predicts; check for writers on the target "
                                     "and see the per-table report")
            error.result = self.result
            raise error
        return self.result

    def _phase(self, name: str, fn: Callable[[], object]):
        self.hooks.phase_started(name, None)
        t0 = time.monotonic()
        out = fn()
        seconds = round(time.monotonic() - t0, 3)
        info = out if isinstance(out, dict) else {}
        self.result.phases.append({"phase": name, "seconds": seconds, **info})
        self.hooks.phase_finished(name, {"seconds": seconds, **info})
        return out

    # -- phases --------------------------------------------------------------------------------
    def _prepare(self, conn) -> checkpoint.State | None:
        dbs = sorted(self.plan.databases)
        states = checkpoint.load_all(conn)
        if self.restart:
            states = self._start_over(conn, states, dbs)
        mine = next((s for s in states if s.plan_id == self.plan.plan_id), None)
        if mine is not None:
            self.result.resumed = True
            self.hooks.message(f"resuming an earlier run of this plan on {self.result.target} (phase {mine.phase}); "
                               "to start over from the dumps instead, run the command with --restart")
            return mine
        unfinished = [s for s in states if not s.reached("verified") and set(s.databases) & set(dbs)]
        if unfinished and self.existing != "drop":
            raise TargetError(
                f"{self.result.target} holds an unfinished restore of another plan ({unfinished[0].plan_id}) "
                f"into {', '.join(unfinished[0].databases)}",
                hint="finish it by running its own command again, or abandon it with --restart (drops what it "
                     "restored so far, then restores this plan)")
        for s in unfinished:
            checkpoint.forget(conn, s.plan_id)
        present = _existing_databases(conn, dbs)
        if present:
            if self.existing == "refuse":
                raise TargetError(
                    f"{self.result.target} already holds {', '.join(present)}",
                    hint="choose what happens to them: --existing keep-aside (moved to <db>_before_restore_<time>, "
                         "nothing lost) or --existing drop (deleted); or restore into another target")
            if self.existing == "drop":
                with conn.cursor() as cur:
                    for db in present:
                        cur.execute(f"DROP DATABASE {_ident(db)}")
            else:
                self.result.kept_aside = _keep_aside(conn, present)
        checkpoint.create(conn, self.plan.plan_id, dbs, json.dumps(self.plan.to_dict()))
        return None

    def _start_over(self, conn, states: list[checkpoint.State], dbs: list[str]) -> list[checkpoint.State]:
        """`--restart`: forget this plan's checkpoint and any other unfinished restore into these
        databases. What an unfinished run restored is ours and half done: dropped. A finished run's
        databases may have been in use since: they are left to `--existing` like any others."""
        left = []
        for s in states:
            if s.plan_id != self.plan.plan_id and (s.reached("verified") or not set(s.databases) & set(dbs)):
                left.append(s)
                continue
            if s.reached("verified"):
                self.hooks.message(f"--restart: forgetting the finished run of plan {s.plan_id}; "
                                   f"--existing {self.existing} decides what happens to its databases")
            else:
                half = _existing_databases(conn, sorted(s.databases))
                with conn.cursor() as cur:
                    for db in half:
                        cur.execute(f"DROP DATABASE {_ident(db)}")
                self.hooks.message(f"--restart: dropped {', '.join(half) or 'nothing'} (restored up to phase "
                                   f"{s.phase} by an earlier run of plan {s.plan_id}); starting over from the dumps")
            checkpoint.forget(conn, s.plan_id)
        if len(left) == len(states):
            self.hooks.message(f"--restart: {self.result.target} holds no earlier run of this plan; starting normally")
        return left

    def _load(self, conn) -> dict:
        with conn.cursor() as cur:  # a half-finished earlier load of ours: start it over
            for db in _existing_databases(conn, sorted(self.plan.databases)):
                cur.execute(f"DROP DATABASE {_ident(db)}")
        for snap in self.snapshots:
            self.hooks.phase_started(f"load {snap.path}", None)
            load_snapshot(self.target, snap,
                          lambda done, total: self.hooks.progress("load", done, total, snap.path))
        checkpoint.set_phase(conn, self.plan.plan_id, "loaded")
        return {"snapshots": [s.path for s in self.snapshots]}

    def _verify(self, conn) -> dict:
        result = verify(conn, self.plan)
        self.result.verification = result
        if result.ok:
            checkpoint.set_phase(conn, self.plan.plan_id, "verified")
        return {"ok": result.ok, "tables": len(result.tables)}


def _with_phase(state: checkpoint.State, phase: str) -> checkpoint.State:
    state.phase = phase
    return state


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _existing_databases(conn, dbs: list[str]) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        have = {r[0] for r in cur.fetchall()}
    return [db for db in dbs if db in have]


def _keep_aside(conn, dbs: list[str]) -> dict[str, str]:
    """Move every table of each database to `<db>_before_restore_<time>`; drop nothing."""
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    moved: dict[str, str] = {}
    with conn.cursor() as cur:
        for db in dbs:
            cur.execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (db,))
            objects = cur.fetchall()
            cur.execute("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s", (db,))
            routines = cur.fetchone()[0]
            views = [t for t, kind in objects if kind != "BASE TABLE"]
            if views or routines:
                raise TargetError(f"{db} holds views or routines, which cannot be moved aside safely",
                                  hint=f"back up {db} with mariadb-dump yourself, then use --existing drop")
            aside = f"{db}_before_restore_{stamp}"
            cur.execute(f"CREATE DATABASE {_ident(aside)}")
            if objects:
                renames = ", ".join(f"{_ident(db)}.{_ident(t)} TO {_ident(aside)}.{_ident(t)}" for t, _ in objects)
                cur.execute(f"RENAME TABLE {renames}")
            cur.execute(f"DROP DATABASE {_ident(db)}")
            moved[db] = aside
    return moved
