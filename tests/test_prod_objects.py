"""Production restores bring back triggers, views and routines, not only tables (real servers)."""
from __future__ import annotations

import pytest

from handlers.presenter.results import prod_summary
from restore import api
from restore.errors import RestoreError
from restore.mysql.sandbox import Sandbox
from restore.prod import objects as prod_objects
from restore.prod.swap import ProdRestore
from tests.support.db import checksums
from tests.support.incident_factory import IncidentSpec, each

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server

SCHEMA = [
    "CREATE DATABASE club",
    "CREATE TABLE club.members (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40), tag VARCHAR(60))",
    "CREATE TABLE club.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE)",
    "CREATE TABLE club.stats (k VARCHAR(10) PRIMARY KEY, n INT)",
    "INSERT INTO club.stats VALUES ('joins', 0)",
    # a BEFORE trigger changes the row, an AFTER trigger writes another table of the schema
    "CREATE TRIGGER club.members_tag BEFORE INSERT ON club.members FOR EACH ROW SET NEW.tag = CONCAT('auto:', NEW.name)",
    "CREATE TRIGGER club.members_count AFTER INSERT ON club.members FOR EACH ROW UPDATE stats SET n = n + 1 WHERE k = 'joins'",
    # written with the schema's name: the server stores it qualified, the dump loads it into the shadow
    "CREATE VIEW club.busy AS SELECT m.name, COUNT(*) AS days FROM club.members m "
    "JOIN club.attendance a ON a.member = m.id GROUP BY m.name",
    "CREATE VIEW club.busiest AS SELECT name FROM club.busy WHERE days >= 7",   # a view on a view
    "CREATE PROCEDURE club.add_member(IN n VARCHAR(40)) INSERT INTO members (name) VALUES (n)",
    "CREATE FUNCTION club.member_count() RETURNS INT READS SQL DATA RETURN (SELECT COUNT(*) FROM members)",
]


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """A club database with triggers, views and routines, its dump, a day of writes, the DROP."""
    seen: dict = {}

    def look(cur) -> None:   # just before the disaster: what the view shows, the objects' definitions
        cur.execute("SELECT * FROM club.busy ORDER BY name")
        seen["busy"] = cur.fetchall()
        seen["objects"] = _definitions(cur, "club")
    inc = IncidentSpec(
        databases=("club",),
        schema=[*SCHEMA, "CALL club.add_member('김키퍼')", "INSERT INTO club.members (name) VALUES ('이해커'), ('박보안')"],
        traffic=[each("INSERT INTO club.attendance (member, day) VALUES (%s, %s)",
                      [(day % 3 + 1, f"2023-08-{day:02d}") for day in range(1, 21)]),
                 "INSERT INTO club.members (name) VALUES ('최신입')",   # the triggers fire
                 look],
        disaster=["DROP DATABASE club"]).build_on_new_source(tmp_path_factory.mktemp("prodobj"), "MIXED")
    snapshots = api.read_snapshots([str(inc.snapshot)])
    source = api.open_binlogs(str(inc.binlog_dir))
    plan = api.make_plan(snapshots, source)
    before = inc.before
    assert before["club.stats"][0] == 1 and before["club.members"][0] == 4
    return {"plan": plan, "snapshots": snapshots, "source": source, "before": before, "busy": seen["busy"],
            "objects": seen["objects"], "expected": {n: c for n, (_r, c) in before.items()}}


def _definitions(cur, db: str) -> dict[str, str]:
    """What the server holds of `db`'s triggers and routines: their bodies, as written."""
    cur.execute("SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s", (db,))
    out = {f"trigger {n}": body for n, body in cur.fetchall()}
    cur.execute("SELECT ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s", (db,))
    out.update({f"routine {n}": body for n, body in cur.fetchall()})
    cur.execute("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA=%s", (db,))
    out.update({f"view {n}": "" for (n,) in cur.fetchall()})
    return out


