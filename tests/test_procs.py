"""restore.mysql.procs without a server: finding the processes that use a directory by their
arguments, killing them, and telling a live process from a gone or zombie one."""
from __future__ import annotations

import os
import subprocess
import sys

from restore.mysql.procs import alive, kill_using, using_path

_SLEEPER = "import sys, time; time.sleep(60)"


def test_processes_naming_a_directory_or_a_file_below_it_are_found_and_killed(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    inside = subprocess.Popen([sys.executable, "-c", _SLEEPER, f"--datadir={work}/data"])
    exact = subprocess.Popen([sys.executable, "-c", _SLEEPER, str(work) + "/"])
    beside = subprocess.Popen([sys.executable, "-c", _SLEEPER, f"{work}-other/data"])  # a prefix is not "below"
    try:
        found = using_path(str(work))
        assert sorted(found) == sorted([inside.pid, exact.pid]), found
        assert os.getpid() not in using_path(os.path.dirname(sys.executable))  # never ourselves
        assert alive(inside.pid) and alive(beside.pid)
        assert sorted(kill_using(str(work), timeout=10)) == sorted([inside.pid, exact.pid])
        # Killed and not yet reaped: a zombie counts as gone.
        assert not alive(inside.pid) and not alive(exact.pid)
        assert alive(beside.pid) and using_path(str(work)) == []
    finally:
        for proc in (inside, exact, beside):
            proc.kill()
            proc.wait()
    assert not alive(inside.pid)


def test_a_pid_nobody_has_is_not_alive():
    assert not alive(2 ** 22 + 1)  # above Linux's pid_max limit
