"""Process wiring for `restore-bot serve` and `restore-bot worker`.

serve = the Slack app (HTTP or Socket Mode) + the reporter thread + a worker child process
that it restarts if it dies. The worker can also run on its own (`restore-bot worker`).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, Histogram, generate_latest

from bot.reporter import Reporter
from bot.watch import alert_client, build_watcher, trouble_reporter
from bot.watch_lease import LeasedArchiver, LeasedWatch
from bot.worker import RESUMED, Worker, instance_id
from handlers.app import alert_store, application
from handlers.jobstore import ACTIVE, JobKind, JobState, JobStore
from handlers.store_leader import SharedScheduler
from restore.live.archiver import Archiver
from restore.mysql.procs import die_with_parent

log = logging.getLogger("restore-bot")

ALERT_SECONDS = Histogram("restore_bot_alert_seconds", "time from a destructive commit to the alert's post")
JOBS = Gauge("restore_bot_jobs", "jobs by kind and state/phase", ["kind", "state", "phase"])
REPLAY_RATE = Gauge("restore_bot_replay_rows_per_second", "replay speed of running jobs", ["job"])


class WorkerProcess:
    """Keeps one `restore-bot worker` child alive."""

    def __init__(self, config_path: str | None) -> None:
        self.args = [sys.executable, "-m", "bot.cli", "worker"] + (["--config", config_path] if config_path else [])
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()

    def start(self) -> "WorkerProcess":
        threading.Thread(target=self._watch, name="worker-watch", daemon=True).start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self.proc is None or self.proc.poll() is not None:
                if self.proc is not None:
                    log.warning("worker exited with %s; starting a new one", self.proc.returncode)
                self.proc = subprocess.Popen(self.args, preexec_fn=die_with_parent(signal.SIGTERM))
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:  # the worker hands its jobs back and removes its sandboxes first
                self.proc.wait(timeout=STOP_GRACE + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


STOP_GRACE = 20.0  # seconds a stopping worker gives its jobs to reach a safe point


class WorkerStopping(BaseException):
    """Raised at a job's next safe point when the worker process is told to stop.

    A BaseException, so the engine's and the worker's error handling let it through (the job is
    neither failed nor aborted), while every `with Sandbox()` and `finally` on the way unwinds.
    """


class ServiceWorker(Worker):
    """The worker as a service: on SIGTERM its jobs stop at a safe point and go back to the queue.

    Without this, a worker told to stop (its serve process died: PR_SET_PDEATHSIG) exited with
    its job threads cut off mid-replay: their sandbox servers (own sessions) were left running
    with their datadirs, and the job stayed `running` under a dead pid until the next worker's
    start-up — or for good when that worker started before this one had exited.
    """

    def _interrupt(self, job_id: str):
        check = super()._interrupt(job_id)

        def interrupt() -> None:
            if self.stopping.is_set():
                raise WorkerStopping()
            check()
        return interrupt

    def run_job(self, job_id: str) -> None:
        try:
            super().run_job(job_id)
        except WorkerStopping:
            self.hand_back(job_id)

    def hand_back(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None or job.state != JobState.RUNNING or job.worker_pid != os.getpid() or not self.ours(job_id):
            return
        if self.store.transition(job_id, (JobState.RUNNING,), JobState.QUEUED):
            log.info("job %s goes back to the queue: the worker is stopping", job_id)
            self.store.add_event(job_id, RESUMED)
            self.store.audit("restore-bot", "resumed after worker restart", job_id)

    def shutdown(self, grace: float = STOP_GRACE) -> None:
        """Wait for the job threads to reach a safe point; hand back what is still running."""
        deadline = time.monotonic() + grace
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [name for name, t in self._threads.items() if t.is_alive()]
        for job in self.store.jobs(states=(JobState.RUNNING,), limit=100):
            if job.worker_pid == os.getpid():
                self.hand_back(job.id)
        if stuck:
            log.warning("jobs %s did not reach a safe point within %.0f s; stopping their servers",
                        ", ".join(stuck), grace)
            _kill_children()


def _kill_children() -> None:
    """Last resort: kill this process's children (sandbox servers run in their own sessions)."""
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return
    for child in children:
        datadir = None
        try:
            datadir = next((a[len("--datadir="):] for a in child.cmdline() if a.startswith("--datadir=")), None)
            child.kill()
            os.waitpid(child.pid, 0)
        except (psutil.Error, OSError, ChildProcessError):
            pass
        box = Path(datadir).parent if datadir else None
        if box is not None and box.name.startswith("restore-bot-sandbox-"):
            shutil.rmtree(box, ignore_errors=True)


