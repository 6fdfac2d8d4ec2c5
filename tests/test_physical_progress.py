"""The copy of a physical backup on the chat card: bytes done of the total, the rate and the ETA,
refreshed at the card's interval (issue 13).

A plan job reads a real backup (a directory, and a compressed stream) of a real server: its copy
(or unpacking) reports through the worker's JobHooks into a real job store, and the reporter
posts the card to a fake Slack Web API over HTTP; the test reads what Slack was sent. Only the
pace is the test's: each report of the copy waits a little before the copy goes on, as a slow
disk would make it, so a copy of a few MB lasts long enough for several card refreshes.
"""
from __future__ import annotations

import re
import shutil
import time

import pytest

from bot.reporter import Reporter
from bot.slack_app import SlackPoster, web_client
from bot.worker import JobHooks
from handlers.jobstore import JobState, JobStore
from restore import api
from restore.live.backups import take_physical_backup
from restore.meter import ByteProgress
from restore.mysql.sandbox import Sandbox
from restore.plan import physical_base
from tests.support.fake_slack import FakeSlack
from tests.support.physical import take_backup

pytestmark = [pytest.mark.mysql,
              pytest.mark.skipif(shutil.which("mariadb-backup") is None, reason="mariadb-backup is not installed")]
CHANNEL, TOKEN = "CPHYS", "xoxb-physical"
INTERVAL = 0.3   # the card's interval here (serve's default is 2.5 s)
BYTES = re.compile(r"copy backup\*.*?(\d+(\.\d)? [KMG]?B) of (\d+\.\d [KMG]B) \((\d+)%\)", re.S)


@pytest.fixture(scope="module")
def backups(tmp_path_factory):
    """(directory backup, compressed backup, binlog dir) of a server with ~8 MB of random bytes."""
    base = tmp_path_factory.mktemp("progress")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE shop")
            cur.execute("CREATE TABLE shop.blobs (id INT PRIMARY KEY, b VARBINARY(255))")
            cur.execute("INSERT INTO shop.blobs SELECT seq, RANDOM_BYTES(250) FROM shop.seq_1_to_32000")
        plain = take_backup(src, base / "plain")
        packed = take_physical_backup(src.dsn, base / "packed", compress=True).path
        with src.connect(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM shop.blobs WHERE id % 10 = 0")
        binlogs = base / "binlogs"
        binlogs.mkdir()
        for f in src.binlog_dir.glob("binlog.*"):
            shutil.copy2(f, binlogs / f.name)
        yield plain, packed, binlogs


class SlowDisk:
    """The worker's hooks; each report of the copy holds it `pause` s, as a slow disk would."""

    def __init__(self, hooks: JobHooks, pause: float) -> None:
        self.hooks, self.pause = hooks, pause

    def __getattr__(self, name):
        return getattr(self.hooks, name)

    def progress(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        self.hooks.progress(phase, done, total, detail)
        if phase == "copy backup":
            time.sleep(self.pause)


def _cards(snapshot: str, binlogs, tmp_path, pause: float) -> list[str]:
    """The texts the card was posted and updated with while a plan job read `snapshot`."""
    with FakeSlack() as fake:
        store = JobStore(str(tmp_path / "jobs.sqlite3"))
        job = store.create("plan", "stage", "UOPS", state=JobState.RUNNING, channel=CHANNEL)
        reporter = Reporter(store, SlackPoster(web_client(TOKEN, fake.api_url), CHANNEL), interval=INTERVAL,
                            poll=0.05).start()
        try:
            api.plan(api.PlanInput([snapshot], str(binlogs), stop="end"), hooks=SlowDisk(JobHooks(store, job.id), pause))
            time.sleep(2 * INTERVAL)
        finally:
            reporter.stop()
            physical_base._drop_spare()
        return [c.text for c in fake.snapshot() if c.method in ("chat.postMessage", "chat.update")
                and c.channel == CHANNEL and c.body.get("thread_ts") is None]


def test_the_card_shows_the_unpacking_of_a_compressed_backup_with_rate_and_eta(backups, tmp_path):
    _plain, packed, binlogs = backups
    cards = _cards(str(packed), binlogs, tmp_path, pause=0.6)
    copying = [m for t in cards if (m := BYTES.search(t))]
    assert copying, "\n---\n".join(cards)
    total = {m.group(3) for m in copying}
    assert len(total) == 1, total
    done = [int(m.group(4)) for m in copying]
    assert done == sorted(done) and done[-1] > done[0], done   # refreshed as the bytes go
    assert any(re.search(r"\((\d+)%\), \d+\.\d [KMG]B/s, ETA \d+:\d\d", t) for t in cards), "\n---\n".join(cards)
    assert "rows/s" not in "".join(t for t in cards if "copy backup" in t)
    assert packed.name in "".join(cards)


def test_the_card_shows_the_copy_of_a_backup_directory(backups, tmp_path):
    plain, _packed, binlogs = backups
    cards = _cards(str(plain), binlogs, tmp_path, pause=INTERVAL * 3)
    copying = [m for t in cards if (m := BYTES.search(t))]
    assert copying and f"{plain.name}:" in "".join(cards), "\n---\n".join(cards)


def test_byte_progress_reports_at_its_pace_with_rate_and_eta():
    now = [0.0]
    sent = []

    class Hooks:
        def phase_started(self, phase, total):
            sent.append(("start", phase, total))

        def progress(self, phase, done, total, detail=""):
            sent.append((phase, done, detail))

        def phase_finished(self, phase, result):
            sent.append(("end", phase, result["bytes"]))

    meter = ByteProgress(Hooks(), "copy backup", 100_000_000, label="b", clock=lambda: now[0])
    for t, done in ((0.2, 5_000_000), (1.0, 25_000_000), (1.1, 27_000_000), (2.0, 50_000_000)):
        now[0] = t
        meter.update(done)
    meter.close()
    assert sent[0] == ("start", "copy backup", 100_000_000)
    assert [s[1] for s in sent[1:-1]] == [0, 25_000_000, 50_000_000, 100_000_000]   # every 0.5 s, and the end
    assert sent[3][2] == "b: 50.0 MB of 100.0 MB (50%), 25.0 MB/s, ETA 0:02"
    assert sent[-1] == ("end", "copy backup", 100_000_000)
