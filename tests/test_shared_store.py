"""Several serve instances on one store, a real MariaDB server (the `target` test server): the
migrations on an empty store and on a SQLite file of the last version before Alembic; jobs claimed
once (FOR UPDATE SKIP LOCKED), a stale job taken over, a lease of a killed process taken within its
ttl, an alert claimed by two instances posted once."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from bot.alert_client import AlertSlackClient
from handlers import alerts as alerts_module
from handlers import sqlite_store
from handlers import store as store_module
from handlers.alerts import AlertPoster, AlertStore, Oncall
from handlers.jobstore import JobState, JobStore
from handlers.sqlite_store import StoreFileError
from handlers.store import MIGRATIONS_DIR, Store, _driver_url, head, open_store
from handlers.store_leader import Heartbeats, SharedScheduler
from handlers.store_leases import LeaseStore
from tests.support.alert_samples import alert_at
from tests.support.postgres import start_pg
from tests.support.fake_slack import FakeSlack
from tests.test_store import _write_version_0

pytestmark = pytest.mark.mysql
ROOT = Path(__file__).resolve().parents[1]
DB = "rb_shared_store"


@pytest.fixture(scope="module")
def pg_server():
    server = start_pg()
    yield server
    server.stop()


@pytest.fixture(params=["mariadb", "postgresql"])
def store_url(request, monkeypatch):
    """An empty database on a MariaDB test server or a throwaway PostgreSQL one, as `[store] url`
    names it; dropped afterwards, after every store a test opened meanwhile is disposed."""
    opened = _recorded_stores(monkeypatch)
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        yield server.fresh_database(DB)
        _dispose(opened)
        server.admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        return
    target = request.getfixturevalue("target")
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    yield f"{target.url}/{DB}"
    _dispose(opened)
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")


def _recorded_stores(monkeypatch: pytest.MonkeyPatch) -> list[Store]:
    """The stores open_store makes from now on. A JobStore, AlertStore or LeaseStore a test just
    drops keeps its engine's pooled sessions open until a garbage collection (the engine sits in
    reference cycles): on the `target` server the whole suite shares, where other tests count the
    sessions, unless the test's stores are disposed when it ends."""
    opened: list[Store] = []

    class Recorded(Store):
        def __init__(self, *args, **kw) -> None:
            super().__init__(*args, **kw)
            opened.append(self)

    monkeypatch.setattr(store_module, "Store", Recorded)
    return opened


def _dispose(stores: list[Store]) -> None:
    for store in stores:
        store.dispose()   # again for one the test disposed itself: its fresh pool is empty


@contextlib.contextmanager
def _engine(store_url: str):
    """A plain engine on the store's database (no migration), as another program would see it."""
    engine = sa.create_engine(sa.make_url(_driver_url(store_url)))
    try:
        yield engine
    finally:
        engine.dispose()


def _columns(store_url: str, table: str) -> dict[str, str]:
    """The table's columns and their types as the server names them (`double`, `longtext`...)."""
    with _engine(store_url) as engine:
        if not sa.inspect(engine).has_table(table):
            return {}
        return {c["name"]: c["type"].compile(engine.dialect).lower() for c in sa.inspect(engine).get_columns(table)}


def test_migrations_on_an_empty_server_store_create_every_table(store_url):
    store = open_store(store_url)
    try:
        with store.read() as db:
            assert db.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head()
        assert open_store(store).where == store.where                     # a second open: nothing to do
        postgresql = store.dialect == "postgresql"
    finally:
        store.dispose()
    jobs = _columns(store_url, "jobs")
    # a Unix time keeps its milliseconds (a FLOAT would round it to minutes), JSON any size
    double, long = ("double precision", "text") if postgresql else ("double", "longtext")
    assert jobs["created"] == double and jobs["heartbeat_at"] == double and jobs["result"] == long
    assert {"owner", "heartbeat_at"} <= set(jobs) and {"claimed_by", "claimed_at"} <= set(_columns(store_url, "alerts"))
    assert set(_columns(store_url, "leases")) == {"name", "owner", "expires"}
    job_store = JobStore(store_url, clock=lambda: 1700000000.123)
    job = job_store.create("stage", "stage", "UOPS1", args={"text": "한국어 🙂"})
    assert job_store.get(job.id).created == 1700000000.123 and job_store.get(job.id).args == {"text": "한국어 🙂"}


