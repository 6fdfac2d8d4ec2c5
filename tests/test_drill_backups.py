"""`/restore drill` fails when the backups are bad, and says OK with numbers when they are good.

One source (MIXED binlog: row and statement events) with a snapshot, traffic over three binlog
files archived by the archiver, and more traffic after the archive's end. Each test copies the
backups and the archive, damages its copy the way backups get damaged, and runs the drill job
through the worker. The last test creates the job the way serve's scheduler does and reads the
verdict where the team reads it: in the (fake) Slack channel.
"""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.reporter import Reporter
from bot.serve import Background
from bot.slack_app import SlackPoster, web_client
from bot.worker import Worker
from handlers.jobstore import FINISHED, Job, JobStore
from restore.binlog import events as be
from restore.binlog.files import BinlogDirectory
from restore.live.archiver import Archiver
from restore.live.backups import take_backup
from restore.live.drill import SourceState, compare_with_source
from restore.mysql.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack

CHANNEL = "C0DRILL"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(sandbox, backup dir, archive dir, snapshot path) — not to be changed by tests: copy first."""
    base = tmp_path_factory.mktemp("drill-source")
    with Sandbox(binlog=True, binlog_format="MIXED") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.members (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL)")
            cur.execute("CREATE TABLE club.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(40), at DATETIME)")
            cur.execute("CREATE TABLE club.likes (post INT, member INT, PRIMARY KEY (post, member))")
            cur.executemany("INSERT INTO club.members VALUES (%s, %s)",
                            [(1, "Alice"), (2, "Bobby"), (3, "Carol"), (4, "김키퍼")])
            cur.execute("INSERT INTO club.posts (title, at) VALUES ('첫 글', NOW())")
        snapshot = take_backup(src.dsn, ["club"], base / "backups").path
        with src.connect() as conn, conn.cursor() as cur, src.connect() as rows, rows.cursor() as by_row:
            by_row.execute("SET SESSION binlog_format = 'ROW'")  # posts logged as statements, the rest as rows
            for i in range(30):
                cur.execute("INSERT INTO club.posts (title, at) VALUES (%s, NOW())", (f"글 {i}",))
                by_row.execute("INSERT INTO club.likes VALUES (%s, %s)", (i + 1, i % 4 + 1))
                if i in (10, 20):
                    cur.execute("FLUSH BINARY LOGS")
            by_row.execute("UPDATE club.members SET name = 'Alicia' WHERE id = 1")
        Archiver(src.dsn, base / "archive").copy()
        with src.connect() as conn, conn.cursor() as cur:  # after the archive's end: posts is not comparable
            cur.execute("INSERT INTO club.posts (title, at) VALUES ('아카이브 이후', NOW())")
        yield src, base / "backups", base / "archive", snapshot


def _copy(source, tmp_path: Path, *, channel: str | None = None, env: dict | None = None):
    src, backups, archive, snapshot = source
    shutil.copytree(backups, tmp_path / "backups")
    shutil.copytree(archive, tmp_path / "archive")
    slack = f'[slack]\nchannel = "{channel}"\n' if channel else ""
    (tmp_path / "restore-bot.toml").write_text(f"""
[watch]
source = "{src.url}"
databases = ["club"]
[keep]
backup_dir = "backups"
archive_dir = "archive"
[store]
path = "jobs.sqlite3"
{slack}""")
    settings = load_settings(str(tmp_path / "restore-bot.toml"), env=env or {})
    return settings, tmp_path / "backups" / snapshot.name, tmp_path / "archive"


def _run(settings, job: Job, timeout: float = 120) -> Job:
    store = JobStore(settings.store_path)
    worker = Worker(settings, store)
    thread = threading.Thread(target=worker.run_forever, kwargs={"poll": 0.05}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and store.get(job.id).state not in FINISHED:
            time.sleep(0.1)
    finally:
        worker.stopping.set()
        thread.join(10)
    return store.get(job.id)


def _drill(settings) -> Job:
    return _run(settings, JobStore(settings.store_path).create("drill", "drill", "UOPS1"))


def _failure(job: Job) -> str:
    assert job.state == "failed", (job.state, job.result and job.result.get("summary"))
    return job.error["message"]


def _flip_a_bit(archive: Path, file: str) -> int:
    """Damages the first statement or row event of `file` in its body (framing intact, CRC not); its position."""
    ev = next(ev for ev in BinlogDirectory(archive).events(file, 4) if ev.type in {be.QUERY, *be.ROWS_EVENTS})
    path = archive / file
    data = bytearray(path.read_bytes())
    data[ev.pos + be.HEADER_LEN + 3] ^= 0x40
    path.write_bytes(bytes(data))
    return ev.pos


@pytest.mark.mysql
def test_good_backups_report_ok_with_what_was_verified(source, tmp_path):
    settings, _, _ = _copy(source, tmp_path)
    job = _drill(settings)
    assert job.state == "succeeded", job.error
    summary, report = job.result["summary"], job.result["drill"]
    assert summary.startswith(f"Drill from {Path(report['snapshot']).name} + archive: OK"), summary
    assert "3 file(s) read from binlog.000001:" in summary and "none skipped" in summary
    assert ("2 of 3 tables hold the row count the dump plus binlog predict (club.likes 30 rows, club.members 4 rows); "
            "1 changed by statement-format DML, uncounted") in summary
    # members and likes were last written inside the archive: compared; posts was written after its end.
    checks = report["checksums"]
    assert checks["equal"] == ["club.likes", "club.members"] and checks["changed_on_source_after"] == ["club.posts"]
    assert f"2 of 3 tables equal the source's CHECKSUM TABLE at {report['end']}" in summary
    assert "club.likes 30 rows, club.members 4 rows" in summary and "not comparable (club.posts 31 rows)" in summary
    assert report["transactions"] >= 61 and report["skipped"] == 0


@pytest.mark.mysql
def test_truncated_snapshot_fails_naming_file_and_line(source, tmp_path):
    settings, snapshot, _ = _copy(source, tmp_path)
    data = snapshot.read_bytes()
    snapshot.write_bytes(data[:len(data) * 2 // 3])
    message = _failure(_drill(settings))
    assert f"Drill from {snapshot.name} + archive: FAILED — the snapshot" in message
    assert f"{snapshot}:" in message and "truncated" in message, message


@pytest.mark.mysql
def test_snapshot_with_a_changed_value_fails_against_the_source(source, tmp_path):
    """Complete, loadable, right row counts: only the source's checksum shows the dump is wrong."""
    settings, snapshot, _ = _copy(source, tmp_path)
    data = snapshot.read_bytes()
    assert data.count(b"'Carol'") == 1
    snapshot.write_bytes(data.replace(b"'Carol'", b"'Karol'"))
    job = _drill(settings)
    message = _failure(job)
    assert "FAILED — 1 table(s) differ from the source at binlog binlog.000003:" in message, message
    assert "club.members: restored 4 rows" in message and job.error["where"].startswith("binlog.000003:")
    assert snapshot.name in job.error["hint"] and "/backup now" in job.error["hint"]


