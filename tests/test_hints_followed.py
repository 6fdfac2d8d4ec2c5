"""Every `next:` hint, followed as an operator would: nothing committed is lost, the result is exact.

Each test provokes one refusal or replay error through the CLI, does what its hint says (a
backup and a drop, a grant, the right dump and --restart, --stop-before, --fence lock, leaving
an option out) and checks the result with CHECKSUM TABLE, and that the rows somebody else
committed on the target are still somewhere on it (or in the backup the hint asked for).
"""
from __future__ import annotations

import subprocess

import pymysql
import pytest

from restore import api
from restore.hooks import NullHooks
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, databases, dump, restore_args, target_url
from tests.support.incident_factory import In, IncidentSpec, each, many
from tests.support.target_binlog import binlog_bytes

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server

MEMBERS = "CREATE TABLE club.members (id INT PRIMARY KEY, name VARCHAR(30))"


def _club(extra_schema=(), traffic=()) -> IncidentSpec:
    return IncidentSpec(
        databases=("club",),
        schema=["CREATE DATABASE club", MEMBERS, "CREATE TABLE club.extra (id INT PRIMARY KEY, note VARCHAR(30))",
                many("INSERT INTO club.members VALUES (%s, %s)", [(i, f"m{i}") for i in (1, 2, 3)]),
                *extra_schema],
        traffic=[*traffic,
                 each("INSERT INTO club.members VALUES (%s, %s)", [(i, f"m{i}") for i in range(4, 40)]),
                 each("INSERT INTO club.extra VALUES (%s, %s)", [(i, f"e{i}") for i in range(1, 20)])],
        disaster=["DROP DATABASE club"])


@pytest.fixture(scope="module")
def club(tmp_path_factory):
    """A ROW incident with two dumps taken at the same position: club.sql (whole) and
    partial.sql (without club.extra, which the binlog writes to)."""
    work = tmp_path_factory.mktemp("hints")
    with Sandbox(binlog=True, binlog_format="ROW") as source:
        partial = lambda cur: dump(source, work / "partial.sql", ["club"], ["--ignore-table=club.extra"])  # noqa: E731
        inc = _club(traffic=[partial]).build(source, work)
    inc.partial = work / "partial.sql"
    return inc


def _user(server: Sandbox, *grants: str) -> str:
    """A restore user `restorer` with these grants (besides its restored and state databases)."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS restorer@'%'")
        cur.execute("CREATE USER restorer@'%' IDENTIFIED BY 'pw'")
        cur.execute("GRANT ALL ON club.* TO restorer@'%'")
        cur.execute("GRANT ALL ON _restore_bot.* TO restorer@'%'")
        for grant in grants:
            cur.execute(f"GRANT {grant} ON *.* TO restorer@'%'")
    return f"mysql://restorer:pw@127.0.0.1:{server.port}"


@pytest.fixture
def users(target):
    yield target
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS restorer@'%'")
        cur.execute("DROP USER IF EXISTS app@'%'")


def _app_db(server: Sandbox, *, view: bool = False) -> dict:
    """The application recreated club after the disaster and wrote to it; its checksums."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE club")
        cur.execute(MEMBERS)
        cur.executemany("INSERT INTO club.members VALUES (%s, %s)", [(1, "app-1"), (900, "app-900")])
        if view:
            cur.execute("CREATE VIEW club.named AS SELECT name FROM club.members")
        cur.execute("CREATE USER IF NOT EXISTS app@'%' IDENTIFIED BY 'app-pw'")
        cur.execute("GRANT ALL ON club.* TO app@'%'")
        return checksums(conn, ["club"])


def test_keep_aside_refused_for_a_view_then_backup_and_drop_as_advised(club, users, cli, tmp_path):
    app_rows = _app_db(users, view=True)
    res = cli(*restore_args(club, users, "--existing", "keep-aside"))
    assert res.code == 2 and "view named" in res.error["message"] and "nothing was moved" in res.error["message"], res
    hint = res.error["hint"]
    assert "mariadb-dump" in hint and "--routines" in hint and "drop" in hint, hint
    with users.connect() as conn:
        assert checksums(conn, ["club"]) == app_rows, "the refusal changed the application's database"

    # Follow it: back the database up with the command the hint gives, drop it, run the same command.
    backup = tmp_path / "club-backup.sql"
    with open(backup, "wb") as fh:
        subprocess.run(["mariadb-dump", *users.client_args(), "--routines", "--triggers", "--events",
                        "--databases", "club"], stdout=fh, check=True)
    with users.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE club")
    res = cli(*restore_args(club, users, "--existing", "keep-aside"))
    assert res.code == 0 and res.doc["ok"], res
    with users.connect() as conn:
        assert checksums(conn, ["club"]) == club.before
    # Nothing lost: the backup holds the application's rows and its view.
    with Sandbox() as elsewhere:
        subprocess.run(["mariadb", *elsewhere.client_args()], stdin=open(backup, "rb"), check=True)
        with elsewhere.connect() as conn, conn.cursor() as cur:
            assert checksums(conn, ["club"]) == app_rows
            cur.execute("SELECT COUNT(*) FROM club.named")
            assert cur.fetchone()[0] == 2


