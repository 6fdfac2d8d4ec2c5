"""Two `restore-bot worker` processes on one job store on a MariaDB server (the `target` test server,
`[store] url`): a queued job is run by exactly one of them; kill -9 the one running a stage job into
a kept server and the other takes it over (its heartbeat went stale) and finishes it from the
target's checkpoint, the data exact by CHECKSUM TABLE."""
from __future__ import annotations

import time

import pytest

from handlers.jobstore import JobState, JobStore
from tests.support.db import checksums, target_url
from tests.support.incident_factory import IncidentSpec, each
from tests.support.workers import Workers

pytestmark = pytest.mark.mysql
DB = "rb_worker_ha"
ROWS = 3000   # single-row transactions after the dump, 5 per commit: a replay long enough to kill mid-way

SHOP = IncidentSpec(
    databases=("shop",),
    schema=["CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(30))",
            "INSERT INTO shop.items VALUES (1, 'first')"],
    traffic=[each("INSERT INTO shop.items VALUES (%s, %s)", [(i, f"row {i}") for i in range(2, ROWS + 2)])],
    disaster=["DROP DATABASE shop"])


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return SHOP.build_on_new_source(tmp_path_factory.mktemp("worker_ha"))


@pytest.fixture
def ha(shop, target, tmp_path):
    """The config both workers read, the store on the target server; the workers, stopped afterwards."""
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    config = tmp_path / "restore-bot.toml"
    config.write_text(f'[source]\nsnapshots = ["{shop.snapshot}"]\nbinlogs = "{shop.binlog_dir}"\n'
                      f'[targets.stage]\ndsn = "{target_url(target)}"\nbatch = 5\n'
                      f'[store]\nurl = "{target.url}/{DB}"\n[worker]\nconcurrency = 1\n')
    workers = Workers(config, tmp_path)   # each as if on a host of its own: a dead worker's job is taken over by heartbeat
    jobs = JobStore(f"{target.url}/{DB}")
    yield jobs, workers
    workers.stop()
    jobs.store.dispose()
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute("SHOW DATABASES")
        for (name,) in cur.fetchall():   # what the stage left on the kept target
            if name.startswith("shop"):
                cur.execute(f"DROP DATABASE `{name}`")


def _wait(what, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := what()) is not None:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s")


def _finished(jobs: JobStore, job_id: str, timeout: float):
    return _wait(lambda: (j if (j := jobs.get(job_id)).finished else None), timeout, 0.2)


def test_a_queued_job_is_run_by_exactly_one_of_two_workers(ha):
    jobs, workers = ha
    workers.start(), workers.start()
    queued = [jobs.create("plan", "plan", "UOPS1") for _ in range(4)]
    done = [_finished(jobs, job.id, 120) for job in queued]
    assert [j.state for j in done] == [JobState.SUCCEEDED] * 4, [j.error for j in done]
    pids = set(workers.alive())
    for job in done:
        events = jobs.events(job.id)
        assert sum(e.startswith("✔") for e in events) == 1, events                # finished once
        assert len([e for e in events if e.startswith("▶")]) == len({e for e in events if e.startswith("▶")})
        assert job.worker_pid in pids and job.owner.endswith(f":{job.worker_pid}")
    assert not [a for a in jobs.audit_log(100) if a["action"] == "took over"]


def test_kill_9_of_the_worker_running_a_stage_job_the_other_finishes_it_exact(ha, shop, target):
    jobs, workers = ha
    workers.start(), workers.start()
    job = jobs.create("stage", "stage", "UOPS1")

    def replaying():
        j = jobs.get(job.id)
        assert not j.finished, f"the job ended before it was seen replaying: {j.state} {j.error} {jobs.events(job.id)}"
        return j if j.phase == "replay" and (j.progress or {}).get("done") else None
    _running, victim, killed_at = workers.kill_9_when(jobs, job.id, replaying)
    done = _finished(jobs, job.id, 180)
    assert done.state == JobState.SUCCEEDED, done.error
    survivor, = workers.alive()
    assert done.worker_pid == survivor and done.owner.endswith(f":{survivor}")
    events = jobs.events(job.id)
    assert any(e.startswith("↻ resumed on") and str(survivor) in e for e in events), events
    took = [a for a in jobs.audit_log(100) if a["action"] == "took over"]
    assert [a["job"] for a in took] == [job.id] and str(victim) in took[0]["detail"]
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == shop.before
    print(f"kill -9 to finished on the survivor: {time.monotonic() - killed_at:.1f}s")
