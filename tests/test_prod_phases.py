"""A prod restore records its phases on the target and a rerun resumes from the record (real servers).

The job is killed at every phase boundary, once right before a phase's record is written (its
effect is done, the record does not say so) and once right after; the same job run again must
end exact: production equals the source before the disaster (CHECKSUM TABLE), with its trigger
and view, and what the application wrote since is aside with its own trigger. It must also not
redo what the record says is done (no rebuild once the shadow copy is recorded). A real SIGKILL
is sent at two points, and a rerun after a success on an empty production is recognised as done.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from restore import api
from restore.errors import TargetError
from restore.hooks import NullHooks
from restore.mysql.sandbox import Sandbox
from restore.prod import swap
from restore.prod.swap import ProdRestore
from restore.target import checkpoint
from tests.support.db import checksums, databases
from tests.support.incident_factory import IncidentSpec, each

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server

SCHEMA = [
    "CREATE DATABASE club",
    "CREATE TABLE club.members (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40), tag VARCHAR(60))",
    "CREATE TABLE club.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE)",
    "CREATE TRIGGER club.members_tag BEFORE INSERT ON club.members FOR EACH ROW SET NEW.tag = CONCAT('auto:', NEW.name)",
    "CREATE VIEW club.busy AS SELECT member, COUNT(*) AS days FROM club.attendance GROUP BY member",
    "INSERT INTO club.members (name) VALUES ('김키퍼'), ('이해커'), ('박보안')",
]


# A club database with a trigger and a view, its dump, a day of writes, the DROP.
CLUB = IncidentSpec(
    databases=("club",), schema=SCHEMA,
    traffic=[each("INSERT INTO club.attendance (member, day) VALUES (%s, %s)",
                  [(day % 3 + 1, f"2023-08-{day:02d}") for day in range(1, 16)]),
             "INSERT INTO club.members (name) VALUES ('최신입')"],
    disaster=["DROP DATABASE club"])


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    inc = CLUB.build_on_new_source(tmp_path_factory.mktemp("prodphases"), "MIXED")
    planned = api.plan(api.PlanInput([str(inc.snapshot)], str(inc.binlog_dir)))
    return {"planned": planned, "before": inc.before, "snap": inc.snapshot, "binlogs": inc.binlog_dir,
            "expected": {n: c for n, (_r, c) in inc.before.items()}}


def _app_writes(prod: Sandbox) -> None:
    """The application kept running after the disaster: its own club.attendance, trigger and rows."""
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE club")
        cur.execute("CREATE TABLE club.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE, note TEXT)")
        cur.execute("CREATE TRIGGER club.att_note BEFORE INSERT ON club.attendance FOR EACH ROW SET NEW.note = 'app'")
        cur.execute("INSERT INTO club.attendance (member, day) VALUES (1, '2023-08-19'), (2, '2023-08-19')")


class Phases(NullHooks):
    def __init__(self) -> None:
        self.started: list[str] = []

    def phase_started(self, phase: str, total: int | None) -> None:
        self.started.append(phase)


def _job(story, prod: Sandbox, tag: str, hooks=None) -> ProdRestore:
    p = story["planned"]
    return ProdRestore(p.plan, p.snapshots, p.source, prod.dsn, job_tag=tag, expected=story["expected"], hooks=hooks)


def _assert_exact(prod: Sandbox, story, tag: str) -> None:
    aside = f"club__before_{tag}"
    with prod.connect() as conn, conn.cursor() as cur:
        assert checksums(conn, ["club"]) == story["before"]
        cur.execute("INSERT INTO club.members (name) VALUES ('정복구')")   # the restored trigger fires
        cur.execute("SELECT tag FROM club.members WHERE name = '정복구'")
        assert cur.fetchone()[0] == "auto:정복구"
        cur.execute("DELETE FROM club.members WHERE name = '정복구'")
        cur.execute("SELECT SUM(days) FROM club.busy")
        assert cur.fetchone()[0] == 15
        assert {n: r for n, (r, _c) in checksums(conn, [aside]).items()} == {f"{aside}.attendance": 2}
        cur.execute(f"INSERT INTO {aside}.attendance (member, day) VALUES (3, '2023-08-20')")
        cur.execute(f"SELECT note FROM {aside}.attendance WHERE member = 3")
        assert cur.fetchone()[0] == "app"   # the application's trigger went aside with its table
        assert not [d for d in databases(conn) if "__shadow_" in d]
        assert checkpoint.load_prod(conn, tag).phase == "verified"


class Killed(BaseException):
    """The process dies: nothing may catch it (it is not an Exception)."""


# (phase, "before": the phase's effect is done but not recorded | "after": recorded, then killed)
BOUNDARIES = [(p, w) for p in checkpoint.PROD_PHASES for w in ("before", "after")
              if (p, w) != ("swapping", "before")]   # nothing happens between "shadowed" and "swapping"
# What the rerun must not run again, by the phase the killed run had recorded.
NOT_AGAIN = {"shadowed": {"rebuild", "shadow"}, "swapping": {"rebuild", "shadow"},
             "renamed": {"rebuild", "shadow"}, "swapped": {"rebuild", "shadow", "swap"},
             "verified": {"fence", "rebuild", "shadow", "swap", "verify"}}


@pytest.mark.parametrize("phase,when", BOUNDARIES, ids=[f"{w}-{p}" for p, w in BOUNDARIES])
def test_a_prod_restore_killed_at_a_phase_boundary_resumes_from_the_record(story, monkeypatch, phase, when):
    tag = "k1"
    real = checkpoint.record_prod

    def dies(conn, record):
        if record.phase == phase and when == "before":
            raise Killed(f"killed before recording {phase}")
        real(conn, record)
        if record.phase == phase:
            raise Killed(f"killed after recording {phase}")

    with Sandbox() as prod:
        _app_writes(prod)
        monkeypatch.setattr(swap.checkpoint, "record_prod", dies)
        with pytest.raises(Killed):
            _job(story, prod, tag).run()
        monkeypatch.setattr(swap.checkpoint, "record_prod", real)
        with prod.connect() as conn:
            recorded = checkpoint.load_prod(conn, tag)
        index = checkpoint.PROD_PHASES.index(phase)
        expect = phase if when == "after" else (checkpoint.PROD_PHASES[index - 1] if index else None)
        assert (recorded.phase if recorded else None) == expect
        hooks = Phases()
        outcome = _job(story, prod, tag, hooks).run()
        _assert_exact(prod, story, tag)
    assert outcome.swapped and outcome.kept_aside == {f"club__before_{tag}": {"attendance": 2}}
    assert outcome.objects == {"club": ["trigger members_tag", "view busy"]}
    again = NOT_AGAIN.get(expect, set()) & set(hooks.started)
    assert not again, f"resumed from {expect} but ran {sorted(again)} again ({hooks.started})"


def test_a_rerun_after_success_on_an_empty_production_is_done(story, monkeypatch):
    """The known case: production was empty (DROP DATABASE, nothing recreated); the job swapped and
    verified, then ran again (a worker restarted before marking it done). It must not rebuild,
    nor move the restored tables aside as if they were the application's."""
    with Sandbox() as prod:
        first = _job(story, prod, "e1").run()
        assert first.kept_aside == {}
        again = _job(story, prod, "e1", Phases())

        def no_rebuild():
            raise AssertionError("a verified prod job must not be rebuilt")
        monkeypatch.setattr(again, "_rebuild", no_rebuild)
        outcome = again.run()
        with prod.connect() as conn:
            assert checksums(conn, ["club"]) == story["before"]
            assert not [d for d in databases(conn) if d.startswith("club__")], databases(conn)
    assert again.hooks.started == [] and outcome.to_dict() == first.to_dict()


