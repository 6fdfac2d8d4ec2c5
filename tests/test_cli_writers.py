"""A CLI restore into a server the application still writes to: the seed's attendance failure.

The CLI fences writers as the chat prod path does (refuse, or lock the application's accounts),
moves the existing databases aside only once they are fenced, and no option or `next:` hint
ever deletes a row the application committed: `--restart` moves what an unfinished run left
aside instead of dropping it.
"""
from __future__ import annotations

import pymysql
import pytest

from restore import api
from restore.errors import ApplyError, TargetError
from restore.hooks import NullHooks
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, databases, target_url
from tests.support.incident_factory import IncidentSpec, each, many

# keeper.attendance: rows 1-3 in the dump, 4-30 in the binlog, then DROP DATABASE.
KEEPER = IncidentSpec(
    databases=("keeper",),
    schema=["CREATE DATABASE keeper", "CREATE TABLE keeper.attendance (id INT PRIMARY KEY, member VARCHAR(30))",
            many("INSERT INTO keeper.attendance VALUES (%s, %s)", [(i, f"m{i}") for i in (1, 2, 3)])],
    traffic=[each("INSERT INTO keeper.attendance VALUES (%s, %s)", [(i, f"m{i}") for i in range(4, 31)])],
    disaster=["DROP DATABASE keeper"])


@pytest.fixture(scope="module")
def keeper(tmp_path_factory):
    inc = KEEPER.build_on_new_source(tmp_path_factory.mktemp("writers"))
    return {"snap": inc.snapshot, "binlogs": inc.binlog_dir, "before": inc.before}


@pytest.fixture
def prod(target):
    """The production server after the disaster: the application recreated keeper and wrote to it."""
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE keeper")
        cur.execute("CREATE TABLE keeper.attendance (id INT PRIMARY KEY, member VARCHAR(30))")
        cur.executemany("INSERT INTO keeper.attendance VALUES (%s, %s)", [(1, "app-1"), (900, "app-900")])
        cur.execute("CREATE USER IF NOT EXISTS app@'%' IDENTIFIED BY 'app-pw'")
        cur.execute("GRANT ALL ON keeper.* TO app@'%'")
    yield target
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS app@'%'")


def _app(server: Sandbox, db: str | None = "keeper") -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=server.port, user="app", password="app-pw", database=db,
                           autocommit=True)


def _args(keeper, target, *extra):
    return ["restore", "--snapshot", keeper["snap"], "--binlogs", keeper["binlogs"], "--target", target_url(target),
            "--yes", *extra]


def _all_rows(server: Sandbox) -> set[tuple[int, str]]:
    """Every (id, member) in keeper or any copy of it set aside."""
    out: set[tuple[int, str]] = set()
    with server.connect() as conn, conn.cursor() as cur:
        for db in databases(conn):
            if db == "keeper" or db.startswith("keeper_"):
                cur.execute(f"SELECT id, member FROM `{db}`.attendance")
                out |= {(int(i), m) for i, m in cur.fetchall()}
    return out


def test_a_connected_application_is_refused_before_anything_moves(keeper, prod, cli):
    app = _app(prod)
    try:
        res = cli(*_args(keeper, prod, "--existing", "keep-aside"))
        assert res.code == 2 and "app@" in res.error["message"] and "keeper" in res.error["message"], res
        assert "--fence lock" in res.error["hint"], res
        with prod.connect() as conn:
            assert databases(conn) & {"keeper", "_restore_bot"} == {"keeper"}, "keep-aside ran before the fence"
            assert not [d for d in databases(conn) if d.startswith("keeper_")]
        assert _all_rows(prod) == {(1, "app-1"), (900, "app-900")}
    finally:
        app.close()


def test_fence_lock_keeps_the_application_out_for_the_whole_restore(keeper, prod, cli):
    app = _app(prod)
    seen: list[str] = []

    class Probe(NullHooks):
        """During the replay the application can neither stay connected nor log in."""

        def phase_started(self, phase: str, total) -> None:
            if phase == "replay":
                try:
                    _app(prod).close()
                    seen.append("logged in")
                except pymysql.err.OperationalError as exc:
                    seen.append(f"refused {exc.args[0]}")

    snapshots = api.read_snapshots([str(keeper["snap"])])
    source = api.open_binlogs(str(keeper["binlogs"]))
    plan = api.make_plan(snapshots, source)
    result = api.restore(plan, snapshots, source, prod.dsn, existing="keep-aside", fence="lock",
                            fence_users=["app"], hooks=Probe())
    assert result.ok
    assert seen == ["refused 4151"], seen       # ER_ACCOUNT_HAS_BEEN_LOCKED
    with pytest.raises(pymysql.err.OperationalError):
        app.ping(reconnect=False)                # its session was killed
    _app(prod).close()                           # unlocked again afterwards
    with prod.connect() as conn:
        assert checksums(conn, ["keeper"]) == keeper["before"]
        aside = result.kept_aside["keeper"]
        assert checksums(conn, [aside])[f"{aside}.attendance"][0] == 2
    assert {(1, "app-1"), (900, "app-900")} <= _all_rows(prod)


