"""Two `restore-bot serve` instances, each as on a host of its own, on one job store on a MariaDB
server: kill -9 the one running a prod job while the job rebuilds in its sandbox (its serve process and
worker child at once, as when the host dies), and the other takes the job over once its heartbeat is
stale, resumes it from the phase recorded on the target, removes the dead worker's sandbox and
finishes: production equals the source before the disaster (CHECKSUM TABLE), the application's
writes since are kept aside, and the takeover is in the audit log and the job's Slack thread once.
Prints the takeover and finish times after the kill. And a run taken over while it still worked (its
instance stalled) is ended by the run that took over, through the job's lock on the target."""
from __future__ import annotations

import os
import signal
import time

import pymysql
import pytest

from handlers.jobstore import JobState, JobStore
from restore import api
from restore.hooks import NullHooks
from restore.prod.swap import ProdRestore
from tests.support.db import checksums, target_url
from tests.support.incident_factory import IncidentSpec, each
from tests.support.serves import serving
from tests.support.slack_bot import processes_mentioning
from tests.test_worker_ha import _finished, _wait

pytestmark = pytest.mark.mysql
DB = "rb_prod_takeover"

SHOP = IncidentSpec(
    databases=("shop",),
    schema=["CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(30))",
            "INSERT INTO shop.items VALUES (1, 'first')"],
    traffic=[each("INSERT INTO shop.items VALUES (%s, %s)", [(i, f"row {i}") for i in range(2, 300)]),
             "UPDATE shop.items SET name = 'renamed' WHERE id % 7 = 0", "DELETE FROM shop.items WHERE id % 11 = 0"],
    disaster=["DROP DATABASE shop"])
