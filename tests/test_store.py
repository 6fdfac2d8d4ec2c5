"""The store file the job store and the alert store share: schema versions, migration of a file the
releases before versions wrote, and the job state transition table."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading

import pytest

from handlers import sqlite_store
from handlers.alerts import AlertStore
from handlers.jobstore import FINISHED, TRANSITIONS, IllegalTransition, JobKind, JobState, JobStore
from handlers.sqlite_store import ALEMBIC_VERSION, LATEST, StoreFileError
from handlers.store import head
from tests.support.alert_samples import alert_at as _alert

# -- "version 0": the file as the releases before schema versions wrote it ------------------------------
# Copied from bot/jobstore.py and bot/alerts.py as they were (commit bec0c44); do not edit to match
# today's schema: this is what files out there hold.
OLD_JOBSTORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT '',
    requester TEXT NOT NULL,
    approver TEXT,
    args TEXT NOT NULL DEFAULT '{}',
    plan_id TEXT,
    stage_job TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    abort_requested INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    origin TEXT NOT NULL DEFAULT 'console',
    channel TEXT,
    card_ts TEXT,
    card_version INTEGER NOT NULL DEFAULT 0,
    posted_version INTEGER NOT NULL DEFAULT 0,
    reply TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    ts REAL NOT NULL,
    text TEXT NOT NULL,
    posted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS choice (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stop TEXT,
    skips TEXT NOT NULL DEFAULT '[]',
    user TEXT NOT NULL,
    why TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS expected_events (
    tx TEXT PRIMARY KEY,
    gtid TEXT,
    user TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    job TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
"""
OLD_ALERTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_position (source TEXT PRIMARY KEY, file TEXT NOT NULL, pos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY, source TEXT NOT NULL, reason TEXT NOT NULL, oncall TEXT, ts TEXT,
    channel TEXT, created REAL NOT NULL, acked_by TEXT, escalations INTEGER NOT NULL DEFAULT 0, body TEXT);
CREATE TABLE IF NOT EXISTS oncall_override (id INTEGER PRIMARY KEY CHECK (id = 1), user TEXT NOT NULL, since REAL);
"""
# The alert store added these to its table when it opened a file of the first release (issue 10).
OLD_ALERT_COLUMNS = """
ALTER TABLE alerts ADD COLUMN severity TEXT NOT NULL DEFAULT 'certain';
ALTER TABLE alerts ADD COLUMN marked TEXT;
ALTER TABLE alerts ADD COLUMN marked_by TEXT;
"""
SOURCE = "mysql://src"
URL = "https://hooks.slack.com/commands/T1/2/secret-response-url"


def _write_version_0(path, *, issue_10_columns: bool) -> dict:
    """A store of the old layout, with rows as the old code wrote them; returns what it holds."""
    db = sqlite3.connect(path)
    db.executescript(OLD_JOBSTORE_SCHEMA + OLD_ALERTS_SCHEMA + (OLD_ALERT_COLUMNS if issue_10_columns else ""))
    jobs = [  # (seq, id, kind, target, state, requester, approver, args, plan_id, stage_job, result)
        (1, "R1", "plan", "-", "succeeded", "UOPS1", None, {"stop_before": "auto", "skips": []}, "p1", None,
         {"summary": "planned", "plan": {"stop": {"gtid": "0-1-5"}}}),
        (2, "R2", "stage", "stage", "succeeded", "UOPS1", None, {"stop_before": "auto"}, "p1", None,
         {"summary": "verified", "checksums": {"club.members": 123}}),
        (5, "R5", "prod", "prod", "awaiting_approval", "UOPS1", None, {"stop_before": "0-1-5"}, "p1", "R2", None),
    ]
    for seq, job_id, kind, target, state, requester, approver, args, plan_id, stage_job, result in jobs:
        db.execute("INSERT INTO jobs (seq, id, kind, target, state, phase, requester, approver, args, plan_id, "
                   "stage_job, progress, result, origin, channel, card_ts, card_version, posted_version, reply, "
                   "created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (seq, job_id, kind, target, state, "done" if state == "succeeded" else "", requester, approver,
                    json.dumps(args), plan_id, stage_job, json.dumps({"phase": "verify", "done": 3, "total": 3}),
                    json.dumps(result) if result else None, "slack", "CINC", f"17000000{seq}.000100", 4, 4,
                    json.dumps({"response_url": URL}), 1000.0 + seq, 1100.0 + seq))
    db.execute("INSERT INTO events (job, ts, text, posted) VALUES ('R2', 1001.5, 'replayed 3 transactions', 1)")
    db.execute("INSERT INTO events (job, ts, text) VALUES ('R5', 1005.5, 'waiting for a second approver')")
    for n, (actor, action, job) in enumerate([("UOPS1", "queued plan", "R1"), ("UOPS1", "queued stage", "R2"),
                                              ("UOPS1", "requested prod", "R5")]):
        db.execute("INSERT INTO audit (ts, actor, action, job, detail) VALUES (?,?,?,?,?)",
                   (1000.0 + n, actor, action, job, "--stop-before 0-1-5"))
    db.execute("INSERT INTO choice (id, stop, skips, user, why, ts) VALUES (1, '0-1-5', '[\"0-1-3\"]', 'UOPS1', "
               "'the DROP', 1002.0)")
    db.execute("INSERT INTO expected_events (tx, gtid, user, reason, ts) VALUES "
               "('binlog.000001:60', '0-1-3', 'UOPS2', 'nightly purge', 1003.0)")
    db.execute("INSERT INTO watch_position (source, file, pos) VALUES (?, 'binlog.000002', 4711)", (SOURCE,))
    posted, unposted = _alert(100), _alert(300)
    for alert, ts in ((posted, "1700000001.000200"), (unposted, None)):
        body = {k: v for k, v in dataclasses.asdict(alert).items() if k != "severity" or issue_10_columns}
        db.execute("INSERT INTO alerts (key, source, reason, oncall, ts, channel, created, acked_by, escalations, "
                   "body) VALUES (?,?,?,?,?,?,?,?,?,?)", (alert.key, SOURCE, alert.reason, "UKIM", ts,
                                                          "CINC" if ts else None, alert.detected_at, None, 1,
                                                          json.dumps(body)))
    db.execute("INSERT INTO oncall_override (id, user, since) VALUES (1, 'ULEE', 1004.0)")
    db.commit()
    db.close()
    return {"jobs": jobs, "posted": posted, "unposted": unposted}


def _layout(path) -> dict[str, list[tuple]]:
    """Every table's columns (name, type, not null, default, primary key), as SQLite reports them."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: [tuple(c[1:]) for c in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def _columns(path) -> dict[str, list[tuple]]:
    """Every table's columns by name, not null and primary key: a converted file declares the types
    of its release (TEXT, REAL), a new one Alembic's (VARCHAR, DOUBLE), which SQLite treats alike."""
    return {t: sorted((c[0], bool(c[2] or c[4]), c[4]) for c in cols) for t, cols in _layout(path).items()}