def test_a_database_with_tables_restore_bot_did_not_make_is_refused(store_url):
    with _engine(store_url) as engine, engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE jobs (id INT PRIMARY KEY)")   # another application's
    with pytest.raises(StoreFileError, match="already has a `jobs` table") as err:
        open_store(store_url)
    assert "password" not in str(err.value) and "database of its own" in err.value.hint
    assert set(_columns(store_url, "jobs")) == {"id"}


def _upgrade_to(conn: sa.Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def test_a_server_store_of_the_previous_revision_is_upgraded_keeping_its_rows(store_url):
    with _engine(store_url) as engine, engine.begin() as conn:   # the store as revision 0001 left it
        _upgrade_to(conn, "0001")
        conn.execute(sa.table("jobs", *map(sa.column, ("id", "kind", "target", "state", "requester", "args",
                                                        "progress", "created", "updated"))).insert().values(
            id="R1", kind="stage", target="stage", state="queued", requester="UOPS1", args="{}", progress="{}",
            created=1, updated=2))
        conn.execute(sa.table("alerts", *map(sa.column, ("key", "source", "reason", "created"))).insert().values(
            key="binlog.000001:100", source="mysql://src", reason="DROP TABLE", created=1))
    assert "owner" not in _columns(store_url, "jobs")
    jobs = JobStore(store_url)
    assert (jobs.get("R1").state, jobs.get("R1").owner) == (JobState.QUEUED, None)
    assert jobs.claim_next("host-a").owner == "host-a" and jobs.create("plan", "-", "U").id == "R2"
    assert AlertStore(store_url, "mysql://src", instance_id="host-a").claim(alert_at(100), "U")   # unposted: ours now
    with jobs.store.read() as db:
        assert db.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head()


def test_a_store_of_revision_0002_gets_apschedulers_table_and_cluster_columns_keeping_its_rows(store_url):
    """The store as the release before clusters had columns left it: its one saved choice made on
    billing's plan card (the cluster a `[billing] ` prefix of why), an event marked expected, an
    alert, and the job table APScheduler made itself with a scheduled drill in it."""
    with _engine(store_url) as engine:
        with engine.begin() as conn:
            _upgrade_to(conn, "0002")
            conn.execute(sa.table("choice", *map(sa.column, ("id", "stop", "skips", "user", "why", "ts"))).insert()
                         .values(id=1, stop="0-2-77", skips="[]", user="U1", why="[billing] stop before bin.000001:900", ts=5))
            conn.execute(sa.table("expected_events", *map(sa.column, ("tx", "gtid", "user", "reason", "ts"))).insert()
                         .values(tx="binlog.000001:300", gtid="0-1-3", user="U2", reason="UPDATE without WHERE", ts=6))
            conn.execute(sa.table("alerts", *map(sa.column, ("key", "source", "reason", "created"))).insert().values(
                key="binlog.000001:100:1:1700000000", source="mysql://src", reason="DROP TABLE", created=1))
        scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(engine=engine)})
        scheduler.start(paused=True)
        scheduler.add_job(f"{__name__}:_scheduled_drill", "interval", hours=24, id="drill-billing")
        scheduler.shutdown(wait=False)
    assert "cluster" not in _columns(store_url, "choice") and _columns(store_url, "apscheduler_jobs")
    jobs = JobStore(store_url)                               # migrated to the newest revision
    assert jobs.choice("billing")["why"] == "stop before bin.000001:900" and jobs.choice() is None
    assert jobs.expected() == ["0-1-3", "binlog.000001:300"] and jobs.expected("billing") == []
    alert = AlertStore(jobs.store, "mysql://src").get("binlog.000001:100:1:1700000000")
    assert (alert["reason"], alert["cluster"]) == ("DROP TABLE", "default")
    with _engine(store_url) as engine:
        store = SQLAlchemyJobStore(engine=engine)
        assert [j.id for j in store.get_all_jobs()] == ["drill-billing"]   # the scheduled drill kept
    with jobs.store.read() as db:
        assert db.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head()