def run_worker(settings) -> int:
    store = JobStore(settings.store)
    worker = ServiceWorker(settings, store)

    def stop(*_) -> None:
        # SIGTERM usually comes twice (serve's terminate() and PR_SET_PDEATHSIG when serve's watcher
        # thread ends). A second handler run inside the first one's Event.set() waited for the lock
        # the first one held: the worker hung until it was killed. Block SIGTERM before set().
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        worker.stopping.set()
    signal.signal(signal.SIGTERM, stop)
    log.info("worker %s polling %s", "up", store.store.where)
    try:
        worker.run_forever()
    finally:  # SIGTERM, or Ctrl-C when run by hand
        worker.stopping.set()
        worker.shutdown()
    log.info("worker stopped")
    return 0


def run_serve(settings, *, port: int | None = None, with_worker: bool = True) -> int:
    from bot.slack_app import SlackPoster, build_bolt_app, register_slack, web_client

    slack_ready = bool(settings.slack.bot_token and settings.slack.signing_secret)
    # A cluster's own channel is optional; the global one is where the rest goes (approvals, trouble).
    if not slack_ready and not settings.kakao.token:
        log.error("restore-bot serve: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (Slack) and/or [kakao] token "
                  "(KakaoTalk); or use `restore-bot console`, which needs no account")
        return 2
    if slack_ready and not settings.slack.channel:
        log.error("restore-bot serve: no incident channel: set [slack] channel or RESTORE_BOT_CHANNEL")
        return 2
    store = JobStore(settings.store)
    client = web_client(settings.slack.bot_token.reveal(), settings.slack.api_url) if slack_ready else None
    background = Background(settings, store, client)
    web = build_http(store)
    app = application(settings, store, settings.access, channel=settings.slack.channel, alerts=background.alert_store,
                      watch_state=background.watch_state)
    bolt = None

    def lease(kind: str) -> tuple[str, str] | None:   # on a shared store one instance reports (bot/reporter.py)
        return (f"reporter:{kind}", background.instance) if store.store.shared else None
    if slack_ready:
        bolt = build_bolt_app(settings, app, client)
        register_slack(web, bolt)
        background.reporters.append(Reporter(store, SlackPoster(client, settings.slack.channel),
                                             accept=lambda job: job.origin != "kakao", lease=lease("slack")).start())
    if settings.kakao.token:
        from bot.kakao import register_kakao
        from bot.kakao_webhook import kakao_reporter
        register_kakao(web, settings, store, app)
        if (kr := kakao_reporter(settings, store, lease=lease("kakao"))) is not None:
            background.reporters.append(kr.start())
    background.start(on_alert_posted=lambda alert, seconds: ALERT_SECONDS.observe(seconds))
    worker = WorkerProcess(str(settings.config_path) if settings.config_path else None).start() if with_worker else None

    def terminate(*_) -> None:
        # Without a handler SIGTERM killed serve outright, skipping the clean-up below; and as a
        # container's PID 1 (the Dockerfile's ENTRYPOINT) it was ignored until `docker stop`'s SIGKILL.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, terminate)
    try:
        if slack_ready and settings.slack.app_token:
            from slack_bolt.adapter.socket_mode import SocketModeHandler
            SocketModeHandler(bolt, settings.slack.app_token.reveal()).connect()  # Slack over a websocket
        from waitress import serve  # /healthz, /metrics, /kakao/skill (and /slack/events in HTTP mode)
        serve(web, host="0.0.0.0", port=port or settings.port, threads=8, _quiet=True)
    finally:
        log.info("serve stopping")
        if worker:
            worker.stop()  # its jobs go back to the queue at their next safe point
        background.stop()
    return 0