def _revision(path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def _user_version(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


@pytest.mark.parametrize("issue_10_columns", [False, True], ids=["first-release", "issue-10"])
def test_a_file_of_the_old_schema_opens_migrates_and_keeps_everything(tmp_path, issue_10_columns):
    path = tmp_path / "jobs.sqlite3"
    old = _write_version_0(path, issue_10_columns=issue_10_columns)
    assert _user_version(path) == 0

    store = JobStore(path, clock=lambda: 2000.0)
    alerts = AlertStore(str(path), SOURCE)
    assert _user_version(path) == ALEMBIC_VERSION and _revision(path) == head()

    # jobs: every field read back as written; kind and state are the enums and still equal the words
    for seq, job_id, kind, target, state, requester, approver, args, plan_id, stage_job, result in old["jobs"]:
        job = store.get(job_id)
        assert (job.kind, job.target, job.state, job.requester, job.approver, job.args, job.plan_id,
                job.stage_job, job.result) == (kind, target, state, requester, approver, args, plan_id,
                                               stage_job, result), job
        assert isinstance(job.state, JobState) and isinstance(job.kind, JobKind)
        assert (job.origin, job.channel, job.card_ts, job.card_version, job.posted_version) == \
            ("slack", "CINC", f"17000000{seq}.000100", 4, 4)
        assert (job.created, job.updated, job.progress["total"]) == (1000.0 + seq, 1100.0 + seq, 3)
    assert [j.id for j in store.jobs()] == ["R5", "R2", "R1"]
    assert [j.id for j in store.jobs(states=("succeeded",), kind="stage")] == ["R2"]
    assert store.events("R2") == ["replayed 3 transactions"] and store.unposted_events("R2") == []
    assert [text for _id, text in store.unposted_events("R5")] == ["waiting for a second approver"]
    assert [(a["action"], a["job"]) for a in store.audit_log()] == \
        [("requested prod", "R5"), ("queued stage", "R2"), ("queued plan", "R1")]
    assert store.choice() == {"stop": "0-1-5", "skips": ["0-1-3"], "user": "UOPS1", "why": "the DROP",
                              "ts": 1002.0}
    assert store.expected() == ["0-1-3", "binlog.000001:60"]
    # the approval still works on the migrated row, and numbering goes on after the highest job
    assert store.transition("R5", (JobState.AWAITING_APPROVAL,), JobState.QUEUED, approver="UOPS2")
    assert store.get("R5").state == "queued" and store.get("R5").approver == "UOPS2"
    assert store.create("plan", "-", "UOPS1").id == "R6"

    # Slack's response_url is gone from the file, not only from the Job
    assert "reply" not in [c[0] for c in _layout(path)["jobs"]]
    with sqlite3.connect(path) as db:
        assert not [r for t in _layout(path) for r in db.execute(f"SELECT * FROM {t}") if URL in json.dumps(list(r))]

    # alerts and watch positions: the watcher carries on where it was, nothing pings twice
    assert alerts.load() == ("binlog.000002", 4711)
    assert alerts.oncall_override() == "ULEE"
    info = alerts.get(old["posted"].key)
    assert (info["ts"], info["oncall"], info["escalations"], info["severity"], info["marked"]) == \
        ("1700000001.000200", "UKIM", 1, "certain", None)
    assert info["event"]["tx_pos"] == old["posted"].tx_pos
    assert not alerts.claim(old["posted"], "UKIM")                     # alerted before: not again
    assert [a.key for a in alerts.unposted(0)] == [old["unposted"].key]  # Slack never took it: posted now
    assert alerts.unacknowledged(0) == [old["posted"].key]
    assert alerts.mark(old["posted"].key, "incident", "UOPS2") and alerts.unacknowledged(0) == []

    # the migrated file has the tables and columns of a file the store creates today
    fresh = tmp_path / "fresh.sqlite3"
    JobStore(fresh)
    assert _columns(path) == _columns(fresh)


def test_a_fresh_file_gets_the_newest_version_and_every_table(tmp_path):
    path = tmp_path / "new.sqlite3"
    AlertStore(str(path), SOURCE)          # either store may be first to open the file
    assert _user_version(path) == ALEMBIC_VERSION and _revision(path) == head()
    assert set(_layout(path)) >= {"jobs", "events", "choice", "expected_events", "audit", "watch_position",
                                  "alerts", "oncall_override", "leases", "alembic_version"}
    store = JobStore(path)
    job = store.create("stage", "stage", "UOPS1")
    assert job.id == "R1" and job.state is JobState.QUEUED and job.kind is JobKind.STAGE
    assert not hasattr(job, "reply")


def test_a_file_of_a_newer_version_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    JobStore(path).create("plan", "-", "UOPS1")
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {ALEMBIC_VERSION + 1}")
    for open_store in (lambda: JobStore(path), lambda: AlertStore(str(path), SOURCE)):
        with pytest.raises(StoreFileError) as err:
            open_store()
        message = str(err.value)
        assert str(path) in message and f"version {ALEMBIC_VERSION + 1}" in message
        assert f"knows ({ALEMBIC_VERSION})" in message and "newer restore-bot" in message
    assert _user_version(path) == ALEMBIC_VERSION + 1


def test_a_store_of_a_newer_alembic_revision_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    JobStore(path).create("plan", "-", "UOPS1")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(StoreFileError, match=f"revision 9999_from_the_future, newer than this restore-bot "
                                             f"knows \\({head()}\\)"):
        JobStore(path)
    assert _revision(path) == "9999_from_the_future" and _user_version(path) == ALEMBIC_VERSION


def test_an_older_restore_bot_refuses_a_file_alembic_migrated(tmp_path):
    """A release of before Alembic knows user_version 2 at most: it must not write to this file."""
    path = tmp_path / "jobs.sqlite3"
    JobStore(path)
    db = sqlite_store.connect(str(path))
    try:
        assert sqlite_store._version(db) > LATEST
    finally:
        db.close()


def test_a_file_that_is_not_sqlite_is_refused_naming_it(tmp_path):
    path = tmp_path / "restore-bot.toml"
    path.write_text("[store]\npath = 'jobs.sqlite3'\n" * 200)
    with pytest.raises(StoreFileError, match=f"store file {path} cannot be opened as SQLite"):
        JobStore(path)


def test_a_migration_that_fails_half_way_leaves_the_old_file_to_run_again(tmp_path, monkeypatch):
    path = tmp_path / "jobs.sqlite3"
    _write_version_0(path, issue_10_columns=False)
    before = _layout(path)

    def broken(db):
        raise RuntimeError("killed during the migration")
    # The last migration fails after the first one changed the file: both roll back.
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", (*sqlite_store.MIGRATIONS[:-1],
                                                     sqlite_store.Migration(LATEST, "broken", broken)))
    with pytest.raises(RuntimeError, match="killed"):
        JobStore(path)
    assert _user_version(path) == 0 and _layout(path) == before
    monkeypatch.undo()
    assert JobStore(path).get("R2").result["checksums"] == {"club.members": 123}
    assert _user_version(path) == ALEMBIC_VERSION


