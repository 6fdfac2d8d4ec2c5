"""Production restores: fenced, rebuilt in a shadow schema, swapped in atomically, nothing dropped."""
from __future__ import annotations

import pymysql
import pytest

from handlers.presenter.results import prod_summary
from restore import api
from restore.errors import TargetError
from restore.mysql.sandbox import Sandbox
from restore.prod.swap import ProdRestore
from tests.support.db import checksums
from tests.support.incident_factory import IncidentSpec, each

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


# A club database, its dump, a day of writes, the DROP (the application writes afterwards: per test).
CLUB = IncidentSpec(
    databases=("club",),
    schema=["CREATE DATABASE club",
            "CREATE TABLE club.members (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40))",
            "CREATE TABLE club.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE, "
            "UNIQUE KEY one_per_day (member, day))",
            "INSERT INTO club.members (name) VALUES ('김키퍼'), ('이해커'), ('박보안')"],
    traffic=[each("INSERT INTO club.attendance (member, day) VALUES (%s, %s)",
                  [(day % 3 + 1, f"2023-08-{day:02d}") for day in range(1, 21)]),
             "UPDATE club.members SET name = CONCAT(name, ' 🎉') WHERE id = 2"],
    disaster=["DROP DATABASE club"])


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    inc = CLUB.build_on_new_source(tmp_path_factory.mktemp("prod"), "MIXED")
    snapshots = api.read_snapshots([str(inc.snapshot)])
    source = api.open_binlogs(str(inc.binlog_dir))
    plan = api.make_plan(snapshots, source)
    return {"plan": plan, "snapshots": snapshots, "source": source, "before": inc.before}


def _prod_with_app_writes(prod: Sandbox) -> None:
    """The application kept running on prod: it recreated its table and wrote to it."""
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE club")
        cur.execute("CREATE TABLE club.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE)")
        cur.execute("INSERT INTO club.attendance (member, day) VALUES (1, '2023-08-19'), (2, '2023-08-19')")


def _expected(story) -> dict[str, int]:
    return {name: c for name, (_rows, c) in story["before"].items()}


def test_prod_swaps_in_and_keeps_the_app_writes(story):
    with Sandbox() as prod:
        _prod_with_app_writes(prod)
        outcome = ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="r7",
                              expected=_expected(story)).run()
        with prod.connect() as conn:
            assert checksums(conn, ["club"]) == story["before"]
            assert checksums(conn, ["club__before_r7"])["club__before_r7.attendance"][0] == 2
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES LIKE 'club__shadow%'")
                assert cur.fetchall() == ()
    assert outcome.swapped
    assert outcome.kept_aside == {"club__before_r7": {"attendance": 2}}
    assert "2 rows the application wrote" in prod_summary(outcome)


def test_prod_refuses_while_a_writer_is_connected(story):
    with Sandbox() as prod:
        _prod_with_app_writes(prod)
        app = pymysql.connect(unix_socket=str(prod.socket), user="root", database="club")
        try:
            with pytest.raises(TargetError) as err:
                ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="r8").run()
            assert "database club" in str(err.value) and "connection" in str(err.value)
            assert "stop the application" in err.value.hint
        finally:
            app.close()
        with prod.connect() as conn:  # nothing touched
            assert checksums(conn, ["club"])["club.attendance"][0] == 2
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES LIKE 'club\\_\\_%'")
                assert cur.fetchall() == ()


def _app_account(prod: Sandbox, *statements: str) -> None:
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER app@'%' IDENTIFIED BY 'apppw'")
        for sql in statements:
            cur.execute(sql)


def test_prod_lock_mode_locks_the_app_out_and_back_in(story):
    with Sandbox() as prod:
        _prod_with_app_writes(prod)
        _app_account(prod, "GRANT ALL ON club.* TO app@'%'")
        app = pymysql.connect(host="127.0.0.1", port=prod.port, user="app", password="apppw", database="club")
        ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="r9",
                    fence="lock", fence_users=["app"], expected=_expected(story)).run()
        with pytest.raises(pymysql.err.OperationalError):
            with app.cursor() as cur:  # its session was killed for the swap
                cur.execute("SELECT 1")
        again = pymysql.connect(host="127.0.0.1", port=prod.port, user="app", password="apppw", database="club")
        again.close()  # unlocked afterwards
        with prod.connect() as conn:
            assert checksums(conn, ["club"]) == story["before"]