def test_another_plans_record_is_not_resumed(story):
    """A job's record names its plan: the same job tag with another plan is refused, not mixed."""
    with Sandbox() as prod:
        with prod.connect() as conn:
            checkpoint.record_prod(conn, checkpoint.ProdRecord("x1", "shadowed", ["club"], {"plan_id": "other"}))
        with pytest.raises(TargetError) as err:
            _job(story, prod, "x1").run()
        assert "prod job x1 for plan other" in str(err.value), str(err.value)
        with prod.connect() as conn:
            assert "club" not in databases(conn)


CHILD = textwrap.dedent("""
    import os, signal, sys
    from restore import api
    from restore.prod.swap import ProdRestore
    from restore.mysql.dsn import Dsn
    from restore.target import checkpoint
    import restore.prod.swap as swap

    snap, binlogs, url, tag, phase, expected = sys.argv[1:7]
    planned = api.plan(api.PlanInput([snap], binlogs))
    real = checkpoint.record_prod

    def record(conn, rec):
        real(conn, rec)
        if rec.phase == phase:
            os.kill(os.getpid(), signal.SIGKILL)
    swap.checkpoint.record_prod = record
    import json
    ProdRestore(planned.plan, planned.snapshots, planned.source, Dsn.parse(url), job_tag=tag,
                expected=json.loads(expected)).run()
""")


@pytest.mark.parametrize("phase", ["rebuilt", "renamed"])
def test_a_prod_restore_sigkilled_resumes_from_the_record(story, tmp_path, phase):
    import json

    from tests.support.db import target_url
    with Sandbox() as prod:
        _app_writes(prod)
        child = subprocess.run([sys.executable, "-c", CHILD, str(story["snap"]), str(story["binlogs"]),
                                target_url(prod), "s1", phase, json.dumps(story["expected"])],
                               capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[1])
        assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
        api.sweep()   # what the killed process left in the temp dir (its rebuild sandbox's datadir)
        with prod.connect() as conn:
            assert checkpoint.load_prod(conn, "s1").phase == phase
        hooks = Phases()
        _job(story, prod, "s1", hooks).run()
        _assert_exact(prod, story, "s1")
    assert ("rebuild" in hooks.started) == (phase == "rebuilt"), hooks.started