def _assert_club_works(prod: Sandbox, story) -> None:
    """The restored schema behaves like the one that was dropped: tables, triggers, views, routines."""
    with prod.connect() as conn, conn.cursor() as cur:
        assert checksums(conn, ["club"]) == story["before"]
        assert _definitions(cur, "club") == story["objects"]
        cur.execute("SELECT * FROM club.busy ORDER BY name")
        assert cur.fetchall() == story["busy"]
        cur.execute("SELECT * FROM club.busiest")
        assert len(cur.fetchall()) == 2
        cur.execute("SELECT club.member_count()")
        assert cur.fetchone()[0] == 4
        cur.execute("CALL club.add_member('정복구')")   # the procedure runs, the triggers fire on the live table
        cur.execute("SELECT tag FROM club.members WHERE name = '정복구'")
        assert cur.fetchone()[0] == "auto:정복구"
        cur.execute("SELECT n FROM club.stats WHERE k = 'joins'")
        assert cur.fetchone()[0] == 5   # 4 members joined before the disaster
        cur.execute("SHOW DATABASES LIKE 'club\\_\\_shadow%'")
        assert cur.fetchall() == ()
        cur.execute("SELECT COUNT(*) FROM information_schema.VIEWS WHERE VIEW_DEFINITION LIKE '%shadow%'")
        assert cur.fetchone()[0] == 0


def _app_schema(prod: Sandbox, *more: str) -> None:
    """Production after the disaster: the application recreated a table, with a trigger of its own."""
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE club")
        cur.execute("CREATE TABLE club.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE, note TEXT)")
        cur.execute("CREATE TRIGGER club.att_note BEFORE INSERT ON club.attendance FOR EACH ROW SET NEW.note = 'app'")
        for sql in more:
            cur.execute(sql)


def test_prod_restore_brings_back_triggers_views_and_routines(story):
    """The core incident: DROP DATABASE on production, nothing recreated since."""
    with Sandbox() as prod:
        outcome = ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o1",
                              expected=story["expected"]).run()
        _assert_club_works(prod, story)
    assert outcome.swapped
    assert outcome.objects == {"club": ["function member_count", "procedure add_member", "trigger members_count",
                                        "trigger members_tag", "view busiest", "view busy"]}
    assert "6 triggers, views and routines" in prod_summary(outcome), prod_summary(outcome)


def test_prod_restore_keeps_the_live_schemas_objects_aside(story):
    """The application recreated club with its own trigger, a view of the same name and a procedure of its own."""
    with Sandbox() as prod:
        _app_schema(prod, "CREATE VIEW club.busy AS SELECT member, COUNT(*) AS n FROM club.attendance GROUP BY member",
                    "CREATE PROCEDURE club.app_only() SELECT 1")
        with prod.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO club.attendance (member, day) VALUES (1, '2023-08-19'), (2, '2023-08-19')")
        outcome = ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o2",
                              expected=story["expected"]).run()
        with prod.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP PROCEDURE club.app_only")   # left in place, reported; not the restored copy's
            _assert_club_works(prod, story)
            # what the live schema held is aside: the table with its trigger, the view it replaced
            cur.execute("INSERT INTO club__before_o2.attendance (member, day) VALUES (3, '2023-08-20')")
            cur.execute("SELECT note FROM club__before_o2.attendance WHERE member = 3")
            assert cur.fetchone()[0] == "app"
            cur.execute("SELECT * FROM club__before_o2.busy ORDER BY member")
            assert cur.fetchall() == ((1, 1), (2, 1), (3, 1))
    assert outcome.kept_aside == {"club__before_o2": {"attendance": 2}}
    assert outcome.left_in_live == {"club": ["procedure app_only"]}
    summary = prod_summary(outcome)
    assert "procedure app_only" in summary and "club__before_o2" in summary, summary