def test_a_snapshot_lacking_a_table_then_the_right_dump_and_restart(club, target, cli):
    res = cli(*restore_args(club, target, snapshots=[club.partial]))
    assert res.code == 2 and "club.extra" in res.error["message"], res
    hint = res.error["hint"]
    assert "snapshot" in hint and "--restart" in hint and "nothing is deleted" in hint, hint
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM club.members")
        replayed = cur.fetchone()[0]

    # Follow it: the dump that holds every table, and --restart.
    res = cli(*restore_args(club, target, "--restart"))
    assert res.code == 0 and res.doc["ok"], res
    moved = res.doc["restore"]["unfinished_aside"]["club"]
    with target.connect() as conn, conn.cursor() as cur:
        assert checksums(conn, ["club"]) == club.before
        cur.execute(f"SELECT COUNT(*) FROM `{moved}`.members")
        assert cur.fetchone()[0] == replayed, "the first run's rows were not kept aside"


def test_a_user_without_binlog_replay_then_grant_and_resume(club, users, cli):
    dsn = _user(users, "SELECT", "PROCESS")
    res = cli(*restore_args(club, dsn))
    assert res.code == 2 and "refused binlog" in res.error["message"], res
    hint = res.error["hint"]
    assert "BINLOG REPLAY" in hint and "run the same command again" in hint, hint

    # Follow it: grant, then the same command resumes.
    with users.connect() as conn, conn.cursor() as cur:
        cur.execute("GRANT BINLOG REPLAY ON *.* TO restorer@'%'")
    res = cli(*restore_args(club, dsn))
    assert res.code == 0 and res.doc["ok"] and res.doc["restore"]["resumed"], res
    with users.connect() as conn:
        assert checksums(conn, ["club"]) == club.before


# -- a replay error of no known kind: fix the cause, or --stop-before it --------------------------------

@pytest.fixture(scope="module")
def club_fn(tmp_path_factory):
    """STATEMENT: one INSERT calls util.bonus(), a function of a database that is not restored."""
    at_stop: dict = {}
    spec = _club(
        extra_schema=["CREATE DATABASE util",
                      "CREATE FUNCTION util.bonus() RETURNS INT DETERMINISTIC RETURN 42"],
        traffic=[each("INSERT INTO club.members VALUES (%s, %s)", [(i, f"m{i}") for i in range(100, 110)]),
                 lambda cur: at_stop.update(checksums(cur.connection, ["club"])),
                 "INSERT INTO club.members VALUES (200, CONCAT('bonus-', util.bonus()))"])
    inc = spec.build_on_new_source(tmp_path_factory.mktemp("hints-fn"), "STATEMENT")
    inc.at_stop = at_stop
    return inc


def _bonus_error(club_fn, target, cli) -> str:
    res = cli(*restore_args(club_fn, target, "--batch", "5"))
    assert res.code == 2 and "util.bonus" in res.error["message"], res
    hint = res.error["hint"]
    assert "run the same command again" in hint and "--stop-before" in hint, hint
    return hint


def test_an_unknown_replay_error_then_fix_the_cause_and_resume(club_fn, target, cli):
    _bonus_error(club_fn, target, cli)
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE util")
        cur.execute("CREATE FUNCTION util.bonus() RETURNS INT DETERMINISTIC RETURN 42")
    res = cli(*restore_args(club_fn, target, "--batch", "5"))
    assert res.code == 0 and res.doc["ok"] and res.doc["restore"]["resumed"], res
    with target.connect() as conn:
        assert checksums(conn, ["club"]) == club_fn.before


