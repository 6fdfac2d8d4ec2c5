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
this pytest is killed, the next test run or restore-bot start removes it (restore/leftovers.py).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from restore.mysql.leftovers import OwnedDir, sweep  # noqa: E402
from restore.mysql.procs import kill_using, using_path  # noqa: E402
from restore.mysql.sandbox import Sandbox  # noqa: E402

SYSTEM_DBS = {"mysql", "information_schema", "performance_schema", "sys"}
RESTORED = ("homepage", "wiki")

# (binlog_format, binlog_row_metadata) combinations the incident is restored from.
FORMATS = [
    ("ROW", "NO_LOG"),
    ("ROW", "MINIMAL"),
    ("ROW", "FULL"),
    ("MIXED", None),      # MariaDB's default: MIXED with NO_LOG
    ("STATEMENT", None),
]


def format_id(combo) -> str:
    fmt, meta = combo
    return fmt if meta is None else f"{fmt}-{meta}"


# -- nothing left behind (see the module's docstring) ------------------------------------------------

_SESSION_TMP = pytest.StashKey[tuple]()


@pytest.hookimpl(tryfirst=True)   # before pytest's tmp_path plugin reads --basetemp
def pytest_configure(config):
    sweep()   # what a killed earlier run (or restore-bot) left in /tmp
    session = OwnedDir("rbtests")
    config.stash[_SESSION_TMP] = (session, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = tempfile.tempdir = str(session.path)
    if not config.option.basetemp:
        config.option.basetemp = str(session.path / "p")   # short: sandbox sockets may live below tmp_path


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
            running.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300])
        except OSError:
            pass
    assert not left and not running, (
        f"the test suite left behind in its temp dir {tmp}: {left}; still running: {running}")


# -- helpers ---------------------------------------------------------------------------------------

def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def base_tables(conn, db: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                    "AND TABLE_TYPE='BASE TABLE' ORDER BY TABLE_NAME", (db,))
        return [r[0] for r in cur.fetchall()]


def checksums(conn, dbs) -> dict[str, tuple[int, int]]:
    """{"db.table": (row count, CHECKSUM TABLE ... EXTENDED)} for every base table of `dbs`."""
    out: dict[str, tuple[int, int]] = {}
    with conn.cursor() as cur:
        for db in dbs:
            for table in base_tables(conn, db):
                ident = f"{q(db)}.{q(table)}"
                cur.execute(f"SELECT COUNT(*) FROM {ident}")
                rows = cur.fetchone()[0]
                cur.execute(f"CHECKSUM TABLE {ident} EXTENDED")
                out[f"{db}.{table}"] = (rows, cur.fetchone()[1])
    return out


_AUTO_INC = re.compile(r" AUTO_INCREMENT=\d+")


def schemas(conn, dbs) -> dict[str, str]:
    """{"db.table": SHOW CREATE TABLE without the AUTO_INCREMENT counter} for every base table."""
    out: dict[str, str] = {}
    with conn.cursor() as cur:
        for db in dbs:
            for table in base_tables(conn, db):
                cur.execute(f"SHOW CREATE TABLE {q(db)}.{q(table)}")
                out[f"{db}.{table}"] = _AUTO_INC.sub("", cur.fetchone()[1])
    return out


def databases(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        return {r[0] for r in cur.fetchall()}


def master_status(conn) -> tuple[str, int, str]:
    """(file, position, @@gtid_binlog_pos) of a source right now."""
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
        cur.execute("SELECT @@gtid_binlog_pos")
        gtid = cur.fetchone()[0]
    return row[0], int(row[1]), gtid


def dump(server: Sandbox, path, dbs, extra=(), *, coordinates: bool = True) -> Path:
    """mariadb-dump the databases `dbs` of `server` into `path` (with --master-data=2 --gtid)."""
    path = Path(path)
    cmd = ["mariadb-dump", *server.client_args()]
    if coordinates:
        cmd += ["--master-data=2", "--gtid"]
    cmd += ["--single-transaction", "--routines", "--triggers", *extra, "--databases", *dbs]
    with open(path, "wb") as fh:
        out = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE)
    assert out.returncode == 0, f"mariadb-dump failed: {out.stderr.decode(errors='replace')}"
    return path


