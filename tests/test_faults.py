"""Faults: a source that refuses us is reported once (with retries), a full disk corrupts nothing."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading

import pytest

from restore.live.archiver import Archiver
from restore.live.watcher import Watcher
from restore.mysql.dsn import Dsn
from restore.mysql.sandbox import Sandbox
from tests.support.binlog_archive import archived_files, insert_traffic, server_binlog_files
from tests.support.fake_slack import FakeSlack
from tests.support.watching import MemoryPositions, server_status, wait_until

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


def test_wrong_credentials_alert_once_and_keep_retrying():
    with Sandbox(binlog=True) as src:
        bad = Dsn("root", "not-the-password", "127.0.0.1", src.port)
        troubles: list[str] = []
        watcher = Watcher(bad, MemoryPositions(), lambda alert: None, on_trouble=troubles.append)
        thread = threading.Thread(target=watcher.run_forever, daemon=True)
        thread.start()
        try:
            wait_until(lambda: troubles, "the watcher to report the refusal", troubles)
            # every attempt is refused anew: two more refusals mean it retried after the report
            refused = server_status(src, "Access_denied_errors")
            wait_until(lambda: server_status(src, "Access_denied_errors") >= refused + 2, "the watcher to retry twice",
                       troubles)
        finally:
            watcher.stop()
            thread.join(timeout=5)
    assert len(troubles) == 1, troubles
    assert f"127.0.0.1:{src.port}" in troubles[0] and "not-the-password" not in troubles[0]
    assert "password" in troubles[0].lower() or "denied" in troubles[0].lower()


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_reports_and_corrupts_nothing(tmp_path):
    archive = tmp_path / "archive"
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        insert_traffic(src, 300)
        cmd = [sys.executable, "-m", "bot.cli", "archive", "--source", src.url, "--dir", str(archive)]
        slack = FakeSlack().start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RESTORE_BOT_"))}
        env.update(SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack.api_url, RESTORE_BOT_CHANNEL="CINC")
        full = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env,
                                preexec_fn=_limit_file_size(20_000))
        lines: list[str] = []

        def read() -> None:
            for line in full.stderr:
                lines.append(line)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_until(lambda: any("cannot write" in line for line in lines), "the archiver to report the full disk",
                       lines)
            # Each attempt lists the binary logs (twice: for the gap check, then to start the stream),
            # and the next one starts only after it failed: three more listings mean that a whole
            # retry after the report failed (quietly, or it would be in `lines`) and another began.
            listed = server_status(src, "Com_show_binlogs")
            wait_until(lambda: server_status(src, "Com_show_binlogs") >= listed + 3, "the archiver to retry", lines)
            slack.wait_for(lambda calls: [c for c in calls if "⚠️" in c.text], timeout=15,
                           what="the report in the channel (posted by a thread of its own)")
        finally:
            full.terminate()
            full.wait(timeout=15)
            reader.join(timeout=15)
            slack.stop()
        err = "".join(lines)
        assert err.count("cannot write") == 1, err  # reported once, then retried quietly
        posted = [c.text for c in slack.snapshot() if c.method == "chat.postMessage"]
        assert len(posted) == 1 and "⚠️ archive:" in posted[0] and "cannot write" in posted[0], posted
        assert "File too large" in err and "free space" in err
        assert (archive / "binlog.000001").stat().st_size <= 20_000
        Archiver(src.dsn, archive).copy()   # room again: resumes at the last whole event
        assert archived_files(archive) == server_binlog_files(src)
