"""The restore coordinator: explicit phases, each recorded on the target once its effect is durable.

    prepare  -> check the target, record the plan           (state: prepared)
    load     -> load every snapshot                          (state: loaded)
    replay   -> apply the binlog range, checkpoint per batch (state: replaying -> replayed)
    verify   -> row counts and CHECKSUM TABLE                (state: verified)

A physical backup into a server not started on it takes other phases after prepare: sandbox,
replay and verify there, move, verify on the target (restore.replay.physical_flow).

Running the same command again after a crash resumes at the first unfinished phase; `restart`
(`--restart`) forgets an earlier run of the plan instead and starts over from the dumps, moving
what that run left aside (`<db>__unfinished_<time>`): no option deletes a row the replay did not
write. Writers are fenced for the whole run (`fence`, the same code as the prod path), and a
full target disk stops the run instead of hanging it.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

from pymysql.constants import CLIENT

from restore.errors import TargetError, VerifyError
from restore.hooks import Hooks, NullHooks
from restore.meter import Throughput
from restore.mysql.dsn import Dsn
from restore.mysql.flavor import Flavor
from restore.plan.physical_base import in_place, physical_bytes
from restore.plan.plan import Plan
from restore.plan.scope import Scope
from restore.plan.snapshot import Snapshot
from restore.replay.applier import Applier
from restore.replay import load_progress
from restore.replay.loader import load_snapshot
from restore.replay.physical_flow import run_physical_into_dsn
from restore.replay.verify import Verification, verify
from restore.target import aside, checkpoint
from restore.target import fence as fencing
from restore.target.binlog import TargetBinlog, init_commands, prepare_session
from restore.target.disk_guard import DiskFullWatch, check_free_space, range_bytes

EXISTING_CHOICES = ("refuse", "drop", "keep-aside")
PHYSICAL_COPY_CHOICES = ("auto", "rows")


@dataclass
class RestoreResult:
    plan: Plan
    target: str
    phases: list[dict] = field(default_factory=list)
    verification: Verification | None = None
    kept_aside: dict[str, str] = field(default_factory=dict)
    unfinished_aside: dict[str, str] = field(default_factory=dict)   # --restart: what an unfinished run left
    resumed: bool = False
    target_binlog: str = ""      # what the restore did to the target's binlog, in words
    outcome: int = 0             # 0: stopped at the plan's stop; k: at plan.later[k-1] (stops judged at replay)
    verdicts: list[dict] = field(default_factory=list)   # the stops judged at replay, with why

    @property
    def ok(self) -> bool:
        return self.verification is not None and self.verification.ok

    def to_dict(self) -> dict:
        return {"ok": self.ok, "target": self.target, "resumed": self.resumed,
                "phases": self.phases, "kept_aside": self.kept_aside,
                "unfinished_aside": self.unfinished_aside, "target_binlog": self.target_binlog,
                "stopped_before": (lambda st: st.to_dict() if st else None)(self.plan.outcome(self.outcome).stop),
                "verdicts": self.verdicts,
                "verification": self.verification.to_dict() if self.verification else None}


class RestoreNotVerified(VerifyError):
    """The restore ran to its end but the target does not hold what the plan predicts; `result`
    is the whole run with its per-table report (the CLI prints it beside the error)."""

    def __init__(self, result: RestoreResult) -> None:
        problems = "; ".join(result.verification.problems()) if result.verification else ""
        super().__init__(f"verification failed on {result.target}: {problems}",
                         hint="the target does not hold what the plan predicts; check for writers on the target "
                              "and see the per-table report")
        self.result = result


class RestoreRunner:
    def __init__(self, plan: Plan, snapshots: list[Snapshot], source, target: Dsn, *,
                 existing: str = "refuse", hooks: Hooks | None = None,
                 interrupt: Callable[[], None] | None = None, batch_transactions: int = 1000,
                 restart: bool = False, fence: str | None = None, fence_users: list[str] | None = None,
                 log_replay: bool = True, space_check: bool = True,
                 verdicts: dict[str, str] | None = None, physical_copy: str = "auto",
                 load_jobs: int | None = None) -> None:
        """`fence`: None for a target nobody else uses (a sandbox), else "refuse" or "lock" (with
        `fence_users`), as for a prod restore. `log_replay=False`: sql_log_bin=0 for the restore.
        `physical_copy`: how a physical backup's tables reach a target not started on it: "auto"
        (tablespace files when its datadir is on this host, else rows) or "rows". `load_jobs`: clients
        loading a dump's tables at once (None: the target's cores, at most 8; 1: one client)."""
        self.plan = plan
        self.snapshots = snapshots
        self.source = source
        self.target = target
        self.existing = existing
        self.hooks = hooks or NullHooks()
        self.interrupt = interrupt
        self.batch_transactions = batch_transactions
        self.restart = restart
        self.fence = fence
        self.fence_users = list(fence_users or [])
        self.log_replay = log_replay
        self.space_check = space_check
        self.given_verdicts = verdicts or {}   # "file:pos" of a stop judged at replay -> severity
        if physical_copy not in PHYSICAL_COPY_CHOICES:
            raise TargetError(f"unknown physical copy {physical_copy!r}",
                              hint=f"use one of {', '.join(PHYSICAL_COPY_CHOICES)}")
        self.physical_copy = physical_copy
        self.load_jobs = load_jobs
        self.result = RestoreResult(plan, target.redacted())
        self.base_in_place = False   # the target runs on a prepared copy of the physical snapshot
        if fence is not None and fence not in fencing.FENCE_CHOICES:
            raise TargetError(f"unknown fence {fence!r}", hint=f"use one of {', '.join(fencing.FENCE_CHOICES)}")
        if fence == "lock" and target.user in self.fence_users:
            raise TargetError(f"fence: the restore's own user {target.user} is among the users to lock out",
                              hint="restore as a user the application does not use")

    def run(self) -> RestoreResult:
        conn = self.target.connect(client_flag=CLIENT.MULTI_STATEMENTS)
        # The fence has a connection of its own: the disk watch may kill the replay's, and the
        # fence must still unlock the application's accounts after that.
        fence_conn = self.target.connect() if self.fence else None
        try:
            flavor = Flavor.detect(conn)
            self.base_in_place = in_place(conn, self.snapshots)
            binlog = prepare_session(conn, flavor, log_replay=self.log_replay)
            self.result.target_binlog = binlog.describe()
            if binlog.enabled:
                self.hooks.message(binlog.describe())
            dbs = sorted(self.plan.databases)
            fenced = (fencing.fenced(fence_conn, dbs, self.fence, self.fence_users,
                                     f"restore into {self.result.target} refused")
                      if fence_conn is not None else nullcontext())
            with fenced as fence, DiskFullWatch(self.target, lambda: [conn.thread_id()]) as watch:
                if fence is not None:   # refuse: a writer that connects later stops the run within one batch
                    self.interrupt = fence.after_each_commit(self.interrupt, lambda: [conn.thread_id()])
                try:
                    self._phases(conn, flavor, binlog)
                except Exception:
                    if watch.tripped:
                        raise watch.error() from None
                    raise
        finally:
            conn.close()
            if fence_conn is not None:
                fence_conn.close()
        if not self.result.ok:
            raise RestoreNotVerified(self.result)
        return self.result

    def _phases(self, conn, flavor: Flavor, binlog: TargetBinlog) -> None:
        state = self._phase("prepare", lambda: self._prepare(conn, binlog))
        if self.snapshots and self.snapshots[0].backup_id and not self.base_in_place:
            # A physical backup into a server not started on it: built, replayed and verified in a
            # local sandbox, then moved (restore.replay.physical_flow).
            run_physical_into_dsn(self, conn, state)
            return
        if not state or not state.reached("loaded"):
            self._phase("load", lambda: self._load(conn))
            state = None if state is None else _with_phase(state, "loaded")
        if not state or not state.reached("replayed"):
            def replay() -> dict:
                applier = Applier(conn, self.plan, Scope(self.plan.databases), self.source, flavor, self.hooks,
                                  interrupt=self.interrupt, batch_transactions=self.batch_transactions,
                                  statement_per_binlog=binlog.statement_per_binlog,
                                  given_verdicts=self.given_verdicts)
                try:
                    stats = applier.run(state if state and state.phase == "replaying" else None)
                finally:
                    self.result.verdicts = [v.to_dict() for v in applier.verdicts]
                self.result.outcome = applier.outcome
                checkpoint.set_phase(conn, self.plan.plan_id, "replayed")
                return {"transactions": stats.transactions, "events": stats.events,
                        "commits": stats.commits, "resumed_from": stats.resumed_from}
            self._phase("replay", replay)
        else:
            # Replayed by an earlier run: where it ended is recorded in the checkpoint.
            ends = [self.plan.end_of(k) for k in range(len(self.plan.later) + 1)]
            self.result.outcome = ends.index((state.file, state.pos)) if (state.file, state.pos) in ends else 0
        self._phase("verify", lambda: self._verify(conn))

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
    def _prepare(self, conn, binlog: TargetBinlog) -> checkpoint.State | None:
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
        if unfinished:
            raise TargetError(
                f"{self.result.target} holds an unfinished restore of another plan ({unfinished[0].plan_id}) "
                f"into {', '.join(unfinished[0].databases)}",
                hint="finish it by running its own command again, or abandon it with --restart (what it restored "
                     "so far is moved to <db>__unfinished_<time>, then this plan is restored)")
        if self.space_check:
            space = check_free_space(conn, self.target, replay_bytes=range_bytes(self.source, self.plan.replay_from, self.plan.end),
                                     load_bytes=0 if self.base_in_place else sum(
                                         physical_bytes(s, dbs) if s.backup_id else os.path.getsize(s.path)
                                         for s in self.snapshots),
                                     binlog_logged=binlog.enabled and binlog.logged)
            self.hooks.message(f"disk space: {space.detail}")
        # On the physical base the databases are the snapshot itself, not something to keep or drop.
        present = [] if self.base_in_place else _existing_databases(conn, dbs)
        if present:
            if self.existing == "refuse":
                raise TargetError(
                    f"{self.result.target} already holds {', '.join(present)}",
                    hint="choose what happens to them: --existing keep-aside (moved to <db>_before_restore_<time>, "
                         "nothing lost), or restore into another target")
            if self.existing == "drop":
                aside.drop_empty(conn, present)
            else:
                self.result.kept_aside = aside.keep_aside(conn, present)
        checkpoint.create(conn, self.plan.plan_id, dbs, json.dumps(self.plan.to_dict()))
        return None

    def _start_over(self, conn, states: list[checkpoint.State], dbs: list[str]) -> list[checkpoint.State]:
        """`--restart`: forget this plan's checkpoint and any other unfinished restore into these
        databases. What an unfinished run restored is moved aside (a writer may have added rows to
        it). A finished run's databases may have been in use since: left to `--existing`."""
        left = []
        for s in states:
            if s.plan_id != self.plan.plan_id and (s.reached("verified") or not set(s.databases) & set(dbs)):
                left.append(s)
                continue
            if s.reached("verified"):
                self.hooks.message(f"--restart: forgetting the finished run of plan {s.plan_id}; "
                                   f"--existing {self.existing} decides what happens to its databases")
            else:
                self._set_aside_unfinished(conn, s.databases, f"restored up to phase {s.phase} by an earlier run "
                                                              f"of plan {s.plan_id}")
            load_progress.forget(conn, f"{s.plan_id}/")
            checkpoint.forget(conn, s.plan_id)
        if len(left) == len(states):
            self.hooks.message(f"--restart: {self.result.target} holds no earlier run of this plan; starting normally")
        return left

    def _set_aside_unfinished(self, conn, dbs, what: str) -> None:
        moved = aside.set_aside_unfinished(conn, _existing_databases(conn, sorted(dbs)))
        self.result.unfinished_aside.update(moved)
        kept = "; ".join(f"{db} moved to {to}" for db, to in moved.items())
        self.hooks.message(f"{what}: {kept or 'it held no rows and was removed'}; starting over from the dumps"
                           + (" (check the moved copies for rows a writer committed, then drop them)" if moved else ""))

    def _load(self, conn) -> dict:
        if self.base_in_place:
            checkpoint.set_phase(conn, self.plan.plan_id, "loaded")
            return {"snapshots": [s.path for s in self.snapshots], "physical": "the server runs on the backup's copy"}
        resuming = load_progress.started(conn, f"{self.plan.plan_id}/")
        if _existing_databases(conn, sorted(self.plan.databases)) and not resuming:
            # An earlier load of this plan that did not finish (and recorded no table as loaded):
            # set aside like an unfinished run.
            self._set_aside_unfinished(conn, self.plan.databases, "an earlier load of this plan did not finish")
        loads = []
        for i, snap in enumerate(self.snapshots):
            self.hooks.phase_started(f"load {snap.path}", None)
            meter = Throughput()
            loads.append(load_snapshot(
                self.target, snap,
                lambda done, total, snap=snap, meter=meter: self.hooks.progress(
                    "load", done, total, f"{snap.path}: {meter.line(done, total)}"),
                init=init_commands(self.log_replay), jobs=self.load_jobs, resume=f"{self.plan.plan_id}/{i}",
                message=self.hooks.message))
        checkpoint.set_phase(conn, self.plan.plan_id, "loaded")
        load_progress.forget(conn, f"{self.plan.plan_id}/")
        return {"snapshots": [s.path for s in self.snapshots],
                "load_jobs": [r.jobs if r.parallel else 1 for r in loads],
                "tables_kept": sum(len(r.skipped) for r in loads)}

    def _verify(self, conn) -> dict:
        result = verify(conn, self.plan.outcome(self.result.outcome))
        self.result.verification = result
        if result.ok:
            checkpoint.set_phase(conn, self.plan.plan_id, "verified")
        return {"ok": result.ok, "tables": len(result.tables)}