def test_an_unknown_replay_error_then_stop_before_it(club_fn, target, cli):
    hint = _bonus_error(club_fn, target, cli)
    stop = hint.split("--stop-before ")[1].split()[0]
    extra = hint.split(f"--stop-before {stop}")[1].split("(")[0].split()   # the options the hint adds
    assert extra == ["--restart"], hint
    res = cli(*restore_args(club_fn, target, "--batch", "5", "--stop-before", stop, *extra))
    assert res.code == 0 and res.doc["ok"], res
    with target.connect() as conn:
        assert checksums(conn, ["club"]) == club_fn.at_stop
        # What the failed run had restored was moved aside, not dropped.
        assert [d for d in databases(conn) if d.startswith("club__unfinished_")], res


# -- writers, and the target's binlog ----------------------------------------------------------------------

def test_a_connected_application_then_fence_lock_on_the_command_line(club, users, cli):
    app_rows = _app_db(users)
    app = pymysql.connect(host="127.0.0.1", port=users.port, user="app", password="app-pw", database="club")
    try:
        res = cli(*restore_args(club, users, "--existing", "keep-aside"))
        assert res.code == 2 and "app@" in res.error["message"], res
        assert "--fence lock --fence-user APP_USER" in res.error["hint"], res

        res = cli(*restore_args(club, users, "--existing", "keep-aside", "--fence", "lock", "--fence-user", "app"))
        assert res.code == 0 and res.doc["ok"], res
    finally:
        app.close()
    aside = res.doc["restore"]["kept_aside"]["club"]
    with users.connect() as conn:
        assert checksums(conn, ["club"]) == club.before
        assert checksums(conn, [aside]) == {k.replace("club.", f"{aside}.", 1): v for k, v in app_rows.items()}
    # The application may log in again.
    pymysql.connect(host="127.0.0.1", port=users.port, user="app", password="app-pw", database="club").close()


@pytest.mark.parametrize("follow", ["grant", "leave it out"])
def test_no_target_binlog_refused_then_grant_or_leave_it_out(club, cli, follow):
    with Sandbox(binlog=True, binlog_format="ROW") as target:
        dsn = _user(target, "BINLOG REPLAY", "SELECT", "PROCESS")
        res = cli(*restore_args(club, dsn, "--no-target-binlog"))
        assert res.code == 2 and "sql_log_bin" in res.error["message"], res
        assert "BINLOG ADMIN" in res.error["hint"] and "leave --no-target-binlog out" in res.error["hint"], res
        grown_from = binlog_bytes(target)
        if follow == "grant":
            with target.connect() as conn, conn.cursor() as cur:
                cur.execute("GRANT BINLOG ADMIN ON *.* TO restorer@'%'")
            res = cli(*restore_args(club, dsn, "--no-target-binlog"))
        else:
            res = cli(*restore_args(club, dsn))
        assert res.code == 0 and res.doc["ok"], res
        with target.connect() as conn:
            assert checksums(conn, ["club"]) == club.before
        grown = binlog_bytes(target) - grown_from
        assert (grown < 10_000) if follow == "grant" else (grown > 10_000), grown


# -- a restore user that cannot see the other sessions ------------------------------------------------------

def test_a_user_without_process_then_grant_it_or_fence_lock(club, users, cli):
    """Without PROCESS the fence cannot see the application: refused. Following the hint with
    --fence lock alone must not leave the application's open session writing: also refused until
    the user may see and end other sessions; with the grants the hint names, the restore is exact."""
    _app_db(users)
    dsn = _user(users, "BINLOG REPLAY", "SELECT", "CREATE USER")
    with users.connect() as conn, conn.cursor() as cur:   # keep-aside creates club_before_restore_<time>
        cur.execute("GRANT ALL ON `club\\_%`.* TO restorer@'%'")
    app = pymysql.connect(host="127.0.0.1", port=users.port, user="app", password="app-pw", database="club",
                          autocommit=True)
    try:
        res = cli(*restore_args(club, dsn, "--existing", "keep-aside"))
        assert res.code == 2 and "cannot see the target's other sessions" in res.error["message"], res
        assert "PROCESS" in res.error["hint"] and "CONNECTION ADMIN" in res.error["hint"], res

        res = cli(*restore_args(club, dsn, "--existing", "keep-aside", "--fence", "lock", "--fence-user", "app"))
        assert res.code == 2, res
        assert "PROCESS" in res.error["hint"] and "CONNECTION ADMIN" in res.error["hint"], res
        app.ping(reconnect=False)   # untouched, and unlocked again:
        pymysql.connect(host="127.0.0.1", port=users.port, user="app", password="app-pw").close()
        with users.connect() as conn:
            assert "club" in databases(conn) and not [d for d in databases(conn) if d.startswith("club_")]

        with users.connect() as conn, conn.cursor() as cur:
            cur.execute("GRANT PROCESS, CONNECTION ADMIN ON *.* TO restorer@'%'")
        res = cli(*restore_args(club, dsn, "--existing", "keep-aside", "--fence", "lock", "--fence-user", "app"))
        assert res.code == 0 and res.doc["ok"], res
        with pytest.raises(pymysql.err.OperationalError):
            app.ping(reconnect=False)   # its session was ended for the restore
    finally:
        app.close()
    with users.connect() as conn:
        assert checksums(conn, ["club"]) == club.before
        aside = res.doc["restore"]["kept_aside"]["club"]
        assert checksums(conn, [aside])[f"{aside}.members"][0] == 2


