"""`--fence refuse` looks again after every committed batch, not only at the start.

A writer that connects to a database being restored after the start check would otherwise write
while the replay runs for minutes. The restore stops within one batch with an error naming the
session, keeps its checkpoint, and the same command run again once the writer is gone resumes
from it and ends exact.
"""
from __future__ import annotations

import pymysql
import pytest

from restore import api
from restore.errors import TargetError
from restore.hooks import NullHooks
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, target_url
from tests.support.incident_factory import IncidentSpec, each, many

pytestmark = pytest.mark.mysql

BATCH = 10
LEDGER = IncidentSpec(
    databases=("ledger",),
    schema=["CREATE DATABASE ledger", "CREATE TABLE ledger.entries (id INT PRIMARY KEY, amount INT)",
            many("INSERT INTO ledger.entries VALUES (%s, %s)", [(i, i) for i in (1, 2, 3)])],
    traffic=[each("INSERT INTO ledger.entries VALUES (%s, %s)", [(i, i * 7) for i in range(4, 204)])],
    disaster=["DROP DATABASE ledger"])


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    return LEDGER.build_on_new_source(tmp_path_factory.mktemp("fence-recheck"))


@pytest.fixture
def prod(target):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS app@'%' IDENTIFIED BY 'app-pw'")
        cur.execute("GRANT ALL ON ledger.* TO app@'%'")
    yield target
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS app@'%'")


class _LateWriter(NullHooks):
    """The application connects to ledger once the first batch has committed (after the start check)."""

    def __init__(self, server: Sandbox) -> None:
        self.server = server
        self.app: pymysql.connections.Connection | None = None
        self.done_when_connected: int | None = None

    def progress(self, phase: str, done: int, total, where) -> None:
        if phase == "replay" and self.app is None:
            self.app = pymysql.connect(host="127.0.0.1", port=self.server.port, user="app", password="app-pw",
                                       database="ledger", autocommit=True)
            self.done_when_connected = done


def test_a_writer_connecting_during_the_replay_stops_it_within_a_batch_and_the_rerun_resumes(ledger, prod, cli):
    writer = _LateWriter(prod)
    snapshots = api.read_snapshots([str(ledger.snapshot)])
    source = api.open_binlogs(str(ledger.binlog_dir))
    plan = api.make_plan(snapshots, source)
    try:
        with pytest.raises(TargetError) as err:
            api.restore(plan, snapshots, source, prod.dsn, fence="refuse", hooks=writer, batch_transactions=BATCH)
        assert writer.app is not None, "the replay never committed a batch"
        message, hint = str(err.value), err.value.hint
        assert "app@" in message and f"connection {writer.app.thread_id()}" in message, message
        assert "database ledger" in message and "committed so far is kept" in message, message
        assert "--fence lock" in hint and "run the same command again" in hint and "resumes" in hint, hint
        with prod.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM ledger.entries")
            rows = cur.fetchone()[0]
        # Stopped at the first commit after the writer came: at most one more batch than it had then.
        assert 3 <= rows <= 3 + writer.done_when_connected + BATCH, (rows, writer.done_when_connected)
    finally:
        if writer.app is not None:
            writer.app.close()     # the operator stops the application, as the hint says

    # The same command again: it resumes from the checkpoint and ends exact.
    res = cli("restore", "--snapshot", ledger.snapshot, "--binlogs", ledger.binlog_dir, "--target", target_url(prod),
              "--yes", "--batch", str(BATCH))
    assert res.code == 0 and res.doc["ok"] and res.doc["restore"]["resumed"], res
    replay = next(p for p in res.doc["restore"]["phases"] if p["phase"] == "replay")
    assert replay["resumed_from"], res
    with prod.connect() as conn:
        assert checksums(conn, ["ledger"]) == ledger.before


def test_the_recheck_ignores_the_restores_own_sessions_and_names_others(prod):
    """check_still_alone sees a late session on a restored database, but not the restore's own."""
    from restore.target.fence import fenced
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE ledger")
    with prod.connect() as fence_conn, fenced(fence_conn, ["ledger"], "refuse", [], "test") as fence:
        with prod.connect(database="ledger") as replay:   # the replay's session, opened after the start check
            fence.check_still_alone([replay.thread_id()])     # only the restore's own session: fine
            with pytest.raises(TargetError, match=f"connection {replay.thread_id()}, database ledger"):
                fence.check_still_alone()
            app = pymysql.connect(host="127.0.0.1", port=prod.port, user="app", password="app-pw",
                                  database="ledger")
            try:
                with pytest.raises(TargetError, match=f"app@.*connection {app.thread_id()}"):
                    fence.check_still_alone([replay.thread_id()])
            finally:
                app.close()


def test_the_recheck_survives_its_own_session_being_ended(prod):
    """An operator's KILL of the fence's session must not pass for a writer, nor end the restore
    with a raw driver error: it looks again on a new session."""
    from restore.target.fence import fenced
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE ledger")
    with prod.connect() as fence_conn, fenced(fence_conn, ["ledger"], "refuse", [], "test") as fence:
        with prod.connect() as admin, admin.cursor() as cur:
            cur.execute(f"KILL {fence_conn.thread_id()}")
        fence.check_still_alone()
        app = pymysql.connect(host="127.0.0.1", port=prod.port, user="app", password="app-pw", database="ledger")
        try:
            with pytest.raises(TargetError, match=f"connection {app.thread_id()}"):
                fence.check_still_alone()
        finally:
            app.close()
