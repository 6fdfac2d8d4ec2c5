"""Several serve instances on one store. One instance of several does a thing: it holds a lease in the store (handlers/store_leases.py) and
renews it; the others keep trying to take it, and one does within the lease's ttl of the holder's
death. `LeaseKeeper` runs that on a thread and says when this instance gains or loses the lease
(start or stop watching a cluster); `SharedScheduler` is an APScheduler whose jobs and next run times
live in the store and which runs only on the lease's holder, so a scheduled backup or drill runs
once, not once per instance, and the next holder carries on at the stored next run time.
`Heartbeats` keeps the jobs an instance runs its own while it lives.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from handlers.jobstore import JobStore
from handlers.store import Store
from handlers.store_leases import LeaseStore

log = logging.getLogger("restore-handlers.leader")


class LeaseKeeper:
    """Holds the lease `name` for this instance whenever it can. `on_acquired` and `on_lost` run on the
    keeper's thread. A store that cannot be reached counts as lost once most of the ttl has passed
    without a renewal: another instance may have the lease by then."""

    def __init__(self, leases: LeaseStore, name: str, instance_id: str, ttl: float = 10.0, *,
                 on_acquired: Callable[[], None] = lambda: None, on_lost: Callable[[], None] = lambda: None,
                 every: float | None = None) -> None:
        self.leases, self.name, self.instance_id, self.ttl = leases, name, instance_id, ttl
        self.on_acquired, self.on_lost = on_acquired, on_lost
        self.every = every or ttl / 4
        self.held = False
        self._renewed = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{name}", daemon=True)

    def start(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop; `release` hands the lease over at once (a clean stop) instead of letting it expire."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.held:
            self._lose()
            if release:
                self.leases.release(self.name, self.instance_id)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.every)

    def tick(self) -> None:
        try:
            if self.held:
                ok = self.leases.renew(self.name, self.instance_id, self.ttl)
            else:
                ok = self.leases.acquire_lease(self.name, self.instance_id, self.ttl)
        except Exception as exc:   # the store is unreachable: keep trying, give up the role in time
            log.warning("lease %s: the store did not answer (%s)", self.name, type(exc).__name__)
            if self.held and time.monotonic() - self._renewed > self.ttl * 0.75:
                self._lose()
            return
        if ok:
            self._renewed = time.monotonic()
            if not self.held:
                self.held = True
                log.info("lease %s: %s holds it", self.name, self.instance_id)
                self.on_acquired()
        elif self.held:
            self._lose()

    def _lose(self) -> None:
        self.held = False
        log.info("lease %s: %s no longer holds it", self.name, self.instance_id)
        self.on_lost()


class Heartbeats:
    """Heartbeats, on one thread, every job this instance runs (claim_next, take_over_stale), so
    another instance's take_over_stale(older_than) leaves them alone; `on_lost(job_id)` when a job is
    no longer ours (another instance took it over after we stalled): its worker must stop writing."""

    def __init__(self, jobs: JobStore, instance_id: str, every: float = 2.0, *,
                 on_lost: Callable[[str], None] = lambda job_id: None) -> None:
        self.jobs, self.instance_id, self.every, self.on_lost = jobs, instance_id, every, on_lost
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeats", daemon=True)

    def add(self, job_id: str) -> None:
        with self._lock:
            self._running.add(job_id)

    def discard(self, job_id: str) -> None:
        """The job finished here (or its worker stopped): no more heartbeats for it."""
        with self._lock:
            self._running.discard(job_id)

    @property
    def started(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> "Heartbeats":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def beat(self) -> None:
        with self._lock:
            running = sorted(self._running)
        for job_id in running:
            try:
                ours = self.jobs.heartbeat(job_id, self.instance_id)
            except Exception as exc:   # the store is unreachable: the next beat tries again
                log.warning("heartbeat of %s: the store did not answer (%s)", job_id, type(exc).__name__)
                continue
            if not ours:
                self.discard(job_id)
                self.on_lost(job_id)


def shared_jobstores(store: Store) -> dict:
    """APScheduler job stores keeping jobs and their next run times in the store (apscheduler_jobs)."""
    return {"default": SQLAlchemyJobStore(engine=store.engine, tablename="apscheduler_jobs")}


class SharedScheduler:
    """A BackgroundScheduler on the store's job table that runs jobs only while this instance holds
    the lease `scheduler` (APScheduler 3 runs a job once per scheduler: several schedulers on one job
    store would each run it). Jobs are textual references (`"bot.serve:run_scheduled"`) with plain
    arguments: another instance's scheduler runs them."""

    def __init__(self, store: Store, instance_id: str, *, ttl: float = 10.0, name: str = "scheduler",
                 **scheduler_options) -> None:
        # A run due while no instance held the lease (the holder died) runs late rather than never.
        defaults = {"misfire_grace_time": None, "coalesce": True, **scheduler_options.pop("job_defaults", {})}
        self.scheduler = BackgroundScheduler(jobstores=shared_jobstores(store), daemon=True, job_defaults=defaults,
                                             **scheduler_options)
        self.keeper = LeaseKeeper(LeaseStore(store), name, instance_id, ttl,
                                  on_acquired=self.scheduler.resume, on_lost=self.scheduler.pause)

    def add_once(self, func: str, job_id: str, trigger: str, **trigger_args) -> None:
        """Add the job unless an instance added it before: re-adding would move its next run time.
        After start(): a job added before would be added, and refused, only then."""
        try:
            self.scheduler.add_job(func, trigger, id=job_id, replace_existing=False, **trigger_args)
        except ConflictingIdError:
            pass

    def configure(self, wanted: dict[str, tuple[str, str, dict, list]]) -> None:
        """Make the stored jobs what the config says, after start(): `wanted` is job id -> (function
        reference, trigger, trigger arguments, arguments). A job whose trigger or arguments changed
        is replaced (its next run counted from now: the store kept the old trigger otherwise); one
        unchanged keeps its next run time (a restart must not push a drill back); one no longer
        configured is removed. Every instance does this at start: instances must share one config."""
        stored = {job.id: job for job in self.scheduler.get_jobs()}
        for job_id in stored.keys() - wanted.keys():
            try:
                self.scheduler.remove_job(job_id)
            except JobLookupError:   # another instance starting at the same time removed it first
                continue
            log.info("scheduled job %s removed: it is no longer configured", job_id)
        for job_id, (func, trigger, trigger_args, args) in wanted.items():
            job = stored.get(job_id)
            # The scheduler's own trigger factory (its time zone; APScheduler is pinned below 4)
            new = self.scheduler._create_trigger(trigger, dict(trigger_args))
            if job is not None and (str(job.trigger), job.func_ref, list(job.args)) == (str(new), func, list(args)):
                continue
            self.scheduler.add_job(func, new, id=job_id, args=args, replace_existing=True)
            if job is not None:
                log.info("scheduled job %s now runs %s (was %s)", job_id, new, job.trigger)

    def start(self) -> "SharedScheduler":
        self.scheduler.start(paused=True)
        self.keeper.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        self.keeper.stop(release=release)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