def test_prod_restore_that_stopped_after_the_swap_finishes_on_a_rerun(story, monkeypatch):
    """The run dies between the RENAME and re-creating the objects: the live tables lack their
    triggers. The same job run again creates them and verifies; it does not rebuild or swap again."""
    real = prod_objects.create

    def dies(cur, obj, db):
        raise RuntimeError("killed")

    with Sandbox() as prod:
        monkeypatch.setattr(prod_objects, "create", dies)
        with pytest.raises(RuntimeError):
            ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o3",
                        expected=story["expected"]).run()
        with prod.connect() as conn, conn.cursor() as cur:
            assert checksums(conn, ["club"]) == story["before"]   # swapped ...
            cur.execute("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='club'")
            assert cur.fetchone()[0] == 0                            # ... but not finished
        monkeypatch.setattr(prod_objects, "create", real)

        def no_rebuild():
            raise AssertionError("a swapped restore must not be rebuilt")
        again = ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o3",
                            expected=story["expected"])
        monkeypatch.setattr(again, "_rebuild", no_rebuild)
        outcome = again.run()
        _assert_club_works(prod, story)
        assert outcome.swapped and len(outcome.objects["club"]) == 6


def test_prod_restore_names_an_object_it_cannot_create(story, monkeypatch):
    """A definition the target refuses stops the job with the object's name and the way on."""
    with Sandbox() as prod:
        real = prod_objects.create

        def refuses_busy(cur, obj, db):
            if obj.name == "busy":
                cur.execute("CREATE VIEW nonsense AS SELECT * FROM no_such_table")
            return real(cur, obj, db)
        monkeypatch.setattr(prod_objects, "create", refuses_busy)
        with pytest.raises(RestoreError) as err:
            ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o4",
                        expected=story["expected"]).run()
        assert "view busy" in str(err.value) and "club" in str(err.value), str(err.value)
        assert "run the job again" in err.value.hint
        monkeypatch.setattr(prod_objects, "create", real)   # the cause fixed: the same job finishes
        ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o4",
                    expected=story["expected"]).run()
        _assert_club_works(prod, story)


def test_prod_swap_that_fails_puts_the_live_triggers_back(story):
    """The swap drops the live tables' triggers before its RENAME; a RENAME that fails gives them back."""
    with Sandbox() as prod:
        _app_schema(prod, "SET GLOBAL lock_wait_timeout = 2", "CREATE TABLE club.notes (id INT PRIMARY KEY)")
        blocker = prod.connect()   # e.g. a backup holding a table lock
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLES club.notes READ")
        try:
            with pytest.raises(RestoreError) as err:
                ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o5",
                            expected=story["expected"]).run()
        finally:
            blocker.close()
        assert "1205" in str(err.value) and "triggers, dropped for the swap, are back" in str(err.value), str(err.value)
        with prod.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO club.attendance (member, day) VALUES (1, '2023-08-19')")
            cur.execute("SELECT note FROM club.attendance")
            assert cur.fetchall() == (("app",),)
        ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o5",
                    expected=story["expected"]).run()
        _assert_club_works(prod, story)


def test_prod_rerun_after_a_kill_before_the_rename_puts_the_live_triggers_back(story, monkeypatch):
    """Killed after dropping the live tables' triggers, before the RENAME: the rerun gives them back
    (their definitions were only in the shadow schema it rebuilds), then moves them aside with their table."""
    with Sandbox() as prod:
        _app_schema(prod)
        job = ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o6",
                          expected=story["expected"])
        real = job._keep_live_objects

        def keep_then_die(cur, db):
            real(cur, db)
            cur.execute("DROP TRIGGER club.att_note")   # what the swap does next, then the kill
            raise KeyboardInterrupt("killed")
        monkeypatch.setattr(job, "_keep_live_objects", keep_then_die)
        with pytest.raises(KeyboardInterrupt):
            job.run()
        ProdRestore(story["plan"], story["snapshots"], story["source"], prod.dsn, job_tag="o6",
                    expected=story["expected"]).run()
        _assert_club_works(prod, story)
        with prod.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO club__before_o6.attendance (member, day) VALUES (3, '2023-08-20')")
            cur.execute("SELECT note FROM club__before_o6.attendance")
            assert cur.fetchall() == (("app",),)
