"""Prod jobs through the job store (real servers): `restore-bot stage` and `restore-bot prod` on the
command line with the chat's gate, and a worker that dies in a prod job.

plan -> stage -> prod end to end: stage records its job in the job store the configuration
names; prod needs that stage run (the same plan) and a second person's --approved-by, and the
audit log says who asked and who approved. Without them it refuses, saying what is missing and
the command to run, and production is not touched.

A worker that dies during a prod job: the restarted worker runs the job again and the engine
resumes it from the phase recorded on the target. The known case first: production was empty
(DROP DATABASE, nothing recreated), the job swapped and verified, and the worker died before
marking it succeeded. Run again, it is recognised as done: not rebuilt, and the restored tables
are not moved aside as if the application had written them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.worker import RESUMED, Worker
from handlers.jobstore import JobStore
from restore.mysql.sandbox import Sandbox
from restore.prod import swap
from restore.target import checkpoint
from tests.support.db import checksums, databases
from tests.support.incident_factory import club_posts

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


@pytest.fixture(scope="module")
def incident(tmp_path_factory):
    inc = club_posts(25).build_on_new_source(tmp_path_factory.mktemp("prodcli"))
    return {"snap": inc.snapshot, "binlogs": inc.binlog_dir, "before": inc.before}


def _config(tmp_path, incident, prod: Sandbox, access: str = "") -> str:
    path = tmp_path / "restore-bot.toml"
    path.write_text(f"""
