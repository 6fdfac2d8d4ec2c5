"""Passwords stay off command lines (`ps`) and out of files: the mariadb/mysql client gets them through
a pipe, and our own DSN arguments can name an environment variable instead (`mysql://u:${VAR}@h`)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from restore.errors import RestoreError
from restore.mysql.dsn import Dsn
from restore.mysql.sandbox import Sandbox
from restore.replay.loader import client_binary, client_options

PASSWORD = 'p"w\\d #1'  # a quote, a backslash, a space and a hash: all must survive the option file


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@pytest.mark.mysql
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
        assert not any(_is_open(fd) for fd in fds)  # closed after the run
    assert out.returncode == 0 and out.stdout.strip() == "loader@%", out.stderr
    assert list(private_tmp.iterdir()) == []  # nothing written for a crash to leave behind


def test_a_dsn_password_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RB_TEST_PW", "a/b?c#d@e%" + PASSWORD)
    assert Dsn.parse("mysql://repl:${RB_TEST_PW}@db:3307") == Dsn("repl", "a/b?c#d@e%" + PASSWORD, "db", 3307)
    monkeypatch.delenv("RB_TEST_PW")
    with pytest.raises(RestoreError) as unset:
        Dsn.parse("mysql://repl:${RB_TEST_PW}@db", what="--source")
    assert "RB_TEST_PW is not set" in str(unset.value) and "--source" in str(unset.value)


@pytest.mark.mysql
def test_archive_with_the_password_in_the_environment_shows_none_on_its_command_line(tmp_path):
    with Sandbox(binlog=True) as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE USER 'repl'@'%%' IDENTIFIED BY %s", (PASSWORD,))
            cur.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%'")
        env = dict(os.environ, REPL_PW=PASSWORD)
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "archive", "--source",
                                 f"mysql://repl:${{REPL_PW}}@127.0.0.1:{src.port}", "--dir", str(tmp_path / "a")],
                                env=env, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not list((tmp_path / "a").glob("binlog.0*")):
                time.sleep(0.1)
            cmdline = " ".join(psutil.Process(proc.pid).cmdline())
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=15)
    assert list((tmp_path / "a").glob("binlog.0*")), err  # it logged in and copied
    assert PASSWORD not in cmdline and "${REPL_PW}" in cmdline
    assert PASSWORD not in err