def test_a_typo_in_fence_user_then_fix_it(club, users, cli):
    _app_db(users)
    res = cli(*restore_args(club, users, "--existing", "keep-aside", "--fence", "lock", "--fence-user", "apq"))
    assert res.code == 2 and "'apq'" in res.error["message"] and "nothing was locked" in res.error["message"], res
    assert "fence_users" in res.error["hint"] and "run the job again" in res.error["hint"], res
    res = cli(*restore_args(club, users, "--existing", "keep-aside", "--fence", "lock", "--fence-user", "app"))
    assert res.code == 0 and res.doc["ok"], res
    with users.connect() as conn:
        assert checksums(conn, ["club"]) == club.before
        aside = res.doc["restore"]["kept_aside"]["club"]
        assert checksums(conn, [aside])[f"{aside}.members"][0] == 2


# -- a run stopped while replayed temporary tables were open: only --restart can redo it -----------------

@pytest.fixture(scope="module")
def club_temp(tmp_path_factory):
    """MIXED, with a non-transactional table (every transaction then commits alone, with its
    checkpoint) and a temporary table that stays open across transactions."""
    spec = IncidentSpec(
        databases=("club",),
        schema=["CREATE DATABASE club", MEMBERS, "CREATE TABLE club.audit (id INT PRIMARY KEY) ENGINE=Aria TRANSACTIONAL=0",
                "INSERT INTO club.members VALUES (1, 'm1')"],
        traffic=[In("club", "CREATE TEMPORARY TABLE incoming (id INT, name VARCHAR(30))"),
                 In("club", "INSERT INTO incoming VALUES (2, 'm2'), (3, 'm3')"),
                 In("club", "INSERT INTO incoming VALUES (4, 'm4')"),
                 In("club", "INSERT INTO members SELECT * FROM incoming"),
                 In("club", "INSERT INTO audit SELECT id FROM incoming"),
                 In("club", "DROP TEMPORARY TABLE incoming"),
                 each("INSERT INTO club.members VALUES (%s, %s)", [(i, f"m{i}") for i in range(10, 20)])],
        disaster=["DROP DATABASE club"])
    return spec.build_on_new_source(tmp_path_factory.mktemp("hints-temp"), "MIXED")


def test_stopped_with_temporary_tables_open_then_restart(club_temp, target, cli):
    class StopWhileOpen(NullHooks):
        def progress(self, phase: str, done: int, total, where) -> None:
            if phase == "replay" and done == 2:   # the temporary table is created and filled, not yet used
                raise KeyboardInterrupt

    snapshots = api.read_snapshots([str(club_temp.snapshot)])
    source = api.open_binlogs(str(club_temp.binlog_dir))
    with pytest.raises(KeyboardInterrupt):
        api.restore(api.make_plan(snapshots, source), snapshots, source, target.dsn, hooks=StopWhileOpen())
    res = cli(*restore_args(club_temp, target))
    assert res.code == 2 and "temporary tables" in res.error["message"], res
    assert "--restart" in res.error["hint"] and "nothing is deleted" in res.error["hint"], res

    res = cli(*restore_args(club_temp, target, "--restart"))
    assert res.code == 0 and res.doc["ok"], res
    with target.connect() as conn:
        assert checksums(conn, ["club"]) == club_temp.before
        assert [d for d in databases(conn) if d.startswith("club__unfinished_")], "the first run's rows were dropped"