[source]
snapshots = ["{incident['snap']}"]
binlogs = "{incident['binlogs']}"
[targets.prod]
dsn = "mysql://root@127.0.0.1:{prod.port}?unix_socket={prod.socket}"
[store]
path = "{tmp_path / 'jobs.sqlite3'}"
{access}
""")
    return str(path)


def _app_writes(prod: Sandbox) -> None:
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE club")
        cur.execute("CREATE TABLE club.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(60))")
        cur.execute("INSERT INTO club.posts (title) VALUES ('after the disaster')")


def test_plan_stage_prod_on_the_command_line(tmp_path, incident, cli):
    with Sandbox() as prod:
        config = _config(tmp_path, incident, prod)
        _app_writes(prod)
        plan = cli("plan", "--snapshot", incident["snap"], "--binlogs", incident["binlogs"])
        assert plan.code == 0 and "DROP DATABASE club" in plan.doc["plan"]["stop"]["reason"], plan
        stage = cli("stage", "--config", config, "--user", "lee")
        assert stage.code == 0 and stage.doc["job"]["state"] == "succeeded", stage.err[-3000:]
        assert stage.doc["job"]["plan_id"] == plan.doc["plan"]["plan_id"]
        assert "restore-bot prod --config" in stage.err and "--approved-by NAME" in stage.err
        prod_run = cli("prod", "--config", config, "--user", "lee", "--approved-by", "kim")
        assert prod_run.code == 0, prod_run.err[-3000:]
        job = prod_run.doc["job"]
        assert job["state"] == "succeeded" and job["requester"] == "lee" and job["approver"] == "kim"
        assert job["stage_job"] == stage.doc["job"]["id"] and job["plan_id"] == plan.doc["plan"]["plan_id"]
        aside = f"club__before_{job['id'].lower()}"
        assert job["result"]["prod"]["kept_aside"] == {aside: {"posts": 1}}
        with prod.connect() as conn:
            assert checksums(conn, ["club"]) == incident["before"]
            assert checksums(conn, [aside])[f"{aside}.posts"][0] == 1   # the application's write, aside
    audit = [(e["actor"], e["action"], e["job"]) for e in JobStore(tmp_path / "jobs.sqlite3").audit_log(50)]
    assert ("lee", "queued stage", stage.doc["job"]["id"]) in audit
    assert ("lee", "requested prod", job["id"]) in audit and ("kim", "approved prod", job["id"]) in audit


def test_prod_on_the_command_line_refuses_without_stage_or_second_approver(tmp_path, incident, cli):
    with Sandbox() as prod:
        config = _config(tmp_path, incident, prod)
        _app_writes(prod)
        no_stage = cli("prod", "--config", config, "--user", "lee", "--approved-by", "kim")
        assert no_stage.code == 2 and "no stage run" in no_stage.doc["error"]["message"], no_stage
        assert f"restore-bot stage --config {config} --user lee" in no_stage.doc["error"]["hint"]
        no_approver = cli("prod", "--config", config, "--user", "lee")
        assert no_approver.code == 2 and "--approved-by" in no_approver.doc["error"]["message"], no_approver
        assert "--approved-by NAME" in no_approver.doc["error"]["hint"]
        itself = cli("prod", "--config", config, "--user", "lee", "--approved-by", "lee")
        assert itself.code == 2 and "self-approval" in itself.doc["error"]["message"], itself
        store = JobStore(tmp_path / "jobs.sqlite3")
        assert store.jobs(kind="prod") == []
        refusals = [e["detail"] for e in store.audit_log(50) if e["action"] == "refused prod"]
        assert len(refusals) == 3 and any("self-approval" in d for d in refusals), refusals
        with prod.connect() as conn:   # production untouched
            assert checksums(conn, ["club"])["club.posts"][0] == 1
            assert not [d for d in databases(conn) if d.startswith("club__") or d == "_restore_bot"]


def test_prod_on_the_command_line_needs_an_approver_from_the_access_list(tmp_path, incident, cli):
    with Sandbox() as prod:
        config = _config(tmp_path, incident, prod, '[access]\noperators = ["lee", "kim"]\napprovers = ["boss"]')
        stage = cli("stage", "--config", config, "--user", "lee")
        assert stage.code == 0, stage.err[-3000:]
        refused = cli("prod", "--config", config, "--user", "lee", "--approved-by", "kim")
        assert refused.code == 2 and "kim may not approve" in refused.doc["error"]["message"], refused
        store = JobStore(tmp_path / "jobs.sqlite3")
        [job] = store.jobs(kind="prod")
        assert job.state == "rejected"    # the request does not wait for an approval that cannot come
        assert any(e["actor"] == "kim" and e["action"] == "refused approve" for e in store.audit_log(50))
        with prod.connect() as conn:
            assert "club" not in databases(conn)


class Died(BaseException):
    """The worker process dies: nothing catches it, the job stays "running" in the store."""


def _run(worker: Worker, store: JobStore, job_id: str) -> None:
    assert store.transition(job_id, ("queued",), "running", worker_pid=os.getpid())
    worker.run_job(job_id)


@pytest.mark.parametrize("dies_after,app_wrote", [("verified", False), ("renamed", True)])
def test_a_prod_job_whose_worker_died_resumes_from_the_record(tmp_path, incident, monkeypatch, dies_after, app_wrote):
    with Sandbox() as prod:
        if app_wrote:
            _app_writes(prod)
        settings = load_settings(_config(tmp_path, incident, prod), env={})
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


def test_a_killed_restore_bot_prod_is_resumed_by_the_same_command(tmp_path, incident, cli):
    """`restore-bot prod` SIGKILLed during the rebuild: the same command run again resumes that job
    (from the target's record) instead of starting a second one, and production ends exact."""
    with Sandbox() as prod:
        config = _config(tmp_path, incident, prod)
        _app_writes(prod)
        assert cli("stage", "--config", config, "--user", "lee").code == 0
        log = open(tmp_path / "killed.log", "w")
        run = subprocess.Popen([sys.executable, "-m", "bot.cli", "prod", "--config", config, "--user", "lee",
                                "--approved-by", "kim"], cwd=Path(__file__).parents[1], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and run.poll() is None and not _prod_record(prod):
                time.sleep(0.05)
            assert run.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            run.send_signal(signal.SIGKILL)
            run.wait(30)
        finally:
            log.close()
        store = JobStore(tmp_path / "jobs.sqlite3")
        [killed] = store.jobs(kind="prod")
        assert killed.state == "running" and _prod_record(prod) == [(f"prod:{killed.id.lower()}", "fenced")]
        again = cli("prod", "--config", config, "--user", "lee", "--approved-by", "kim")
        assert again.code == 0 and again.doc["job"]["id"] == killed.id, again.err[-3000:]
        assert f"resuming prod job {killed.id}" in again.err
        assert [j.id for j in store.jobs(kind="prod")] == [killed.id]   # no second swap
        aside = f"club__before_{killed.id.lower()}"
        with prod.connect() as conn:
            assert checksums(conn, ["club"]) == incident["before"]
            assert checksums(conn, [aside])[f"{aside}.posts"][0] == 1
        assert any(e["action"] == "resumed after worker restart" and e["job"] == killed.id
                   for e in store.audit_log(50))


def _prod_record(prod: Sandbox) -> list[tuple[str, str]]:
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='_restore_bot'")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT plan_id, phase FROM _restore_bot.state WHERE plan_id LIKE 'prod:%'")
        return list(cur.fetchall())
