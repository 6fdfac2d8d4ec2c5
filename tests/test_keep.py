"""Keep: `/backup now` takes a consistent snapshot; `/restore drill` proves snapshot + archive restore."""
from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import pytest

from bot.config import load_settings
from bot.worker import Worker
from handlers.backup import BackupHandler
from handlers.dispatcher import Dispatcher
from handlers.jobstore import FINISHED, JobStore
from handlers.restore import RestoreHandler
from restore.live.archiver import Archiver
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums
from tests.support.handler_doubles import Access, Recorder


def _typed(app: Dispatcher, text: str, user: str) -> Recorder:
    rec = Recorder()
    app.text(text, user, "console", rec)
    return rec


def _wait(store: JobStore, job_id: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job.state in FINISHED:
            return job
        time.sleep(0.2)
    return store.get(job_id)


@pytest.mark.mysql
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
            app = Dispatcher(store, Access(), [BackupHandler(store, settings.keep, channel=None),
                                               RestoreHandler(store, Access(), channel=None, has_prod=False)])
            rec = _typed(app, "backup now", "USTRANGER")
            assert rec.job is None and "operator list" in rec.private[0] and store.jobs() == []
            rec = _typed(app, "/backup now", "UOPS1")
            assert rec.private == [f"Backup job {rec.job.id} queued."]
            job = _wait(store, rec.job.id)
            assert job.state == "succeeded", job.error
            listing = _typed(app, "backup list", "USTRANGER")
            assert "club" in listing.private[0] and "starts at binlog.000001:" in listing.private[0]

            with src.connect() as conn, conn.cursor() as cur:  # traffic after the backup
                for i in range(40):
                    cur.execute("INSERT INTO club.posts (title, at) VALUES (%s, NOW())", (f"글 {i}",))
                    if i == 20:
                        cur.execute("FLUSH BINARY LOGS")
                before = checksums(conn, ["club"])
            Archiver(src.dsn, settings.keep.archive_dir).copy()

            drill = _wait(store, _typed(app, "drill", "UOPS1").job.id)
        finally:
            worker.stopping.set()
    assert drill.state == "succeeded", drill.error
    tables = drill.result["restore"]["verification"]["tables"]
    assert {n: (t["rows"], t["checksum"]) for n, t in tables.items()} == before
    assert "Drill from" in drill.result["summary"]


def _dump_text(db: str, pos: int) -> str:
    """What read_snapshot needs of a mariadb-dump file: header, coordinates, a table, the end line."""
    return (f"-- MariaDB dump 10.19  Distrib 11.4.2-MariaDB\n"
            f"-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS={pos};\n"
            f"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{db}`;\nUSE `{db}`;\n"
            "CREATE TABLE `posts` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n"
            "INSERT INTO `posts` VALUES (1),(2);\n-- Dump completed on 2026-01-07 10:00:00\n")


def _two_dumps(tmp_path, *, damaged: str):
    """A backup dir with an older and a newer dump, the one named `damaged` cut off halfway."""
    backups = tmp_path / "backups"
    backups.mkdir()
    for name, age in (("older", 7200), ("newer", 60)):
        path = backups / f"{name}-club.sql"
        text = _dump_text("club", 400 + age)
        path.write_text(text[:len(text) // 2] if name == damaged else text)
        os.utime(path, (time.time() - age, time.time() - age))
    store = JobStore(tmp_path / "jobs.sqlite3")
    return Dispatcher(store, Access(), [BackupHandler(store, SimpleNamespace(backup_dir=str(backups)), channel=None)])


def test_backup_list_survives_a_damaged_old_dump(tmp_path):
    listing = _typed(_two_dumps(tmp_path, damaged="older"), "/backup list", "USTRANGER")
    lines = listing.private[0].splitlines()
    assert lines[0].startswith("newer-club.sql  club  ") and "starts at binlog.000001:460" in lines[0]
    assert lines[1].startswith("older-club.sql  UNREADABLE: older-club.sql:"), lines
    assert "truncated" in lines[1] and str(tmp_path) not in lines[1]
    assert "marked UNREADABLE cannot be restored" in lines[2] and len(lines) == 3


def test_backup_list_warns_when_the_newest_dump_is_damaged(tmp_path):
    listing = _typed(_two_dumps(tmp_path, damaged="newer"), "backup", "USTRANGER")
    lines = listing.private[0].splitlines()
    assert lines[0].startswith("newer-club.sql  UNREADABLE: newer-club.sql:") and "truncated" in lines[0]
    assert lines[1].startswith("older-club.sql  club  ")
    assert "the newest backup newer-club.sql cannot be restored" in lines[2] and "/backup now" in lines[2]


def test_a_dump_is_read_once_while_it_is_unchanged(tmp_path, monkeypatch):
    """/backup list and retention describe every dump; reading a big one takes minutes, so the
    description is kept beside it and used until the file's size or mtime changes."""
    import restore.live.backups as backup
    path = tmp_path / "club.sql"
    path.write_text(_dump_text("club", 460))
    first = backup.describe_backup(path)
    reads = []
    real = backup.read_snapshot
    monkeypatch.setattr(backup, "read_snapshot", lambda p: reads.append(p) or real(p))
    assert backup.describe_backup(path) == first and reads == []
    assert (first.databases, first.binlog_file, first.binlog_pos) == (("club",), "binlog.000001", 460)
    path.write_text(_dump_text("club", 999))  # another dump under the same name
    assert backup.describe_backup(path).binlog_pos == 999 and reads == [str(path)]
    assert [p.name for p in backup.dump_files(tmp_path)] == ["club.sql"]  # the description is no dump