def test_fence_lock_without_accounts_or_with_the_restore_user_is_refused(keeper, prod, cli):
    res = cli(*_args(keeper, prod, "--fence", "lock"))
    assert res.code == 2 and "--fence-user" in res.error["hint"], res
    with pytest.raises(TargetError, match="own user"):
        snapshots = api.read_snapshots([str(keeper["snap"])])
        source = api.open_binlogs(str(keeper["binlogs"]))
        api.restore(api.make_plan(snapshots, source), snapshots, source, prod.dsn, fence="lock",
                       fence_users=["root"])


class _WriterDuringReplay(NullHooks):
    """The application connects after the fence check and commits rows while the replay runs,
    one of them with an id the binlog is about to insert (the seed's duplicate entry)."""

    def __init__(self, server: Sandbox) -> None:
        self.server = server
        self.committed: set[tuple[int, str]] = set()

    def phase_started(self, phase: str, total) -> None:
        if phase == "replay":
            with _app(self.server) as app, app.cursor() as cur:
                for row in [(1000 + i, f"app-late-{i}") for i in range(40)] + [(20, "app-20")]:
                    cur.execute("INSERT INTO attendance VALUES (%s, %s)", row)
                    self.committed.add(row)


def test_restart_after_a_writer_collided_loses_no_committed_row(keeper, prod, cli):
    prod_rows = _all_rows(prod)
    writer = _WriterDuringReplay(prod)
    snapshots = api.read_snapshots([str(keeper["snap"])])
    source = api.open_binlogs(str(keeper["binlogs"]))
    plan = api.make_plan(snapshots, source)
    with pytest.raises(ApplyError) as err:
        api.restore(plan, snapshots, source, prod.dsn, existing="keep-aside", fence="refuse", hooks=writer)
    assert "keeper.attendance" in str(err.value) and "'20'" in str(err.value), err.value
    hint = err.value.hint
    assert "--restart" in hint and "nothing is deleted" in hint, hint
    assert len(writer.committed) == 41

    # Follow the hint: the writer is stopped, then --restart.
    res = cli(*_args(keeper, prod, "--existing", "keep-aside", "--restart"))
    assert res.code == 0 and res.doc["ok"], res
    unfinished = res.doc["restore"]["unfinished_aside"]
    assert list(unfinished) == ["keeper"] and "__unfinished_" in unfinished["keeper"], res
    with prod.connect() as conn:
        assert checksums(conn, ["keeper"]) == keeper["before"]
    # Every row the application ever committed is still on the server.
    missing = (prod_rows | writer.committed) - _all_rows(prod)
    assert not missing, f"committed application rows lost: {sorted(missing)}"


def test_an_interrupted_load_is_set_aside_not_dropped(keeper, prod, cli):
    """A run killed during the load resumes at phase `prepared`: what the half-loaded database
    holds (here a row a writer added meanwhile) is moved aside before the load starts again."""

    class Killed(NullHooks):
        def phase_started(self, phase: str, total) -> None:
            if phase == "load":   # the load had created keeper when the run died; a writer used it
                with _app(prod, None) as app, app.cursor() as cur:
                    cur.execute("CREATE DATABASE keeper")
                    cur.execute("CREATE TABLE keeper.notes (id INT PRIMARY KEY)")
                    cur.execute("INSERT INTO keeper.notes VALUES (7)")
                raise KeyboardInterrupt

    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE keeper")
    snapshots = api.read_snapshots([str(keeper["snap"])])
    source = api.open_binlogs(str(keeper["binlogs"]))
    plan = api.make_plan(snapshots, source)
    with pytest.raises(KeyboardInterrupt):
        api.restore(plan, snapshots, source, prod.dsn, fence="refuse", hooks=Killed())
    res = cli(*_args(keeper, prod))
    assert res.code == 0 and res.doc["restore"]["resumed"], res
    moved = res.doc["restore"]["unfinished_aside"]["keeper"]
    with prod.connect() as conn, conn.cursor() as cur:
        assert checksums(conn, ["keeper"]) == keeper["before"]
        cur.execute(f"SELECT id FROM `{moved}`.notes")
        assert cur.fetchall() == ((7,),)