def _table_shape(engine: sa.Engine, table: str) -> tuple:
    inspector = sa.inspect(engine)
    columns = {c["name"]: (c["type"].compile(engine.dialect), c["nullable"]) for c in inspector.get_columns(table)}
    indexes = {i["name"].replace(table, "T"): (i["column_names"], bool(i["unique"])) for i in inspector.get_indexes(table)}
    return columns, inspector.get_pk_constraint(table)["constrained_columns"], indexes


def test_the_cluster_migration_killed_half_way_finishes_when_run_again(store_url, monkeypatch):
    """0004 dies between copying expected_events and renaming the copy: PostgreSQL rolls it all back;
    on MariaDB (DDL commits by itself) choice is done, the old expected_events gone and its copy
    left: the next start goes on from there. Either way no row is lost or doubled."""
    with _engine(store_url) as engine, engine.begin() as conn:
        _upgrade_to(conn, "0003")
        conn.execute(sa.table("choice", *map(sa.column, ("id", "stop", "skips", "user", "why", "ts"))).insert()
                     .values(id=1, stop="0-1-7", skips="[]", user="U1", why="this is the incident: DROP", ts=5))
        conn.execute(sa.table("expected_events", *map(sa.column, ("tx", "gtid", "user", "reason", "ts"))).insert()
                     .values(tx="binlog.000001:300", gtid=None, user="U2", reason="batch", ts=6))
    from alembic import op
    real, renames = op.rename_table, []

    def rename_then_die(old: str, new: str, **kw) -> None:
        renames.append(old)
        if old == "expected_events_v4":
            raise RuntimeError("killed")
        real(old, new, **kw)
    monkeypatch.setattr(op, "rename_table", rename_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        open_store(store_url)
    monkeypatch.setattr(op, "rename_table", real)
    assert renames == ["choice_v4", "expected_events_v4"]
    if store_url.startswith("postgresql"):                    # as revision 0003 left it
        assert "cluster" not in _columns(store_url, "choice") and not _columns(store_url, "expected_events_v4")
    else:                                                     # half-way: choice done, the copy left
        assert "cluster" in _columns(store_url, "choice") and not _columns(store_url, "expected_events")
        assert "cluster" in _columns(store_url, "expected_events_v4")
    jobs = JobStore(store_url)
    assert jobs.choice()["stop"] == "0-1-7" and [e["reason"] for e in jobs.expected_events()] == ["batch"]
    assert "cluster" in _columns(store_url, "expected_events") and not _columns(store_url, "expected_events_v4")


def test_the_migrations_make_apschedulers_job_table_as_apscheduler_would(store_url):
    store = open_store(store_url)
    try:
        # APScheduler makes its own table beside ours, as it does when it starts on a store without one
        reference = SQLAlchemyJobStore(engine=store.engine, tablename="apscheduler_reference")
        reference.jobs_t.create(store.engine)
        assert _table_shape(store.engine, "apscheduler_jobs") == _table_shape(store.engine, "apscheduler_reference")
        shared = SharedScheduler(store, "host-a")
        shared.scheduler.start(paused=True)                   # APScheduler finds its table made
        shared.add_once(f"{__name__}:_scheduled_drill", "drill", "interval", hours=1)
        assert [j.id for j in shared.scheduler.get_jobs()] == ["drill"]
        shared.scheduler.shutdown(wait=False)
    finally:
        store.dispose()


def test_choices_and_expected_events_of_two_clusters_do_not_collide(store_url):
    a, b = JobStore(store_url), JobStore(store_url)      # two instances
    a.set_choice("0-1-7", [], "U1", "this is the incident: DROP TABLE club.posts", "homepage")
    b.set_choice("0-2-77", ["0-2-70"], "U2", "stop before bin.000001:900", "billing")
    a.mark_expected("binlog.000001:300", "0-1-3", "U1", "UPDATE without WHERE", "homepage")
    b.mark_expected("binlog.000001:300", "0-1-3", "U2", "a batch job", "billing")   # same position, other server
    b.mark_expected("binlog.000001:300", "0-1-3", "U3", "the nightly batch", "billing")   # said again: updated
    assert (a.choice("homepage")["stop"], a.choice("billing")["stop"], a.choice("billing")["skips"]) == \
        ("0-1-7", "0-2-77", ["0-2-70"])
    assert [e["reason"] for e in a.expected_events("homepage")] == ["UPDATE without WHERE"]
    assert [(e["user"], e["reason"]) for e in a.expected_events("billing")] == [("U3", "the nightly batch")]
    assert a.choice() is None and a.expected() == []                  # the unnamed cluster has neither
    assert b.clear_choice("billing") and b.choice("billing") is None and a.choice("homepage")["stop"] == "0-1-7"


def test_the_same_looking_event_in_two_clusters_is_alerted_in_each(store_url):
    """Two clusters' servers with the same server_id write the same file:pos in the same second:
    each cluster's alert is claimed and posted; each one's re-read is still deduplicated."""
    wiki = AlertStore(store_url, "mysql://wiki-db", instance_id="host-a", cluster="wiki")
    billing = AlertStore(store_url, "mysql://billing-db", instance_id="host-b", cluster="billing")
    same = alert_at(100)
    with FakeSlack() as fake:
        posters = [_poster(fake, wiki, "wiki"), _poster(fake, billing, "billing")]
        try:
            for poster in posters:
                poster.post(same)
                poster.post(same)                          # the watcher re-read it after a restart
            fake.wait_for(lambda calls: len([c for c in calls if c.method == "chat.postMessage"]) >= 2,
                          timeout=10, what="both clusters' alerts")
            time.sleep(0.3)
        finally:
            for poster in posters:
                poster.stop()
        posts = [c for c in fake.snapshot() if c.method == "chat.postMessage"]
    assert len(posts) == 2, [c.body["text"] for c in posts]
    keys = {json.dumps(c.body["blocks"]).count(f"{name}/{same.key}") > 0 for c in posts for name in ("wiki", "billing")}
    assert keys == {True, False}                            # each post's buttons carry its own cluster's key
    assert wiki.get(f"wiki/{same.key}")["cluster"] == "wiki" and billing.get(f"billing/{same.key}")["ts"]
    assert wiki.get(same.key) is None and not wiki.claim(same, "U") and not billing.claim(same, "U")


def test_a_sqlite_file_of_the_version_before_alembic_is_stamped_and_upgraded(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    _write_version_0(path, issue_10_columns=True)
    db = sqlite_store.connect(str(path))
    try:
        sqlite_store.migrate(db, str(path))   # as the last release before Alembic left it
        assert sqlite_store._version(db) == sqlite_store.LATEST == 2
    finally:
        db.close()
    store = JobStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head()
        assert db.execute("PRAGMA user_version").fetchone()[0] == sqlite_store.ALEMBIC_VERSION
    assert [j.id for j in store.jobs()] == ["R5", "R2", "R1"] and store.get("R2").result["checksums"]
    assert store.transition("R5", ("awaiting_approval",), "queued", approver="UOPS2")   # approved after the upgrade
    job = store.claim_next("host-a")                     # the new columns work on the converted file
    assert (job.id, job.owner, job.approver) == ("R5", "host-a", "UOPS2") and store.heartbeat("R5", "host-a")


def test_two_instances_claim_each_job_once_and_skip_locked_rows(store_url):
    a, b = JobStore(store_url), JobStore(store_url)      # two engines: two instances' connection pools
    ids = [a.create("plan", "-", "UOPS1").id for _ in range(12)]
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def work(name: str, store: JobStore) -> None:
        start.wait()
        while (job := store.claim_next(f"host-{name}")) is not None:
            claimed[name].append(job.id)
    threads = [threading.Thread(target=work, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed["a"] + claimed["b"], key=lambda j: int(j[1:])) == ids   # each once, none lost
    assert {j.owner for j in a.jobs(limit=100)} <= {"host-a", "host-b"}
    assert all(j.state == JobState.RUNNING and j.heartbeat_at for j in a.jobs(limit=100))

    # a row one instance holds locked is skipped by the other, which does not wait for it
    first, second = a.create("plan", "-", "UOPS1").id, a.create("plan", "-", "UOPS1").id
    engine = sa.create_engine(open_store(store_url).engine.url)
    try:
        with engine.begin() as held:
            held.exec_driver_sql(f"SELECT id FROM jobs WHERE id = '{first}' FOR UPDATE")
            t0 = time.monotonic()
            assert b.claim_next("host-b").id == second
            assert time.monotonic() - t0 < 2
        assert b.claim_next("host-b").id == first
    finally:
        engine.dispose()


def test_one_restore_per_target_across_instances(store_url):
    a, b = JobStore(store_url), JobStore(store_url)
    stage1, stage2 = a.create("stage", "stage", "U1"), a.create("stage", "stage", "U1")
    prod = a.create("prod", "prod", "U1")
    assert a.claim_next("host-a").id == stage1.id
    assert b.claim_next("host-b").id == prod.id            # stage2 waits: stage1 runs on that target
    assert b.claim_next("host-b") is None
    assert a.transition(stage1.id, ("running",), "succeeded")
    assert b.claim_next("host-b").id == stage2.id


def test_a_job_whose_owner_stopped_heartbeating_is_taken_over_with_its_progress(store_url):
    a, b = JobStore(store_url), JobStore(store_url)
    job = a.create("prod", "prod", "UOPS1")
    assert a.claim_next("host-a").id == job.id
    a.update(job.id, phase="replay", progress={"phase": "replay", "done": 40, "total": 100})
    assert a.heartbeat(job.id, "host-a")
    assert b.take_over_stale("host-b", older_than=1.0) == []      # it heartbeats: not stale
    time.sleep(1.3)                                                # host-a died: no heartbeat
    taken = b.take_over_stale("host-b", older_than=1.0)
    assert [j.id for j in taken] == [job.id]
    now = b.get(job.id)
    assert (now.state, now.owner, now.phase, now.progress["done"]) == (JobState.RUNNING, "host-b", "replay", 40)
    assert not a.heartbeat(job.id, "host-a")                       # the old owner learns it lost the job
    assert b.heartbeat(job.id, "host-b")
    assert b.take_over_stale("host-c", older_than=1.0) == []       # taken once, not again
    assert (b.audit_log(1)[0]["action"], b.audit_log(1)[0]["actor"]) == ("took over", "host-b")


_HOLDER = """
import sys, time
from handlers.store_leases import LeaseStore
leases = LeaseStore(sys.argv[1])
assert leases.acquire_lease("watch:homepage", "host-a", 2.0)
print("held", flush=True)
while True:
    leases.renew("watch:homepage", "host-a", 2.0)
    time.sleep(0.3)
"""


def test_a_lease_of_a_killed_process_is_taken_by_another_within_its_ttl(store_url):
    leases = LeaseStore(store_url)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, store_url], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(2.5)                                            # longer than the ttl: renewals keep it
        assert not leases.acquire_lease("watch:homepage", "host-b", 2.0)
        assert leases.holder("watch:homepage")[0] == "host-a"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        killed = time.monotonic()
        while not leases.acquire_lease("watch:homepage", "host-b", 2.0):
            assert time.monotonic() - killed < 3.0, "the dead owner's lease was not taken within its ttl"
            time.sleep(0.05)
        took = time.monotonic() - killed
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    assert took <= 2.1, took
    assert leases.holder("watch:homepage")[0] == "host-b"
    assert leases.renew("watch:homepage", "host-b", 2.0) and not leases.renew("watch:homepage", "host-a", 2.0)
    assert not leases.acquire_lease("watch:homepage", "host-a", 2.0)
    assert leases.release("watch:homepage", "host-b") and leases.acquire_lease("watch:homepage", "host-a", 2.0)


def _poster(fake: FakeSlack, store: AlertStore, cluster: str | None = None) -> AlertPoster:
    settings = SimpleNamespace(oncall=SimpleNamespace(rotation=("UKIM",), rotation_start=None, fallback=None))
    return AlertPoster(AlertSlackClient("xoxb-test", fake.api_url), "CINC", store, Oncall(settings, store),
                       "mysql://src", escalate_after=0, keep_warm=0, cluster=cluster).start()


def test_an_alert_two_instances_claim_is_posted_once_and_none_is_lost(store_url, monkeypatch):
    monkeypatch.setattr(alerts_module, "ALERT_CLAIM_SECONDS", 1.0)
    a = AlertStore(store_url, "mysql://src", instance_id="host-a")
    b = AlertStore(store_url, "mysql://src", instance_id="host-b")
    # both claim one event at once (the watch failed over while it was read): one wins
    start, won = threading.Barrier(2), []
    for store in (a, b):
        threading.Thread(target=lambda s=store: (start.wait(), won.append(s.claim(alert_at(100), "UKIM")))).start()
    deadline = time.monotonic() + 10
    while len(won) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(won) == [False, True]

    with FakeSlack() as fake:
        posters = [_poster(fake, a), _poster(fake, b)]
        try:
            # started, each reposts what it claimed and never posted: 100, by its winner alone
            for poster in posters:                 # both instances post the same alert
                poster.post(alert_at(200))
            assert a.claim(alert_at(300), "UKIM")  # host-a claims one and dies before posting it
            posters[1].post(alert_at(300))         # host-b: claimed elsewhere, retried, then its own
            fake.wait_for(lambda calls: len([c for c in calls if c.method == "chat.postMessage"]) >= 3,
                          timeout=15, what="the alert host-a never posted")
            time.sleep(0.5)
        finally:
            for poster in posters:
                poster.stop()
        posts = [c for c in fake.snapshot() if c.method == "chat.postMessage"]
    texts = [c.body["text"] for c in posts]
    assert len(posts) == 3, texts
    for pos in (100, 200, 300):
        assert sum(f"binlog.000001:{pos} " in t for t in texts) == 1, (pos, texts)
    assert b.get(alert_at(300).key)["ts"] and a.get(alert_at(200).key)["ts"]


_RUNS: list[tuple[float, str]] = []


def _scheduled_drill() -> None:
    """The scheduled job: a textual reference, as a job in a shared job store must be."""
    _RUNS.append((time.monotonic(), threading.current_thread().name))


def test_a_scheduled_drill_runs_once_per_interval_across_instances_and_after_a_failover(store_url):
    _RUNS.clear()
    store_a, store_b = open_store(store_url), open_store(store_url)
    ttl = 3.0   # a renewal late by more than the ttl (a loaded machine) would hand the lease over early
    a = SharedScheduler(store_a, "host-a", ttl=ttl).start()
    time.sleep(0.3)                                    # host-a takes the lease first
    b = SharedScheduler(store_b, "host-b", ttl=ttl).start()
    try:
        for scheduler in (a, b):                       # each instance adds it at start: one job
            scheduler.add_once(f"{__name__}:_scheduled_drill", "drill", "interval", seconds=1)
        time.sleep(3.3)
        assert a.keeper.held and not b.keeper.held
        before = len(_RUNS)
        a.stop(release=False)                          # host-a dies: its lease expires, host-b's scheduler runs
        died = time.monotonic()
        time.sleep(ttl + 2.5)
    finally:
        a.stop(release=False)
        b.stop()
        store_a.dispose()
        store_b.dispose()
    times = [t for t, _thread in _RUNS]
    assert 2 <= before <= 4, _RUNS
    gaps = [round(later - earlier, 2) for earlier, later in zip(times[:before], times[1:before])]
    assert all(gap > 0.5 for gap in gaps), (gaps, _RUNS)   # both instances up: never twice at once
    # after the failover a run the dead holder missed runs late, then the schedule goes on: one run a
    # second, as with one instance (two schedulers would make two)
    assert len(times) <= (times[-1] - times[0]) / 1.0 + 2, _RUNS
    after = [t for t in times if t > died]
    assert after and after[0] - died < ttl + 1.0 + 0.5 * ttl, (died, _RUNS)   # the ttl, one interval, the lease tick
    assert len({name.split("_")[0] for _t, name in _RUNS}) == 2, _RUNS  # both instances' executors ran it


def test_a_changed_schedule_replaces_the_stored_job_and_an_unchanged_one_keeps_its_next_run(store_url):
    drill = backup = f"{__name__}:_scheduled_backup"

    def start(config: dict) -> dict:
        """A serve instance starting with this config: the stored jobs it leaves, by id."""
        store = open_store(store_url)
        shared = SharedScheduler(store, "host-a")
        shared.scheduler.start(paused=True)
        try:
            shared.configure(config)
            return {j.id: (str(j.trigger), list(j.args), j.next_run_time) for j in shared.scheduler.get_jobs()}
        finally:
            shared.scheduler.shutdown(wait=False)
            store.dispose()
    first = start({"drill-wiki": (drill, "interval", {"hours": 24}, ["drill", "wiki"]),
                   "backup-wiki": (backup, "interval", {"hours": 6}, ["backup", "wiki"])})
    assert first["drill-wiki"][0] == "interval[1 day, 0:00:00]" and first["backup-wiki"][0] == "interval[6:00:00]"
    time.sleep(0.05)
    again = start({"drill-wiki": (drill, "interval", {"hours": 24}, ["drill", "wiki"]),
                   "backup-wiki": (backup, "interval", {"hours": 6}, ["backup", "wiki"])})
    assert again == first                                     # a restart keeps the next run times
    changed = start({"drill-wiki": (drill, "interval", {"hours": 2}, ["drill", "wiki"]),   # drill_every_hours = 2
                     "backup-billing": (backup, "interval", {"hours": 6}, ["backup", "billing"])})
    assert set(changed) == {"drill-wiki", "backup-billing"}   # backup-wiki is no longer configured: removed
    assert changed["drill-wiki"][0] == "interval[2:00:00]" and changed["drill-wiki"][2] < first["drill-wiki"][2]
    assert changed["backup-billing"][1] == ["backup", "billing"]
    with _engine(store_url) as engine:                        # what the store holds, as another instance reads it
        assert sorted(j.id for j in SQLAlchemyJobStore(engine=engine).get_all_jobs()) == ["backup-billing", "drill-wiki"]

    # two instances start at once with a config that schedules nothing: both remove the jobs, neither fails
    stores = [open_store(store_url) for _ in range(2)]
    schedulers = [SharedScheduler(store, f"host-{i}") for i, store in enumerate(stores)]
    for shared in schedulers:
        shared.scheduler.start(paused=True)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def configure(shared: SharedScheduler) -> None:
        start.wait()
        try:
            shared.configure({})
        except BaseException as exc:   # reported by the assertion below
            errors.append(exc)
    threads = [threading.Thread(target=configure, args=(shared,)) for shared in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for shared, store in zip(schedulers, stores):
        shared.scheduler.shutdown(wait=False)
        store.dispose()
    assert errors == []
    with _engine(store_url) as engine:
        assert SQLAlchemyJobStore(engine=engine).get_all_jobs() == []


def _scheduled_backup(kind: str, cluster: str) -> None:
    """Stands for bot.serve:run_scheduled (never runs here: the schedulers stay paused)."""


def test_heartbeats_keep_a_running_job_and_report_it_lost_once_taken_over(store_url):
    a, b = JobStore(store_url), JobStore(store_url)
    job = a.create("stage", "stage", "UOPS1")
    assert a.claim_next("host-a").id == job.id
    lost: list[str] = []
    beats = Heartbeats(a, "host-a", every=0.2, on_lost=lost.append)
    beats.add(job.id)
    beats.start()
    try:
        time.sleep(1.0)
        assert b.take_over_stale("host-b", older_than=0.6) == []        # alive: kept
        beats.stop()                                                     # host-a stalls
        time.sleep(0.8)
        assert [j.id for j in b.take_over_stale("host-b", older_than=0.6)] == [job.id]
        beats.beat()                                                     # host-a wakes up: no longer its job
        assert lost == [job.id] and b.get(job.id).owner == "host-b"
    finally:
        beats.stop()


def test_claims_keep_one_restore_per_target_of_a_cluster_across_instances(store_url):
    """Two instances claiming at once never both start a restore on one target of one cluster
    (claims are serialised: each would see the target free); another cluster's runs beside it."""
    a, b = JobStore(store_url), JobStore(store_url)
    for cluster in ("wiki", "wiki", "billing", "billing"):
        a.create("stage", "stage", "UOPS1", args={"cluster": cluster})
    claimed: list = []
    start = threading.Barrier(2)

    def work(name: str, store: JobStore) -> None:
        start.wait()
        for _ in range(4):
            if (job := store.claim_next(f"host-{name}")) is not None:
                claimed.append(job)
    threads = [threading.Thread(target=work, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j.args["cluster"] for j in claimed) == ["billing", "wiki"]
    assert len(a.jobs(states=(JobState.QUEUED,))) == 2