class Background:
    """What serve runs beside the chat, per cluster: the watcher, the archiver, scheduled backups and
    drills; and the reporters."""

    def __init__(self, settings, store: JobStore, client, *, instance: str | None = None) -> None:
        self.settings, self.store, self.client = settings, store, client
        self.instance = instance or instance_id()
        self.reporters: list[Reporter] = []
        self.watchers: dict[str, LeasedWatch] = {}   # cluster -> its watcher, run while this instance holds its lease
        self.archivers: dict[str, LeasedArchiver] = {}   # the same for its archiver
        self.alert_store = alert_store(settings, store.store, instance_id=self.instance)
        # Jobs and next run times in the store; run by the one instance holding the scheduler's lease
        self.scheduler = SharedScheduler(store.store, self.instance)

    def start(self, on_alert_posted=None) -> None:
        global _BACKGROUND
        _BACKGROUND = self
        named = bool(self.settings.clusters)
        self.scheduler.start()
        scheduled: dict[str, tuple] = {}
        for name in self.settings.cluster_names:
            s = self.settings.cluster(name)
            tag = f"{name} " if named else ""   # trouble names its cluster when there are names
            if s.watch is not None:
                trouble = trouble_reporter(self.client, s.slack.channel)
                client = alert_client(s) if self.client is not None else None

                def build(s=s, client=client, trouble=trouble, tag=tag, name=name):
                    return build_watcher(s, s.watch.source, client=client, on_posted=on_alert_posted,
                                         on_trouble=lambda text: trouble(f"{tag}watch: {text}"),
                                         instance_id=self.instance, cluster=name if named else None)
                self.watchers[name] = LeasedWatch(self.store.store, name, self.instance, build).start()
                if s.keep.archive_dir:   # one instance archives a cluster: the one holding its lease
                    def archiver(s=s, trouble=trouble, tag=tag):
                        return (Archiver(s.watch.source, s.keep.archive_dir, keep_days=s.keep.keep_days,
                                         keep_bytes=s.keep.keep_bytes, backup_dir=s.keep.backup_dir,
                                         on_trouble=lambda text: trouble(f"{tag}archive: {text}")),)
                    self.archivers[name] = LeasedArchiver(self.store.store, name, self.instance, archiver).start()
            for kind, hours in ((JobKind.BACKUP, s.keep.backup_every_hours), (JobKind.DRILL, s.keep.drill_every_hours)):
                if hours:   # in the store once; a changed interval replaces it, an unchanged one keeps its next run
                    scheduled[f"{kind}-{name}" if named else str(kind)] = (
                        "bot.serve:run_scheduled", "interval", {"hours": hours}, [str(kind), name if named else None])
        self.scheduler.configure(scheduled)

    def watch_state(self, cluster: str) -> str:
        """For `/restore clusters`: whether this process watches `cluster` (or another instance does)."""
        watch = self.watchers.get(cluster)
        return "not watched here" if watch is None else watch.state

    def _scheduled(self, kind: JobKind, cluster: str | None = None) -> None:
        channel = self.settings.cluster(cluster).slack.channel
        job = self.store.create(kind, kind, "restore-bot", args={"cluster": cluster} if cluster else None,
                                origin="slack", channel=channel)
        self.store.audit("restore-bot", f"scheduled {kind}", job.id, f"cluster={cluster}" if cluster else "")

    def stop(self) -> None:
        # Side by side: each watcher takes 1.5-2.5 s to stop, and a fleet's, one after another, would
        # outlast `docker stop`'s 10 s before SIGKILL.
        roles = [*self.watchers.values(), *self.archivers.values()]
        if roles:
            with ThreadPoolExecutor(len(roles), thread_name_prefix="stop") as pool:
                list(pool.map(lambda role: role.stop(), roles))
        self.scheduler.stop()
        for reporter in self.reporters:
            reporter.stop()


_BACKGROUND: Background | None = None   # this process's, for run_scheduled


def run_scheduled(kind: str, cluster: str | None = None) -> None:
    """A scheduled backup or drill of `cluster` as a textual reference with plain arguments
    ("bot.serve:run_scheduled"), which a job store shared by several instances can hold."""
    if _BACKGROUND is None:
        raise RuntimeError("run_scheduled runs inside restore-bot serve (its Background has not started)")
    _BACKGROUND._scheduled(JobKind(kind), cluster)


def build_http(store: JobStore) -> Flask:
    """The web app every serve has: `/healthz` and `/metrics` (the transports add their routes)."""
    web = Flask("restore-bot")

    @web.get("/healthz")
    def healthz():
        store.jobs(limit=1)  # the store answers: we can take requests
        return {"ok": True}

    @web.get("/metrics")
    def metrics():
        JOBS.clear()
        REPLAY_RATE.clear()
        for job in store.jobs(limit=200):
            JOBS.labels(job.kind, job.state, job.phase or "-").inc()
            if job.state in ACTIVE and job.phase == "replay":
                REPLAY_RATE.labels(job.id).set((job.progress or {}).get("rate", 0))
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    return web
