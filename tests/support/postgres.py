"""A throwaway PostgreSQL server for the shared-store tests: `initdb` in a directory of its own,
`/tmp/rbpg-<pid>-<hex>` (an OwnedDir: if pytest is killed, the next run's sweep stops the server
and removes it), reachable only by its unix socket in that directory on a random port (never the
machine's own PostgreSQL), stopped and removed by `stop()`.

The binaries are PostgreSQL's own (`/usr/lib/postgresql/<version>/bin`, or on PATH); `find_bin()`
says why not when they are absent. PostgreSQL refuses to run as root: as root the server runs as
the `postgres` user (the Debian package's), in a directory made its own.
"""
from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from restore.mysql.leftovers import OwnedDir


def find_bin() -> tuple[Path | None, str]:
    """PostgreSQL's bin directory, or None and why the tests that need it are skipped."""
    on_path = shutil.which("initdb")
    candidates = ([str(Path(on_path).parent)] if on_path else []) + sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True)
    for candidate in candidates:
        if all((Path(candidate) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            if os.getuid() == 0:
                try:
                    pwd.getpwnam("postgres")
                except KeyError:
                    return None, "PostgreSQL refuses to run as root and there is no `postgres` user to run it as"
            return Path(candidate), ""
    return None, ("no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or in /usr/lib/postgresql/*/bin: "
                  "install the `postgresql` package (./dev setup does) to run the store tests against PostgreSQL")


class PgServer:
    """`url(db)` is what `[store] url` would name; `admin()` runs SQL as the superuser."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = random.randint(20000, 60000)   # names the socket file only: no TCP listener
        self.dir: OwnedDir | None = None

    def _run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        user = {}
        if os.getuid() == 0:
            pw = pwd.getpwnam("postgres")
            user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        return subprocess.run(list(args), check=True, capture_output=True, text=True, **user, **kw)

    def start(self) -> "PgServer":
        # In /tmp itself, not the suite's private temp dir: the server's user must reach it.
        self.dir = OwnedDir("rbpg", tempfile.gettempdir() if os.getuid() != 0 else "/tmp")
        try:
            os.chmod(self.dir.path, 0o755)
            data = self.dir.path / "data"
            data.mkdir(mode=0o700)
            if os.getuid() == 0:
                pw = pwd.getpwnam("postgres")
                os.chown(self.dir.path, pw.pw_uid, pw.pw_gid)
                os.chown(data, pw.pw_uid, pw.pw_gid)
            self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--no-instructions")
            options = (f"-p {self.port} -k {self.dir.path} -c listen_addresses='' -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=60")
            self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.dir.path / "log"),
                      "-w", "-t", "60", "start", stdin=subprocess.DEVNULL)
        except subprocess.CalledProcessError as exc:
            log = self.dir.path / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {exc.cmd[0]} said {exc.stderr.strip()} {tail}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.dir.path}&port={self.port}"

    def admin(self, *statements: str) -> None:
        """Statements outside a transaction (CREATE/DROP DATABASE), as the superuser."""
        import psycopg
        with psycopg.connect(host=str(self.dir.path), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def fresh_database(self, name: str) -> str:
        """An empty database `name` (dropped first, with any sessions left on it); its URL."""
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name} ENCODING 'UTF8'")
        return self.url(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        data = self.dir.path / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
            deadline = time.monotonic() + 10
            while (data / "postmaster.pid").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.dir.remove()
        self.dir = None


def start_pg() -> PgServer:
    """A started server, or the test is skipped saying why there is none."""
    import pytest
    bindir, why = find_bin()
    if bindir is None:
        pytest.skip(why)
    return PgServer(bindir).start()
