"""A worker that dies during a prod job: the restarted worker runs the job again and the engine resumes
it from the phase recorded on the target (real servers).

The known case first: production was empty (DROP DATABASE, nothing recreated), the job swapped and
verified, and the worker died before marking it succeeded. Run again, it is recognised as done:
not rebuilt, and the restored tables are not moved aside as if the application had written them.
"""
from __future__ import annotations

import os

import pytest

from bot.config import load_settings
from bot.worker import RESUMED, Worker
from handlers.jobstore import JobStore
from restore.mysql.sandbox import Sandbox
from restore.prod import swap
from restore.target import checkpoint
from tests.support.db import checksums, copy_binlogs, databases, dump

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


class Died(BaseException):
    """The worker process dies: nothing catches it, the job stays "running" in the store."""


@pytest.fixture(scope="module")
def incident(tmp_path_factory):
    work = tmp_path_factory.mktemp("prodworker")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(60))")
            cur.execute("INSERT INTO club.posts (title) VALUES ('환영합니다 👋')")
        snap = dump(src, work / "club.sql", ["club"])
        with src.connect() as conn, conn.cursor() as cur:
            for i in range(20):
                cur.execute("INSERT INTO club.posts (title) VALUES (%s)", (f"글 {i}",))
            before = checksums(conn, ["club"])
            cur.execute("DROP DATABASE club")
        binlogs = copy_binlogs(src, work / "binlogs")
    return {"snap": snap, "binlogs": binlogs, "before": before}


def _settings(tmp_path, incident, prod: Sandbox):
    path = tmp_path / "restore-bot.toml"
    path.write_text(f"""
[source]
snapshots = ["{incident['snap']}"]
binlogs = "{incident['binlogs']}"
[targets.prod]
dsn = "mysql://root@127.0.0.1:{prod.port}?unix_socket={prod.socket}"
[store]
path = "{tmp_path / 'jobs.sqlite3'}"
""")
    return load_settings(str(path), env={})


def _run(worker: Worker, store: JobStore, job_id: str) -> None:
    assert store.transition(job_id, ("queued",), "running", worker_pid=os.getpid())
    worker.run_job(job_id)


@pytest.mark.parametrize("dies_after,app_wrote", [("verified", False), ("renamed", True)])
def test_a_prod_job_whose_worker_died_resumes_from_the_record(tmp_path, incident, monkeypatch, dies_after, app_wrote):
    with Sandbox() as prod:
        if app_wrote:
            with prod.connect() as conn, conn.cursor() as cur:
                cur.execute("CREATE DATABASE club")
                cur.execute("CREATE TABLE club.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(60))")
                cur.execute("INSERT INTO club.posts (title) VALUES ('after the disaster')")
        settings = _settings(tmp_path, incident, prod)
        store = JobStore(settings.store_path)
        worker = Worker(settings, store)
        args = {"stop_before": "auto", "skips": []}
        stage = store.create("stage", "stage", "lee", args=args)
        _run(worker, store, stage.id)
        stage = store.get(stage.id)
        assert stage.state == "succeeded" and stage.result["evidence"]["plan_id"] == stage.plan_id, stage.error
        job = store.create("prod", "prod", "lee", args=args, plan_id=stage.plan_id, stage_job=stage.id)
        real = checkpoint.record_prod

        def dies(conn, record):
            real(conn, record)
            if record.phase == dies_after:
                raise Died(f"the worker died after recording {dies_after}")
        monkeypatch.setattr(swap.checkpoint, "record_prod", dies)
        with pytest.raises(Died):
            _run(worker, store, job.id)
        monkeypatch.setattr(swap.checkpoint, "record_prod", real)
        assert store.get(job.id).state == "running"
        worker.recover()   # what a restarted worker does first
        assert store.get(job.id).state == "queued" and RESUMED in store.events(job.id)
        _run(worker, store, job.id)
        done = store.get(job.id)
        with prod.connect() as conn:
            restored = checksums(conn, ["club"])
            aside = {d: checksums(conn, [d]) for d in databases(conn) if d.startswith("club__")}
            assert checkpoint.load_prod(conn, job.id.lower()).phase == "verified"
    assert done.state == "succeeded", (done.error, store.events(job.id))
    assert restored == incident["before"]
    events = "\n".join(store.events(job.id))
    if app_wrote:
        name = f"club__before_{job.id.lower()}"
        assert {d: {t: r for t, (r, _c) in v.items()} for d, v in aside.items()} == {name: {f"{name}.posts": 1}}
        assert done.result["prod"]["kept_aside"] == {name: {"posts": 1}}
        assert "finished phase renamed" in events and "1 rows the application wrote" in done.result["summary"]
    else:
        assert aside == {}, aside   # the restored tables were not moved aside
        assert done.result["prod"]["kept_aside"] == {} and "the live schema held nothing" in done.result["summary"]
        assert "already swapped this plan into production" in events
        assert "▶ rebuild started" not in events.split(RESUMED)[-1]