def test_stores_opening_an_old_file_at_once_migrate_it_once(tmp_path):
    """Bot, worker and watcher start together: each store has its own connection (threads here),
    one migrates under the write lock, the others wait for it and find nothing left to do."""
    path = tmp_path / "jobs.sqlite3"
    _write_version_0(path, issue_10_columns=True)
    start, errors, stores = threading.Barrier(6), [], []

    def open_store(n: int) -> None:
        start.wait()
        try:
            stores.append(JobStore(path) if n % 2 else AlertStore(str(path), SOURCE))
        except Exception as exc:   # reported below, with the others
            errors.append(exc)
    threads = [threading.Thread(target=open_store, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 6
    assert _user_version(path) == ALEMBIC_VERSION and [j.id for j in JobStore(path).jobs()] == ["R5", "R2", "R1"]


# -- the transition table -----------------------------------------------------------------------------

def test_every_transition_the_bot_makes_is_in_the_table(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create("stage", "stage", "UOPS1")
    assert store.transition(job.id, ("queued",), "running", worker_pid=42)
    assert store.transition(job.id, ("running",), "queued")              # its worker stopped: handed back
    assert store.transition(job.id, ("queued",), "running")
    assert store.transition(job.id, ("running",), "succeeded", result={"summary": "ok"}, phase="done")
    prod = store.create("prod", "prod", "UOPS1", state="awaiting_approval")
    assert not store.transition(prod.id, ("queued",), "running")         # a race lost: False, no error
    assert store.transition(prod.id, ("queued", "awaiting_approval"), "aborted")
    for end in ("rejected", "expired"):
        other = store.create("prod", "prod", "UOPS1", state=JobState.AWAITING_APPROVAL)
        assert store.transition(other.id, (JobState.AWAITING_APPROVAL,), end, approver="UOPS2")
        assert store.get(other.id).state == end and store.get(other.id).finished
    assert {s for s, to in TRANSITIONS.items() if not to} == set(FINISHED)


def test_an_illegal_transition_is_refused_and_the_job_keeps_its_state(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create("stage", "stage", "UOPS1")
    with pytest.raises(IllegalTransition) as err:
        store.transition(job.id, ("queued",), "succeeded")               # no worker ever ran it
    assert str(err.value) == (f"job {job.id}: queued -> succeeded is not a state change a job makes; from queued "
                              f"it goes to aborted, running (TRANSITIONS in handlers/jobstore.py)")
    assert store.get(job.id).state == "queued" and store.get(job.id).card_version == job.card_version
    store.transition(job.id, ("queued",), "running")
    store.transition(job.id, ("running",), "failed", error={"message": "boom"})
    with pytest.raises(IllegalTransition, match="from failed it goes to nothing"):
        store.transition(job.id, ("failed",), "queued")                 # a finished job stays finished
    with pytest.raises(ValueError, match="'done' is not a job state"):
        store.transition(job.id, ("running",), "done")
    with pytest.raises(ValueError, match="'finished' is not a job state"):
        store.jobs(states=("finished",))
    with pytest.raises(ValueError, match="'stages' is not a job kind"):
        store.jobs(kind="stages")
    with pytest.raises(IllegalTransition, match="use transition"):
        store.update(job.id, state="queued")
    with pytest.raises(IllegalTransition, match="cannot start succeeded"):
        store.create("stage", "stage", "UOPS1", state="succeeded")
    with pytest.raises(ValueError, match="'restore' is not a job kind"):
        store.create("restore", "stage", "UOPS1")
    assert store.get(job.id).state == "failed" and [j.id for j in store.jobs()] == [job.id]


def test_states_and_kinds_are_the_plain_words_everywhere():
    assert JobState.AWAITING_APPROVAL == "awaiting_approval" and "running" in (JobState.RUNNING,)
    assert f"{JobState.RUNNING}" == str(JobState.RUNNING) == "running" and f"{JobKind.PROD}" == "prod"
    assert json.dumps({"state": JobState.EXPIRED, "kind": JobKind.DRILL}) == '{"state": "expired", "kind": "drill"}'
    assert {"queued": 1}[JobState.QUEUED] == 1


def test_two_clusters_watching_one_server_keep_their_own_positions(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    JobStore(path)
    old = AlertStore(path, "mysql://db:3306")              # a position saved before positions were per cluster
    old.save("bin.000003", 4000)
    home = AlertStore(path, "mysql://db:3306", cluster="homepage")
    wiki = AlertStore(path, "mysql://db:3306", cluster="wiki")
    assert home.load() == wiki.load() == ("bin.000003", 4000)
    home.save("bin.000004", 120)
    assert (home.load(), wiki.load(), old.load()) == (("bin.000004", 120), ("bin.000003", 4000), ("bin.000003", 4000))
    wiki.save("bin.000003", 9000)
    assert (home.load(), wiki.load()) == (("bin.000004", 120), ("bin.000003", 9000))
