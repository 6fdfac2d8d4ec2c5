"""Keep: `/backup now` takes a consistent snapshot; `/restore drill` proves snapshot + archive restore."""
from __future__ import annotations

import threading
import time

from bot.config import load_settings
from bot.jobstore import FINISHED, JobStore
from bot.worker import Worker
from conftest import checksums
from handlers.backup import BackupHandler
from handlers.restore import RestoreHandler
from restore.archiver import Archiver
from restore.sandbox import Sandbox
from test_handlers import Access, Recorder


def _wait(store: JobStore, job_id: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job.state in FINISHED:
            return job
        time.sleep(0.2)
    return store.get(job_id)


def test_backup_now_list_and_drill(tmp_path):
    with Sandbox(binlog=True, binlog_format="MIXED") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(40), at DATETIME)")
            cur.execute("INSERT INTO club.posts (title, at) VALUES ('첫 글', NOW())")
        config = tmp_path / "restore-bot.toml"
        config.write_text(f"""
[watch]
source = "{src.url}"
databases = ["club"]
[keep]
backup_dir = "backups"
archive_dir = "archive"
[store]
path = "jobs.sqlite3"
""")
        settings = load_settings(str(config), env={})
        store = JobStore(settings.store_path)
        worker = Worker(settings, store)
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        try:
            backups = BackupHandler(store, Access(), settings.keep, channel=None)
            rec = Recorder()
            refused = backups.handle("now", "USTRANGER", rec)
            assert refused is None and "operator list" in rec.private[0]
            job = backups.handle("/backup now", "UOPS1", Recorder())
            job = _wait(store, job.id)
            assert job.state == "succeeded", job.error
            listing = Recorder()
            backups.handle("list", "USTRANGER", listing)
            assert "club" in listing.private[0] and "starts at binlog.000001:" in listing.private[0]

            with src.connect() as conn, conn.cursor() as cur:  # traffic after the backup
                for i in range(40):
                    cur.execute("INSERT INTO club.posts (title, at) VALUES (%s, NOW())", (f"글 {i}",))
                    if i == 20:
                        cur.execute("FLUSH BINARY LOGS")
                before = checksums(conn, ["club"])
            Archiver(src.dsn, settings.keep.archive_dir).copy()

            handler = RestoreHandler(store, Access(), channel=None, has_prod=False)
            from bot.commands import parse
            drill = handler.handle(parse("drill", "UOPS1"), Recorder())
            drill = _wait(store, drill.id)
        finally:
            worker.stopping.set()
    assert drill.state == "succeeded", drill.error
    tables = drill.result["restore"]["verification"]["tables"]
    assert {n: (t["rows"], t["checksum"]) for n, t in tables.items()} == before
    assert "Drill from" in drill.result["summary"]
