"""Credentials for the mariadb/mysql client go through a pipe: not on its command line, not in a file."""
from __future__ import annotations

import os
import subprocess
import tempfile

from restore.dsn import Dsn
from restore.loader import client_binary, client_options
from restore.sandbox import Sandbox

PASSWORD = 'p"w\\d #1'  # a quote, a backslash, a space and a hash: all must survive the option file


def test_the_client_logs_in_with_credentials_read_from_a_pipe(tmp_path, monkeypatch):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    with Sandbox() as box:
        with box.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE USER 'loader'@'%%' IDENTIFIED BY %s", (PASSWORD,))
        dsn = Dsn("loader", PASSWORD, "127.0.0.1", box.port)
        with client_options(dsn) as (option, fds):
            assert option.startswith("--defaults-file=/dev/fd/") and PASSWORD not in option
            out = subprocess.run([client_binary(), option, "-N", "-e", "SELECT CURRENT_USER()"],
                                 capture_output=True, text=True, pass_fds=fds)
        assert not any(os.path.exists(f"/proc/self/fd/{fd}") for fd in fds)  # closed after the run
    assert out.returncode == 0 and out.stdout.strip() == "loader@%", out.stderr
    assert list(private_tmp.iterdir()) == []  # nothing written for a crash to leave behind