_CHANGE = re.compile(r"CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)")
_SLAVE_POS = re.compile(r"gtid_slave_pos='([^']*)'")


def dump_coordinates(path) -> tuple[str, int, str | None] | None:
    """The (file, pos, gtid) that mariadb-dump wrote into the dump's header comments."""
    data = Path(path).read_bytes()
    m = _CHANGE.search(data[:20000].decode("utf-8", "replace"))
    if not m:
        return None
    # with --gtid the GTID position is written as a comment near the end of the dump
    g = _SLAVE_POS.search(data[-20000:].decode("utf-8", "replace"))
    return m[1], int(m[2]), g[1] if g else None


def copy_binlogs(server: Sandbox, dest) -> Path:
    """Copy the server's binlog files (not the datadir) as an operator pulling them would."""
    import shutil
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(server.binlog_dir).iterdir()):
        if re.fullmatch(r"binlog\.\d{6,}", f.name) or f.name == "binlog.index":
            shutil.copy2(f, dest / f.name)
    return dest


def target_url(server: Sandbox) -> str:
    return f"{server.url}?unix_socket={server.socket}"


class CliResult:
    def __init__(self, code: int, doc: dict, raw: str, err: str) -> None:
        self.code, self.doc, self.raw, self.err = code, doc, raw, err

    def __repr__(self) -> str:
        err = json.dumps(self.doc.get("error"), ensure_ascii=False, indent=1)
        ver = ((self.doc.get("restore") or {}).get("verification") or {}).get("problems")
        stop = json.dumps((self.doc.get("plan") or {}).get("stop"), ensure_ascii=False)
        return (f"CliResult(code={self.code}, error={err}, verification problems={ver}, stop={stop}, "
                f"stderr={self.err[-2000:]!r})")

    @property
    def plan(self) -> dict:
        return self.doc.get("plan") or {}

    @property
    def error(self) -> dict:
        return self.doc.get("error") or {}


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


def restore_args(inc, target: Sandbox | str, *extra: str, snapshots=None) -> list[str]:
    args = ["restore"]
    for snap in (snapshots if snapshots is not None else inc.dumps):
        args += ["--snapshot", str(snap)]
    args += ["--binlogs", str(inc.binlog_dir),
             "--target", target if isinstance(target, str) else target_url(target), "--yes", *extra]
    return args


def plan_args(inc, *extra: str, snapshots=None) -> list[str]:
    args = ["plan"]
    for snap in (snapshots if snapshots is not None else inc.dumps):
        args += ["--snapshot", str(snap)]
    return args + ["--binlogs", str(inc.binlog_dir), *extra]


def assert_restored(target: Sandbox, before: dict, before_schema: dict | None = None, *,
                    dbs=RESTORED, absent=("other",)) -> None:
    """The target holds exactly the `before` state of `dbs`, and none of `absent`."""
    with target.connect() as conn:
        have = databases(conn)
        for db in absent:
            assert db not in have, f"database {db} must not be restored, the target has it"
        got = checksums(conn, dbs)
        assert sorted(got) == sorted(before), "restored table set differs"
        diff = {t: (before[t], got[t]) for t in before if before[t] != got[t]}
        assert not diff, f"tables differ from the state before the disaster (expected, got): {diff}"
        if before_schema is not None:
            sch = schemas(conn, dbs)
            bad = {t: (before_schema[t], sch.get(t)) for t in before_schema if before_schema[t] != sch.get(t)}
            assert not bad, f"table definitions differ (expected, got): {bad}"


# -- servers ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def _target_server():
    with Sandbox() as s:
        yield s


def clean(server: Sandbox) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        for db in databases(conn) - SYSTEM_DBS:
            cur.execute(f"DROP DATABASE {q(db)}")


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
    from incident import build_incident

    cache: dict = {}

    def get(fmt: str = "ROW", meta: str | None = None):
        key = (fmt, meta)
        if key not in cache:
            work = tmp_path_factory.mktemp(f"incident-{format_id(key)}")
            with Sandbox(binlog=True, binlog_format=fmt, row_metadata=meta) as src:
                cache[key] = build_incident(src, work)
        return cache[key]

    return get
