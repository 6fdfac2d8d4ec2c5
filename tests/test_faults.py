"""Faults: a source that refuses us is reported once (with retries), a full disk corrupts nothing."""
from __future__ import annotations

import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from restore.archiver import Archiver
from restore.dsn import Dsn
from restore.sandbox import Sandbox
from restore.watcher import Watcher
from test_archive import _archive, _server_files, _traffic


class Positions:
    def __init__(self) -> None:
        self.pos = None

    def load(self):
        return self.pos

    def save(self, file: str, pos: int) -> None:
        self.pos = (file, pos)


def test_wrong_credentials_alert_once_and_keep_retrying():
    with Sandbox(binlog=True) as src:
        bad = Dsn("root", "not-the-password", "127.0.0.1", src.port)
        troubles: list[str] = []
        watcher = Watcher(bad, Positions(), lambda alert: None, on_trouble=troubles.append)
        thread = threading.Thread(target=watcher.run_forever, daemon=True)
        thread.start()
        time.sleep(3.5)  # retries after 1 s and 2 s: still one report
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
        _traffic(src, 300)
        cmd = [sys.executable, "-m", "bot.cli", "archive", "--source", src.url, "--dir", str(archive)]
        full = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, preexec_fn=_limit_file_size(20_000))
        time.sleep(4)
        full.terminate()
        err = full.communicate(timeout=15)[1]
        assert err.count("cannot write") == 1, err  # reported once, then retried quietly
        assert "File too large" in err and "free space" in err
        assert (archive / "binlog.000001").stat().st_size <= 20_000
        Archiver(src.dsn, archive).copy()   # room again: resumes at the last whole event
        assert _archive(archive) == _server_files(src)