APP_WRITES = ["CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(30))",
              "INSERT INTO shop.items VALUES (1, 'written after the disaster'), (2, 'so was this')"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return SHOP.build_on_new_source(tmp_path_factory.mktemp("prod_takeover"))


@pytest.fixture
def fleet(shop, target, tmp_path):
    """Production on the target server (the application wrote to it after the disaster), the store on
    it too; stage in a throwaway sandbox. The instances share a private temp dir, as one host's /tmp:
    the survivor's sweep can reach the dead one's sandbox there."""
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
        for sql in APP_WRITES:
            cur.execute(sql)
    config = tmp_path / "restore-bot.toml"
    config.write_text(f'[slack]\nchannel = "CHA"\n'
                      f'[source]\nsnapshots = ["{shop.snapshot}"]\nbinlogs = "{shop.binlog_dir}"\n'
                      f'[targets.stage]\ndsn = "sandbox"\n[targets.prod]\ndsn = "{target_url(target)}"\n'
                      f'[store]\nurl = "{target.url}/{DB}"\n[worker]\nconcurrency = 1\n')
    jobs = JobStore(f"{target.url}/{DB}")
    try:
        with serving(config, tmp_path) as (fake, bots):
            yield jobs, fake, bots
    finally:
        jobs.store.dispose()


def _rebuilding(jobs: JobStore, job_id: str, tmp: str) -> list[int] | None:
    """While the prod job's worker's rebuild sandbox server runs: that server's pids."""
    job = jobs.get(job_id)
    assert not job.finished, f"the prod job ended before it was seen rebuilding: {job.state} {job.error}"
    if job.state != JobState.RUNNING or "▶ rebuild started" not in jobs.events(job_id):
        return None
    servers = processes_mentioning(f"{tmp}/restore-bot-sandbox-{job.worker_pid}-")
    return servers or None


def _thread(calls, job_id: str) -> list[str]:
    """The job's Slack thread: the messages posted under its card."""
    cards = [c.ts for c in calls if c.method == "chat.postMessage" and not c.thread_ts and f"`{job_id}`" in c.text]
    return [c.text for c in calls if c.method == "chat.postMessage" and c.thread_ts in cards]


def test_kill_9_of_the_instance_running_a_prod_job_the_other_finishes_it_exact(fleet, shop, target):
    jobs, fake, bots = fleet
    stage = _finished(jobs, jobs.create("stage", "stage", "UOPS1").id, 120)
    assert stage.state == JobState.SUCCEEDED, (stage.error, [b.log_tail() for b in bots])
    prod = jobs.create("prod", "prod", "UOPS1", plan_id=stage.plan_id, stage_job=stage.id)   # approved

    try:
        servers = _wait(lambda: _rebuilding(jobs, prod.id, bots[0].tmpdir), 120, 0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {jobs.get(prod.id)}, events {jobs.events(prod.id)}\n"
                             + "\n".join(b.log_tail() for b in bots)) from None
    victim = jobs.get(prod.id).worker_pid
    dying = next(b for b in bots if victim in b.worker_pids())
    killed_at = time.monotonic()
    os.killpg(dying.proc.pid, signal.SIGKILL)   # the host dies: serve and its worker (the sandbox dies with the job)
    dying.proc.wait()
    survivor = next(b for b in bots if b is not dying)

    def took_over():
        return time.monotonic() if any(a["action"] == "took over" for a in jobs.audit_log(20)) else None
    takeover = _wait(took_over, 60, 0.1) - killed_at
    done = _finished(jobs, prod.id, 120)
    finished = time.monotonic() - killed_at
    assert done.state == JobState.SUCCEEDED, (done.error, jobs.events(prod.id), survivor.log_tail())
    assert done.worker_pid in survivor.worker_pids() and done.owner.endswith(f":{done.worker_pid}")

    events = jobs.events(prod.id)
    resumed = [e for e in events if e.startswith("↻ resumed on")]
    assert len(resumed) == 1 and f":{done.worker_pid}:" in resumed[0], events
    assert any("resuming prod job" in e and "fenced" in e for e in events), events   # from the target's record
    assert sum(e.startswith("✔") for e in events) == 1, events
    took = [a for a in jobs.audit_log(100) if a["action"] == "took over"]
    assert [a["job"] for a in took] == [prod.id] and str(victim) in took[0]["detail"], took

    def outcome_posted(calls):
        thread = _thread(calls, prod.id)
        return thread if any(m.startswith("✔") for m in thread) else None
    thread = fake.wait_for(outcome_posted, 30, "the prod job's outcome in its thread")
    assert len([m for m in thread if m.startswith("↻ resumed on")]) == 1, thread

    with target.connect() as conn, conn.cursor() as cur:
        assert checksums(conn, ["shop"]) == shop.before                 # production: exact
        aside = f"shop__before_{prod.id.lower()}"
        cur.execute(f"SELECT id, name FROM {aside}.items ORDER BY id")   # the application's writes: kept
        assert cur.fetchall() == ((1, "written after the disaster"), (2, "so was this"))
        cur.execute("SHOW DATABASES LIKE 'shop\\_\\_shadow%'")
        assert cur.fetchall() == ()
    # the dead worker's rebuild sandbox: its server gone, its directory removed by the survivor's sweep
    assert not [pid for pid in servers if _alive(pid)]
    left = [n for n in os.listdir(bots[0].tmpdir) if n.startswith(f"restore-bot-sandbox-{victim}-")]
    assert not left, left
    print(f"prod job: kill -9 to taken over {takeover:.1f}s, to finished on the survivor {finished:.1f}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _Said(NullHooks):
    def __init__(self) -> None:
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


def test_a_run_of_the_job_still_working_after_its_takeover_is_ended_by_the_new_one(shop, target):
    """The first run's instance stalled and lost the job but still holds the job's lock on the
    target (its session lives): the new run ends that session, then restores exact."""
    with target.connect() as conn, conn.cursor() as cur:
        for sql in APP_WRITES:
            cur.execute(sql)
    stalled = target.connect()
    with stalled.cursor() as cur:
        cur.execute("SELECT GET_LOCK('restore-bot prod r9', 0)")
        assert cur.fetchone()[0] == 1
    planned = api.plan(api.PlanInput([str(shop.snapshot)], str(shop.binlog_dir)))
    hooks = _Said()
    try:
        ProdRestore(planned.plan, planned.snapshots, planned.source, target.dsn, job_tag="r9", hooks=hooks,
                    expected={n: c for n, (_r, c) in shop.before.items()}).run()
        with pytest.raises(pymysql.err.OperationalError):   # its session was ended
            with stalled.cursor() as cur:
                cur.execute("SELECT 1")
    finally:
        stalled.close()
    assert any("an earlier run of prod job r9 still works on the target" in s for s in hooks.said), hooks.said
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == shop.before
        assert checksums(conn, ["shop__before_r9"])["shop__before_r9.items"][0] == 2