def test_prod_refuses_a_result_that_differs_from_stage(story):
    wrong = {name: 1 for name in _expected(story)}
    with Sandbox() as prod:
        with pytest.raises(Exception) as err:
            ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="r10",
                        expected=wrong).run()
        assert "stage run's checksums" in str(err.value)
        with prod.connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE 'club%'")
            assert cur.fetchall() == ()


def _app_can_log_in(prod: Sandbox) -> bool:
    try:
        pymysql.connect(host="127.0.0.1", port=prod.port, user="app", password="apppw").close()
        return True
    except pymysql.err.OperationalError:
        return False


def test_account_lock_failing_half_way_unlocks_what_it_locked():
    """ACCOUNT LOCK of a role fails after app@'%' is locked: app must be unlocked again."""
    from restore.target.fence import AccountLock
    with Sandbox() as prod:
        _app_account(prod, "CREATE ROLE approle")   # a role is listed in mysql.user, but ALTER USER refuses it
        with prod.connect() as conn:
            with pytest.raises(TargetError) as err:
                with AccountLock(conn, ["app", "approle"]):
                    pytest.fail("the swap must not run when the fence could not lock every account")
        message = str(err.value)
        assert "'approle'@''" in message and "'app'@'%'" in message and "unlocked again" in message, message
        assert "fence_users" in err.value.hint
        assert _app_can_log_in(prod), "the application stayed locked out after the fence failed"
        with prod.connect() as conn:  # a name without an account is refused before anything is locked
            with pytest.raises(TargetError) as err:
                with AccountLock(conn, ["app", "nosuch"]):
                    pytest.fail("not reached")
        assert "'nosuch'" in str(err.value) and "nothing was locked" in str(err.value)
        assert _app_can_log_in(prod)


def test_prod_swap_that_failed_half_way_can_be_run_again(story):
    """The RENAME times out on a lock after the aside schema was created; the same job then runs again."""
    with Sandbox() as prod:
        _prod_with_app_writes(prod)
        _app_account(prod, "SET GLOBAL lock_wait_timeout = 2")
        blocker = prod.connect()   # e.g. a backup holding a table lock (not an application account)
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLES club.attendance READ")
        try:
            with pytest.raises(TargetError) as err:
                ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="r11",
                            fence="lock", fence_users=["app"], expected=_expected(story)).run()
            assert "RENAME TABLE" in str(err.value) and "1205" in str(err.value), str(err.value)
            assert "run the job again" in err.value.hint
        finally:
            blocker.close()
        assert _app_can_log_in(prod)
        with prod.connect() as conn:
            assert checksums(conn, ["club"])["club.attendance"][0] == 2   # live tables untouched
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES LIKE 'club\\_\\_before\\_r11'")
                assert cur.fetchall() == (("club__before_r11",),)   # what the failed run left
        outcome = ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="r11",
                              fence="lock", fence_users=["app"], expected=_expected(story)).run()
        assert outcome.swapped and outcome.kept_aside == {"club__before_r11": {"attendance": 2}}
        with prod.connect() as conn:
            assert checksums(conn, ["club"]) == story["before"]
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES LIKE 'club\\_\\_shadow%'")
                assert cur.fetchall() == ()
        again = ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="r11",
                            fence="lock", fence_users=["app"], expected=_expected(story)).run()
        assert again.swapped and again.kept_aside == outcome.kept_aside   # recognised: verified only


def test_prod_refuses_an_aside_schema_that_holds_something_else(story):
    with Sandbox() as prod:
        _prod_with_app_writes(prod)
        with prod.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club__before_r12")
            cur.execute("CREATE TABLE club__before_r12.notes (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO club__before_r12.notes VALUES (1)")
        with pytest.raises(TargetError) as err:
            ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="r12",
                        expected=_expected(story)).run()
        assert "club__before_r12 already holds notes" in str(err.value), str(err.value)
        assert "nothing was swapped or dropped" in str(err.value)
        with prod.connect() as conn:
            assert checksums(conn, ["club"])["club.attendance"][0] == 2
            assert checksums(conn, ["club__before_r12"])["club__before_r12.notes"][0] == 1
