"""`restore-bot console`: plan, stage and prod (with a second operator's approval) in a terminal."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from bot.config import load_settings
from bot.console import ConsoleSession, OpenAccess
from handlers.jobstore import JobStore
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums
from tests.support.incident_factory import IncidentSpec, club_posts, each, many

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


def _session(tmp_path, snap, binlogs, prod, *, ask) -> tuple[ConsoleSession, io.StringIO]:
    """A console session as user "lee" over a config with these snapshots and binlogs and a prod
    target; `ask` answers the approval prompt; what it prints goes to the StringIO."""
    config = tmp_path / "restore-bot.toml"
    config.write_text(f"""
[source]
snapshots = ["{snap}"]
binlogs = "{binlogs}"
[targets.prod]
dsn = "mysql://root@127.0.0.1:{prod.port}?unix_socket={prod.socket}"
[store]
path = "{tmp_path / 'jobs.sqlite3'}"
""")
    settings = load_settings(str(config), env={})
    out = io.StringIO()
    return ConsoleSession(settings, JobStore(settings.store_path), OpenAccess(), user="lee",
                          console=Console(file=out, width=400), ask=ask), out


def test_console_plan_stage_prod(tmp_path):
    inc = club_posts(30).build_on_new_source(tmp_path)

    with Sandbox() as prod:
        answers = iter(["kim"])  # the second operator's name at the approval prompt
        session, out = _session(tmp_path, inc.snapshot, inc.binlog_dir, prod, ask=lambda prompt: next(answers))
        with session:
            plan = session.wait(session.run_line("plan"), timeout=120)
            stage = session.wait(session.run_line("stage"), timeout=120)
            prod_job = session.run_line("prod")
            prod_job = session.wait(prod_job, timeout=180)
            session.run_line("history")
        text = out.getvalue()
        assert plan.state == "succeeded" and "DROP DATABASE club" in plan.result["summary"], text
        assert stage.state == "succeeded", (stage.error, text)
        assert prod_job.state == "succeeded", (prod_job.error, text)
        assert prod_job.requester == "lee" and prod_job.approver == "kim"
        assert "succeeded" in text and "approved prod" in text
        with prod.connect() as conn:
            assert checksums(conn, ["club"]) == inc.before


def test_console_lists_the_candidates_and_takes_stop_and_skip(tmp_path):
    """Issue 10: the console prints a plan's candidates (GTID, file:pos, severity, the stop) and
    takes the typed forms: `plan skip=GTID` skips a mistaken TRUNCATE and stops at the DROP after
    it; stage and prod with the same `skip=` verify and restore that plan (the same plan id)."""
    inc = IncidentSpec(
        databases=("club",),
        schema=["CREATE DATABASE club",
                "CREATE TABLE club.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(60))",
                "CREATE TABLE club.log (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(60))",
                many("INSERT INTO club.log (msg) VALUES (%s)", [(f"entry {i}",) for i in range(12)])],
        traffic=["TRUNCATE TABLE club.log",          # a mistake: everything after it must be kept
                 each("INSERT INTO club.posts (title) VALUES (%s)", [(f"글 {i}",) for i in range(20)])],
        disaster=["DROP DATABASE club"],
    ).build_on_new_source(tmp_path)
    posts = inc.before["club.posts"]

    with Sandbox() as prod:
        session, out = _session(tmp_path, inc.snapshot, inc.binlog_dir, prod, ask=lambda prompt: "kim")
        with session:
            first = session.wait(session.run_line("plan"), timeout=120)
            listing = out.getvalue()
            truncate, drop = (next(c for c in first.result["plan"]["candidates"] if what in c["reason"])
                              for what in ("TRUNCATE", "DROP DATABASE"))
            chosen = session.wait(session.run_line(f"plan skip={truncate['gtid']}"), timeout=120)
            stage = session.wait(session.run_line(f"stage skip={truncate['gtid']}"), timeout=120)
            refused = session.run_line("prod")                # not the plan stage verified
            prod_job = session.wait(session.run_line(f"prod skip={truncate['gtid']}"), timeout=180)
        text = out.getvalue()
        with prod.connect() as conn:
            restored = checksums(conn, ["club"])
    assert truncate["chosen"] and not drop["chosen"]
    for cand in (truncate, drop):   # one a line, with what `stop=` / `skip=` take
        line = next(l for l in listing.splitlines() if f"{cand['file']}:{cand['pos']}" in l)
        assert "certain" in line and f"GTID {cand['gtid']}" in line, line
    assert "the stop" in next(l for l in listing.splitlines() if f"{truncate['file']}:{truncate['pos']}" in l)
    assert "plan stop=SPEC or skip=SPEC" in listing
    plan = chosen.result["plan"]
    assert [s["gtid"] for s in plan["skips"]] == [truncate["gtid"]] and plan["stop"]["gtid"] == drop["gtid"]
    assert stage.state == "succeeded" and stage.plan_id == plan["plan_id"], (stage.error, text)
    assert refused is None and "no stage run that verified OK" in text
    assert prod_job.state == "succeeded" and prod_job.plan_id == plan["plan_id"], (prod_job.error, text)
    assert restored["club.posts"] == posts and restored["club.log"][0] == 12   # the TRUNCATE was skipped