@pytest.mark.mysql
def test_archive_with_a_missing_file_fails_naming_the_gap(source, tmp_path):
    settings, snapshot, archive = _copy(source, tmp_path)
    (archive / "binlog.000002").unlink()
    message = _failure(_drill(settings))
    assert "FAILED — the archive" in message and "replayed from the snapshot's position binlog.000001:" in message
    assert "binlog file binlog.000002 is missing" in message, message


@pytest.mark.mysql
def test_archive_with_a_crc_error_fails_naming_file_and_position(source, tmp_path):
    settings, snapshot, archive = _copy(source, tmp_path)
    pos = _flip_a_bit(archive, "binlog.000002")
    job = _drill(settings)
    message = _failure(job)
    assert f"binlog.000002: CRC32 mismatch in the event at position {pos}" in message, message
    assert job.error["where"] == f"binlog.000002:{pos}"


@pytest.mark.mysql
def test_unreachable_source_says_checksums_were_not_compared(source, tmp_path):
    settings, _, _ = _copy(source, tmp_path)
    src = source[0]
    (tmp_path / "restore-bot.toml").write_text((tmp_path / "restore-bot.toml").read_text()
                                               .replace(src.url, "mysql://root@127.0.0.1:1"))
    job = _drill(load_settings(str(tmp_path / "restore-bot.toml"), env={}))
    assert job.state == "succeeded", job.error
    assert "• checksums: NOT compared: the source" in job.result["summary"]
    assert job.result["drill"]["checksums"]["equal"] == []


def _posted(text: str, since: int = 0):
    """For FakeSlack.wait_for (it holds the fake's lock: the predicate reads the calls it is given)."""
    return lambda calls: [c for c in calls[since:]
                          if c.method == "chat.postMessage" and c.channel == CHANNEL and text in c.text]


@pytest.mark.mysql
def test_scheduled_drill_posts_its_verdict_to_the_channel(source, tmp_path):
    """Jobs made by serve's scheduler (Background._scheduled), run by the worker, reported to Slack;
    a FAILED verdict mentions the person on call (here RESTORE_BOT_ONCALL: no rotation, no override)."""
    settings, _, archive = _copy(source, tmp_path, channel=CHANNEL, env={"RESTORE_BOT_ONCALL": "UONCALL"})
    store = JobStore(settings.store_path)
    background = Background(settings, store, client=None)
    with FakeSlack() as fake:
        reporter = Reporter(store, SlackPoster(web_client("xoxb-test", fake.api_url), CHANNEL), poll=0.1).start()
        try:
            background._scheduled("drill")
            good = _run(settings, store.jobs(kind="drill", limit=1)[0])
            assert good.state == "succeeded", good.error
            fake.wait_for(_posted(": OK — restored into a sandbox"), what="the OK verdict in the channel")

            _flip_a_bit(archive, "binlog.000003")
            mark = fake.mark()
            background._scheduled("drill")
            bad = _run(settings, store.jobs(kind="drill", limit=1)[0])
            assert bad.state == "failed" and bad.id != good.id
            posted = fake.wait_for(_posted("+ archive: FAILED — the archive", since=mark),
                                   what="the FAILED verdict in the channel")
            assert "binlog.000003: CRC32 mismatch in the event at position" in posted[0].text
            called = fake.wait_for(_posted("<@UONCALL> (on call): this backup drill failed", since=mark),
                                   what="the on-call mention in the channel")
            assert "+ archive: FAILED — the archive" in called[0].text and called[0].thread_ts
            assert not _posted("UONCALL")(fake.snapshot()[:mark]), "an OK drill mentioned the on-call person"
        finally:
            reporter.stop()
    assert bad.requester == "restore-bot" and bad.channel == CHANNEL


def test_a_statement_that_names_no_table_makes_its_whole_database_not_comparable():
    """`db.*` (DROP DATABASE, a statement we cannot attribute, DML under triggers) excludes every table of db."""
    state = SourceState(("binlog.000001", 400), {"club.a": (1, 11), "club.b": (2, 22), "wiki.p": (3, 33)},
                        {"club.*"}, "11.4")
    out = compare_with_source({"club.a": (1, 99), "wiki.p": (3, 34)}, state)
    assert out.changed == ["club.a", "club.b"] and out.equal == []
    assert out.differ == ["wiki.p: restored 3 rows, checksum 34; the source 3 rows, checksum 33"]
