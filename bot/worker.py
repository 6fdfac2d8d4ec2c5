"""The worker process: takes queued jobs from the job store and runs the engine for them.

It runs apart from the bot so that a replay never delays an acknowledgement or an alert.
Progress and thread events go back through the store; an abort is a flag the engine reads
at its next commit. A restarted worker picks up the jobs its predecessor left running; the
engine resumes them from the checkpoint on the target.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time

import sqlalchemy.exc

from bot.undo_job import undo_job
from handlers import messages
from handlers.alerts import AlertStore, Oncall, mention
from handlers.jobstore import Job, JobKind, JobState, JobStore
from handlers.presenter.plan_card import verdict_line
from handlers.presenter.results import drill_summary, plan_summary, prod_summary, verification_summary
from handlers.store_leader import Heartbeats
from restore import api
from restore.errors import RestoreError

log = logging.getLogger("restore-bot.worker")
RESUMED = ("↻ the worker restarted; the job runs again: on a kept target it resumes from the last "
           "checkpoint, a throwaway sandbox starts over")
TAKEN_OVER = ("↻ resumed on {instance}: the instance running it stopped heartbeating; on a kept target it carries "
              "on from the last checkpoint, a throwaway sandbox starts over")
STALE_AFTER = 10.0     # seconds without a heartbeat before another instance takes a running job over
HEARTBEAT_EVERY = 2.0
DRILL_FAILED_ONCALL = ("🔔 {who}: this backup drill failed, so the backups are not known to restore "
                       "until a drill passes again. Please act on it.")


class JobAborted(RestoreError):
    exit_code = 4


class JobLost(BaseException):
    """Raised at a job's next safe point when another instance took it over (this one stalled past
    STALE_AFTER): the job is theirs now, so this worker stops without writing its state. A
    BaseException, like serve's WorkerStopping, so no error handling on the way records it."""


def host_name() -> str:
    """This host among those sharing a store: $RESTORE_BOT_HOST (say, a container's stable name),
    else the host name. A worker's jobs whose process is gone are resumed at once by the next
    worker of the same host; another host's wait for their heartbeat to go stale."""
    return os.environ.get("RESTORE_BOT_HOST") or socket.gethostname()


def instance_id() -> str:
    """This worker among the instances sharing a store: the host and the process."""
    return f"{host_name()}:{os.getpid()}"


