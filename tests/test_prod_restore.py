"""Production restores: fenced, rebuilt in a shadow schema, swapped in atomically, nothing dropped."""
from __future__ import annotations

import pymysql
import pytest

from conftest import checksums, copy_binlogs, dump
from restore import engine
from restore.errors import TargetError
from restore.prod import ProdRestore
from restore.sandbox import Sandbox


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """A club database, its dump, a day of writes, the DROP, and the app writing afterwards."""
    work = tmp_path_factory.mktemp("prod")
    with Sandbox(binlog=True, binlog_format="MIXED") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.members (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40))")
            cur.execute("CREATE TABLE club.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE, "
                        "UNIQUE KEY one_per_day (member, day))")
            cur.execute("INSERT INTO club.members (name) VALUES ('김키퍼'), ('이해커'), ('박보안')")
        snap = dump(src, work / "club.sql", ["club"])
        with src.connect() as conn, conn.cursor() as cur:
            for day in range(1, 21):
                cur.execute("INSERT INTO club.attendance (member, day) VALUES (%s, %s)", (day % 3 + 1, f"2023-08-{day:02d}"))
            cur.execute("UPDATE club.members SET name = CONCAT(name, ' 🎉') WHERE id = 2")
            before = checksums(conn, ["club"])
            cur.execute("DROP DATABASE club")
        binlogs = copy_binlogs(src, work / "binlogs")
    snapshots = engine.read_snapshots([str(snap)])
    source = engine.open_binlogs(str(binlogs))
    plan = engine.make_plan(snapshots, source)
    return {"plan": plan, "snapshots": snapshots, "source": source, "before": before}


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
    assert "2 rows the application wrote" in outcome.summary()


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


def test_prod_lock_mode_locks_the_app_out_and_back_in(story):
    with Sandbox() as prod:
        _prod_with_app_writes(prod)
        with prod.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE USER app@'%' IDENTIFIED BY 'apppw'")
            cur.execute("GRANT ALL ON club.* TO app@'%'")
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
