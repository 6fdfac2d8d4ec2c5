"""Shared fixtures and helpers for the restore tests: real MariaDB servers, dumps, the CLI.

Servers are `restore.mysql.sandbox.Sandbox` instances (throwaway datadir, random port). Sources are
built once per (binlog_format, binlog_row_metadata) and the incident built on them is cached for
the whole session: building one costs a few seconds, restoring it is what the tests measure.

Nothing is left behind: the session gets a temp dir of its own, /tmp/rbtests-<pid>-<hex>, and
TMPDIR (os.environ and tempfile.tempdir) points there, so every sandbox, temp file and child
process of the suite makes its temp files in it. pytest's tmp_path lives there too (--basetemp
DIR/p unless --basetemp is given), so no /tmp/pytest-of-<user> either. At the end the suite
must have removed everything it made there except the basetemp: the last test fails at teardown
listing what is left and what still runs. Then the whole dir goes; /tmp is as it was. To keep
tmp_path contents for a post-mortem, pass --basetemp somewhere else. The dir is an OwnedDir: if
this pytest is killed, the next test run or restore-bot start removes it (restore/mysql/leftovers.py).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import psutil
import pytest

from restore.mysql.leftovers import OwnedDir, sweep
from restore.mysql.procs import kill_using, using_path
from restore.mysql.sandbox import Sandbox
from tests.support.db import CliResult, clean, format_id

# -- the `mysql` marker: every test that starts a MariaDB server carries it ----------------------------
# `pytest -m "not mysql"` is the fast tier. Tests that use one of these fixtures are marked here; a
# test that starts a server some other way is marked in its module, and one that is not marked but
# starts a server fails, naming itself, so the fast tier stays honest.
SERVER_FIXTURES = {"_target_server", "target", "source_factory", "incidents"}
_running: list = [None]   # the test being set up, run or torn down


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mysql)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _running[0] = item


def _start_guarded(real):
    def start(self: Sandbox) -> Sandbox:
        item = _running[0]
        if item is not None and item.get_closest_marker("mysql") is None:
            raise AssertionError(f"{item.nodeid} starts a MariaDB server but is not marked "
                                 "@pytest.mark.mysql (add it to the test or its module's pytestmark)")
        return real(self)
    return start


Sandbox.start = _start_guarded(Sandbox.start)


# -- nothing left behind (see the module's docstring) ------------------------------------------------

_SESSION_TMP = pytest.StashKey[tuple]()


@pytest.hookimpl(tryfirst=True)   # before pytest's tmp_path plugin reads --basetemp
def pytest_configure(config):
    sweep()   # what a killed earlier run (or restore-bot) left in /tmp
    # A pytest-xdist worker inherits the controller's TMPDIR (its rbtests dir): it makes its own
    # beside it, not inside, so its paths stay as short as the controller's.
    tmp = Path(tempfile.gettempdir())
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    session = OwnedDir("rbtests", tmp.parent if worker and tmp.name.startswith("rbtests-") else None)
    config.stash[_SESSION_TMP] = (session, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = tempfile.tempdir = str(session.path)
    # Short: sandbox sockets may live below tmp_path. A pytest-xdist worker would get the
    # controller's default plus /popen-gwN, too long for some sockets: it takes its own.
    from_controller = worker and "/rbtests-" in str(config.option.basetemp or "")
    if not config.option.basetemp or from_controller:
        config.option.basetemp = str(session.path / "p")


def pytest_unconfigure(config):
    session, tmpdir_before = config.stash.get(_SESSION_TMP, (None, None))
    if session is None:
        return
    kill_using(str(session.path))
    session.remove()
    tempfile.tempdir = None
    if tmpdir_before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = tmpdir_before


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind(request):
    """Set up first, torn down last: every other fixture has cleaned up when this checks."""
    yield
    tmp = Path(tempfile.gettempdir())
    basetemp = request.config.option.basetemp
    sweep()   # what the tests' killed restore-bot processes left, as their next start would
    left = sorted(e.name for e in tmp.iterdir() if str(e) != str(basetemp))
    running = []
    for pid in using_path(str(tmp)):
        try:
            running.append(f"{pid}: " + " ".join(psutil.Process(pid).cmdline())[:300])
        except psutil.Error:   # ended meanwhile
            pass
    assert not left and not running, (
        f"the test suite left behind in its temp dir {tmp}: {left}; still running: {running}")


@pytest.fixture
def cli(capsys):
    """Run `restore-bot ARGS --json` in-process; returns CliResult(code, parsed JSON, ...)."""
    from bot.cli import main

    def run(*args: str) -> CliResult:
        argv = [str(a) for a in args]
        if "--json" not in argv:
            argv.append("--json")
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        try:
            doc = json.loads(out) if out.strip() else {}
        except json.JSONDecodeError as exc:
            raise AssertionError(f"--json output is not one JSON document ({exc}):\n{out[-3000:]}\n{err[-2000:]}")
        return CliResult(code, doc, out, err)

    return run


# -- servers ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def _target_server():
    with Sandbox() as s:
        yield s


@pytest.fixture
def target(_target_server):
    """A plain (no binlog) target server, emptied of every non-system database."""
    clean(_target_server)
    yield _target_server
    clean(_target_server)


@pytest.fixture
def source_factory():
    """Start source servers with a binlog: source_factory("ROW", "MINIMAL")."""
    started: list[Sandbox] = []

    def make(fmt: str = "ROW", meta: str | None = None) -> Sandbox:
        s = Sandbox(binlog=True, binlog_format=fmt, row_metadata=meta)
        s.start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def incidents(tmp_path_factory):
    """incidents(fmt, meta) -> the story's Incident built on a source of that format (cached)."""
    from tests.support.incident import build_incident

    cache: dict = {}

    def get(fmt: str = "ROW", meta: str | None = None):
        key = (fmt, meta)
        if key not in cache:
            work = tmp_path_factory.mktemp(f"incident-{format_id(key)}")
            with Sandbox(binlog=True, binlog_format=fmt, row_metadata=meta) as src:
                cache[key] = build_incident(src, work)
        return cache[key]

    return get