class JobHooks:
    """Engine hooks that write progress into the job store (throttled) and phases into the thread."""

    def __init__(self, store: JobStore, job_id: str, total_rows: int = 0) -> None:
        self.store, self.job_id = store, job_id
        self.total_rows = total_rows
        self._last = 0.0
        self._started: dict[str, float] = {}

    def phase_started(self, phase: str, total: int | None) -> None:
        if phase.startswith("load "):  # per-dump detail of the load phase: the thread has enough
            return
        self._started[phase] = time.monotonic()
        self.store.update(self.job_id, phase=phase, progress={"phase": phase, "done": 0, "total": total})
        self.store.add_event(self.job_id, f"▶ {phase} started")

    def progress(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            return
        self._last = now
        elapsed = max(1e-6, now - self._started.get(phase, now))
        rate = done / elapsed
        eta = int((total - done) / rate) if total and rate > 0 else None
        rows_rate = rate * self.total_rows / total if phase == "replay" and total else rate
        self.store.update(self.job_id, phase=phase,
                          progress={"phase": phase, "done": done, "total": total, "rate": rows_rate, "eta": eta,
                                    "detail": detail})

    def phase_finished(self, phase: str, result: dict) -> None:
        took = f" in {result['seconds']:.1f}s" if "seconds" in result else ""
        self.store.add_event(self.job_id, f"✓ {phase} finished{took}")

    def message(self, text: str) -> None:
        self.store.add_event(self.job_id, text)


class Worker:
    def __init__(self, settings, store: JobStore, *, max_parallel: int | None = None,
                 instance: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.instance = instance or instance_id()
        self._lost: set[str] = set()   # jobs another instance took over: stop them at their next safe point
        self.heartbeats = Heartbeats(store, self.instance, every=HEARTBEAT_EVERY, on_lost=self._lost.add)
        # [worker] concurrency: jobs at once (one per target of a cluster; different clusters side by side)
        self.max_parallel = max_parallel or getattr(settings, "concurrency", 2)
        self._threads: dict[str, threading.Thread] = {}
        self.stopping = threading.Event()
        self._oncall: dict[str, Oncall] = {}  # per cluster, made on its first failed drill: most workers never need it

    def recover(self) -> None:
        """Jobs a dead worker left running: this host's (or a worker's of before heartbeats: no owner)
        go back to the queue when its pid is gone; another host's whose owner stopped heartbeating
        run here, still RUNNING. The engine resumes either from the target's checkpoint."""
        host = host_name()
        for job in self.store.jobs(states=(JobState.RUNNING,), limit=100):
            if job.owner is not None and job.owner.rpartition(":")[0] != host:
                continue  # another host's: heartbeats and take_over_stale decide
            if job.worker_pid == os.getpid() and job.id in self._threads:
                continue  # ours and running
            if job.worker_pid and job.worker_pid != os.getpid() and pid_alive(job.worker_pid):
                continue
            # this host's worker that died (its pid is gone): at once, not after STALE_AFTER
            if self.store.transition(job.id, (JobState.RUNNING,), JobState.QUEUED, owned_by=job.owner):
                self.store.add_event(job.id, RESUMED)
                self.store.audit("restore-bot", "resumed after worker restart", job.id)
        taken = self.store.take_over_stale(self.instance, older_than=STALE_AFTER)
        if taken:   # the dead instance's sandboxes, when it shared this host's temp dir: before ours start
            api.sweep()
        for job in taken:
            log.info("job %s: taken over from an instance that stopped heartbeating", job.id)
            self.store.add_event(job.id, TAKEN_OVER.format(instance=self.instance))
            self._start(job)

    def run_forever(self, poll: float = 0.2) -> None:
        last_recover = 0.0
        while not self.stopping.is_set():
            if time.monotonic() - last_recover > STALE_AFTER / 4:  # also catches an instance that died later
                self.recover()
                last_recover = time.monotonic()
            self.tick()
            time.sleep(poll)
        self.heartbeats.stop()

    def tick(self) -> None:
        """Claim queued jobs while there is room: claim_next keeps one restore per target of a cluster
        and hands each job to one instance of those sharing the store."""
        self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
        while len(self._threads) < self.max_parallel:
            job = self.store.claim_next(self.instance)
            if job is None:
                return
            self._start(job)

    def _start(self, job: Job) -> None:
        if not self.heartbeats.started:
            self.heartbeats.start()
        self.heartbeats.add(job.id)
        thread = threading.Thread(target=self._run_owned, args=(job.id,), name=f"job-{job.id}", daemon=True)
        self._threads[job.id] = thread
        thread.start()

    def _run_owned(self, job_id: str) -> None:
        try:
            self.run_job(job_id)
        except JobLost:
            log.warning("job %s: another instance took it over; stopped here", job_id)
        finally:
            self.heartbeats.discard(job_id)
            self._lost.discard(job_id)

    def ours(self, job_id: str) -> bool:
        """Whether the job is still this instance's to finish (not taken over elsewhere)."""
        if job_id in self._lost:
            return False
        job = self.store.get(job_id)
        return job is not None and job.owner in (None, self.instance)

    # -- one job -------------------------------------------------------------------------------
    def run_job(self, job_id: str) -> None:
        job = self.store.get(job_id)
        hooks = JobHooks(self.store, job_id)
        t0 = time.monotonic()
        try:
            result = self._execute(job, hooks)
        except JobAborted:
            self._still_ours(job_id)
            self.store.transition(job_id, (JobState.RUNNING,), JobState.ABORTED, phase="")
            self.store.add_event(job_id, f"■ {messages.ABORTED}: stopped at a safe point on request")
            return
        except RestoreError as exc:
            self._still_ours(job_id)
            log.warning("job %s failed: %s", job_id, exc)
            self.store.transition(job_id, (JobState.RUNNING,), JobState.FAILED, error=exc.to_dict())
            if job.kind == JobKind.UNDO:   # an undo's every step is in the audit trail
                on = job.args.get("cluster")
                self.store.audit("restore-bot", "undo failed", job_id, (f"cluster={on} " if on else "") + str(exc))
            self._tell_failure(job, str(exc), exc.hint)
            return
        except Exception as exc:  # a bug: report it rather than leave the job hanging
            self._still_ours(job_id)
            log.exception("job %s crashed", job_id)
            error = {"message": f"internal error: {type(exc).__name__}: {exc}",
                     "hint": "see the worker's log; run the job again"}
            self.store.transition(job_id, (JobState.RUNNING,), JobState.FAILED, error=error)
            self._tell_failure(job, error["message"], error["hint"])
            return
        self._still_ours(job_id)
        result["seconds"] = round(time.monotonic() - t0, 1)
        if result.pop("await_approval", False):   # an undo's preview: the card asks for approval
            result["waiting_since"] = self.store.clock()   # the approval window starts now, not at the request
            self.store.transition(job_id, (JobState.RUNNING,), JobState.AWAITING_APPROVAL, result=result,
                                  phase="preview")
            self.store.audit("restore-bot", "undo preview", job_id, result.get("summary", ""))
            self.store.add_event(job_id, messages.UNDO_PREVIEW_READY.format(pid=result["undo"]["preview_id"]))
            return
        self.store.transition(job_id, (JobState.RUNNING,), JobState.SUCCEEDED, result=result, phase="done")
        if job.kind == JobKind.UNDO:
            self.store.audit("restore-bot", "undo applied", job_id, result.get("summary", ""))
        self.store.add_event(job_id, f"✔ {messages.SUCCEEDED}: {result.get('summary', '')}")

    def _still_ours(self, job_id: str) -> None:
        """Before a job's outcome is written: not when another instance took it over meanwhile."""
        if not self.ours(job_id):
            raise JobLost(job_id)

    def _tell_failure(self, job, message: str, hint: str | None) -> None:
        text = f"✗ {messages.FAILED}: {message}\n{messages.NEXT_STEP_AFTER_FAILURE.format(hint=hint)}"
        if job.kind == JobKind.DRILL:
            # A drill usually runs on a schedule with nobody watching its card: a mention in the
            # thread notifies the one person whose job it is to act on it.
            text += "\n" + DRILL_FAILED_ONCALL.format(who=self._oncall_mention(job))
        self.store.add_event(job.id, text)

    def _oncall_mention(self, job: Job) -> str:
        """Who is on call for the job's cluster, as alerts name them (`/oncall set`, the rotation,
        RESTORE_BOT_ONCALL)."""
        try:
            name = job.args.get("cluster") or "-"
            if name not in self._oncall:
                # The source only keys watch positions and alerts; the on-call override is global.
                self._oncall[name] = Oncall(self._settings(job), AlertStore(self.settings.store, "-"))
            person = self._oncall[name].current()
            return f"{mention(person)} (on call)" if person else mention(None)  # None: says how to set one
        except (sqlite3.Error, sqlalchemy.exc.SQLAlchemyError, RestoreError) as exc:  # the failure must still be reported, with or without a name
            log.warning("cannot tell who is on call: %s", exc)
            return "(who is on call could not be read: see the worker's log)"

    def _interrupt(self, job_id: str):
        def check() -> None:
            if job_id in self._lost:
                raise JobLost(job_id)
            job = self.store.get(job_id)
            if job is not None and job.abort_requested:
                raise JobAborted(f"job {job_id} aborted", hint="run it again when ready")
        return check

    def _settings(self, job: Job):
        """The settings as the job's cluster sees them (a job from before [clusters]: the only one)."""
        name = job.args.get("cluster")
        try:
            return self.settings.cluster(name) if hasattr(self.settings, "cluster") else self.settings
        except KeyError:
            raise RestoreError(f"job {job.id} is for cluster {name or '(none named)'}, which the config does not "
                               f"have (clusters: {', '.join(self.settings.cluster_names)})",
                               hint="put the [clusters.NAME] section back, or run the command again naming a "
                                    "configured cluster") from None

    def _execute(self, job: Job, hooks: JobHooks) -> dict:
        settings = self._settings(job)
        if job.kind == JobKind.BACKUP:
            return self._backup(settings)
        if job.kind == JobKind.UNDO:
            return undo_job(settings, self.store, job, hooks)
        interrupt = self._interrupt(job.id)
        if job.kind == JobKind.DRILL:
            return self._drill(settings, hooks, interrupt)
        src = settings.source
        planned = api.plan(api.PlanInput(src.snapshots, src.binlogs, stop=job.args.get("stop_before", "auto"),
                                         skips=job.args.get("skips", []), expected=job.args.get("expected", ())),
                           hooks=hooks, interrupt=interrupt)
        plan = planned.plan
        hooks.total_rows = sum(t.inserted + t.updated + t.deleted for t in plan.tables.values())
        self.store.update(job.id, plan_id=plan.plan_id if job.kind != JobKind.PROD else job.plan_id)
        summary = plan_summary(plan)
        if job.kind == JobKind.PLAN:
            return {"summary": summary, "plan": plan.to_dict(), "next": _named(messages.NEXT_STEP_AFTER_PLAN, job)}
        if job.kind == JobKind.STAGE:
            return self._stage(settings, job, planned, summary, hooks, interrupt)
        return self._prod(settings, job, planned, summary, hooks, interrupt)

    def _stage(self, settings, job: Job, planned: api.Planned, summary: str, hooks: JobHooks, interrupt) -> dict:
        stage = settings.targets["stage"]
        if stage.dsn == "sandbox":
            target = api.StageTarget(None, existing="drop", batch=stage.batch)
        else:
            target = api.StageTarget(stage.dsn, existing="keep-aside", restart=bool(job.args.get("restart")),
                                     batch=stage.batch, fence=stage.fence, fence_users=tuple(stage.fence_users))
        staged = api.stage(planned, target, hooks=hooks, interrupt=interrupt, stage_job=job.id,
                           sandbox_note="stage: a throwaway sandbox server on port {port}")
        result = staged.result
        for v in result.verdicts:   # each stop judged at replay, in the thread; prod applies them as they are
            hooks.message(verdict_line(v))
        return {"summary": summary + " " + verification_summary(result.to_dict()),
                "restore": result.to_dict(), "plan_id": planned.plan_id, "evidence": staged.evidence.to_dict(),
                "next": _named(messages.NEXT_STEP_AFTER_STAGE, job)}

    def _prod(self, settings, job: Job, planned: api.Planned, summary: str, hooks: JobHooks, interrupt) -> dict:
        stage = self.store.get(job.stage_job) if job.stage_job else None
        if stage is None:
            raise RestoreError(f"prod job {job.id} names no stage run the job store holds ({job.stage_job or 'none'})",
                               hint="run /restore stage, then /restore prod")
        evidence = api.StageEvidence.from_job_result(stage.result, plan_id=stage.plan_id or "", stage_job=stage.id)
        if evidence.plan_id != job.plan_id:
            raise RestoreError(f"stage job {stage.id} verified plan {evidence.plan_id}, not this job's {job.plan_id}",
                               hint="run /restore stage again, then /restore prod")
        if evidence.verdicts:   # stage's verdicts on stops judged at replay: the rebuild applies them
            hooks.message(messages.PROD_VERDICTS.format(n=len(evidence.verdicts), stage=stage.id))
        target = settings.targets["prod"]
        outcome = api.prod(planned, evidence, api.ProdTarget(target.dsn, target.fence, tuple(target.fence_users)),
                           job_tag=job.id.lower(), hooks=hooks, interrupt=interrupt)
        return {"summary": summary + " " + prod_summary(outcome), "prod": outcome.to_dict(), "plan_id": planned.plan_id}

    @staticmethod
    def _keep(settings):
        keep, watch = settings.keep, settings.watch
        if watch is None or not keep.backup_dir:
            raise RestoreError("backups are not configured", hint=messages.NO_KEEP)
        return keep, watch

    def _backup(self, settings) -> dict:
        keep, watch = self._keep(settings)
        taken = api.backup(watch.source, list(keep.backup_databases or watch.databases), keep.backup_dir,
                           physical=keep.physical, compress=keep.compress)
        return {"summary": f"Backup {taken.describe()}", "path": str(taken.path)}

    def _drill(self, settings, hooks: JobHooks, interrupt) -> dict:
        """Raises DrillFailed (the job fails, the channel reads "FAILED" with the file and position)
        when the backups would not restore; see BackupDrill for what is checked."""
        keep, watch = self._keep(settings)
        drilled = api.drill(api.DrillInput(keep.backup_dir, keep.archive_dir, watch.source),
                            hooks=hooks, interrupt=interrupt).to_dict()
        return {"summary": drill_summary(drilled), **drilled}


def _named(text: str, job: Job) -> str:
    """A next step's `/restore stage` or `/restore prod` naming the job's cluster, when it has one."""
    name = job.args.get("cluster")
    return text.replace("stage`", f"stage {name}`").replace("prod`", f"prod {name}`") if name else text


def _same_target(a: Job, b: Job) -> bool:
    """One restore per target at a time: the same target of the same cluster."""
    return a.target == b.target and b.kind != JobKind.PLAN and a.args.get("cluster") == b.args.get("cluster")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a worker that holds a job)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
