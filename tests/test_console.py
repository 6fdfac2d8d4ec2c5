"""`restore-bot console`: plan, stage and prod (with a second operator's approval) in a terminal."""
from __future__ import annotations

import io

from rich.console import Console

from bot.config import load_settings
from bot.console import ConsoleSession, OpenAccess
from bot.jobstore import JobStore
from conftest import checksums, copy_binlogs, dump
from restore.sandbox import Sandbox


def test_console_plan_stage_prod(tmp_path):
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(60))")
            cur.execute("INSERT INTO club.posts (title) VALUES ('환영합니다 👋')")
        snap = dump(src, tmp_path / "club.sql", ["club"])
        with src.connect() as conn, conn.cursor() as cur:
            for i in range(30):
                cur.execute("INSERT INTO club.posts (title) VALUES (%s)", (f"글 {i}",))
            before = checksums(conn, ["club"])
            cur.execute("DROP DATABASE club")
        binlogs = copy_binlogs(src, tmp_path / "binlogs")

    with Sandbox() as prod:
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
        answers = iter(["kim"])  # the second operator's name at the approval prompt
        session = ConsoleSession(settings, JobStore(settings.store_path), OpenAccess(), user="lee",
                                 console=Console(file=out, width=200), ask=lambda prompt: next(answers))
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
            assert checksums(conn, ["club"]) == before