def restore(plan: Plan, snapshots: list[Snapshot], source, target: Dsn, *, existing: str = "refuse",
            hooks: Hooks | None = None, interrupt: Callable[[], None] | None = None,
            batch_transactions: int = 1000, restart: bool = False, fence: str | None = None,
            fence_users: Sequence[str] = (), log_replay: bool = True, space_check: bool = True,
            verdicts: dict[str, str] | None = None, physical_copy: str = "auto",
            load_jobs: int | None = None) -> RestoreResult:
    """`restart`: forget an earlier run of this plan on the target and start over from the dumps
    (otherwise an earlier run is resumed from its checkpoint). `fence`: None only for a target
    nobody else uses (a sandbox); "refuse" or "lock" (`fence_users`) as for a prod restore.
    `log_replay=False`: keep the restore out of the target's binlog (its replicas do not get it).
    `verdicts`: stops judged at replay by an earlier run (stage), applied as they were ("file:pos" ->
    "certain" or "suspect") instead of being judged again. `physical_copy`, `load_jobs`: see RestoreRunner."""
    return RestoreRunner(plan, snapshots, source, target, existing=existing, hooks=hooks,
                         interrupt=interrupt, batch_transactions=batch_transactions, restart=restart,
                         fence=fence, fence_users=list(fence_users), log_replay=log_replay,
                         space_check=space_check, verdicts=verdicts, physical_copy=physical_copy,
                         load_jobs=load_jobs).run()


def _with_phase(state: checkpoint.State, phase: str) -> checkpoint.State:
    state.phase = phase
    return state


def _existing_databases(conn, dbs: list[str]) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        have = {r[0] for r in cur.fetchall()}
    return [db for db in dbs if db in have]
