"""An ephemeral local MariaDB/MySQL server: throwaway datadir, random port, removed on close.

Used as the default restore target (`--target sandbox`) and by the test-suite as source and
target servers.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql

from restore.errors import RestoreError
from restore.mysql.dsn import Dsn
from restore.mysql.leftovers import OwnedDir, sweep
from restore.mysql.procs import die_with_parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_program(*names: str) -> str | None:
    """The first of `names` on PATH or in the sbin/libexec directories server packages install to."""
    extra = ["/usr/sbin", "/usr/local/sbin", "/usr/libexec"]
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(extra)
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


class Sandbox:
    """A private mariadbd/mysqld. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        binlog: bool = False,
        binlog_format: str = "MIXED",
        row_metadata: str | None = None,
        server_id: int = 1,
        extra_args: list[str] | None = None,
        base_dir: str | None = None,
        datadir: str | os.PathLike | None = None,
    ) -> None:
        """`datadir`: start on an existing datadir (a prepared physical backup's copy) instead of a
        new one. The caller owns it: stop() leaves it in place. Its grant tables are the backed-up
        server's, whose root password we do not know, so the server skips them; its replication
        settings are the source's, so replication does not start."""
        self.binlog = binlog
        self.binlog_format = binlog_format
        self.row_metadata = row_metadata
        self.server_id = server_id
        self.extra_args = list(extra_args or [])
        self._base_dir = base_dir
        self.datadir = Path(datadir) if datadir is not None else None
        self._owned: OwnedDir | None = None
        self.dir: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Sandbox":
        server = find_program("mariadbd", "mysqld")
        installer = find_program("mariadb-install-db", "mysql_install_db")
        if not server or (not installer and self.datadir is None):
            raise RestoreError(
                "cannot start a sandbox server: mariadbd/mysqld not found on PATH",
                hint="install the server package (apt-get install mariadb-server) or pass --target DSN",
            )
        sweep(self._base_dir)  # what killed owners left: their datadirs, and servers still running in them
        # restore-bot-sandbox-<pid>-<hex>, locked while we live: a later sweep removes it if we are killed
        self._owned = OwnedDir("restore-bot-sandbox", self._base_dir)
        self.dir = self._owned.path
        if len(os.fsencode(self.socket)) > 107:  # sun_path: the server would start and then abort
            self._cleanup()
            raise RestoreError(f"sandbox: the socket path under {self._base_dir or tempfile.gettempdir()} "
                               "is longer than a unix socket allows (107 bytes)",
                               hint="set TMPDIR to a shorter directory, e.g. TMPDIR=/tmp")
        data = self.datadir or self.dir / "data"
        tmp = self.dir / "tmp"
        tmp.mkdir()
        if self.datadir is None:
            self._install(str(installer), data, tmp)
        for attempt in range(3):
            self.port = _free_port()
            args = [
                server, "--no-defaults", "--user=root", f"--datadir={data}",
                f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--tmpdir={tmp}",
                f"--pid-file={self.dir / 'pid'}", f"--log-error={self.dir / 'error.log'}",
                f"--server-id={self.server_id}", "--innodb-buffer-pool-size=128M",
                "--innodb-log-file-size=256M", "--max-allowed-packet=256M",
                "--skip-name-resolve", "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
            ]
            if self.datadir is not None:
                args += ["--skip-grant-tables", "--skip-slave-start"]
            if self.binlog:
                args += [f"--log-bin={self.dir / 'binlog'}", f"--binlog-format={self.binlog_format}"]
                if self.row_metadata:
                    args.append(f"--binlog-row-metadata={self.row_metadata}")
            args += self.extra_args
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=die_with_parent())
            if self._wait_ready():
                return self
            self._kill()
        log = (self.dir / "error.log").read_text(errors="replace")[-1500:] if self.dir else ""
        self._cleanup()
        raise RestoreError(f"sandbox server did not start; its log ends with:\n{log}",
                           hint="see the log above; a full disk or a missing server package are common causes")

    def _install(self, installer: str, data: Path, tmp: Path) -> None:
        out = subprocess.run(
            [installer, "--no-defaults", "--user=root", f"--datadir={data}", f"--tmpdir={tmp}",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            self._cleanup()
            raise RestoreError(f"sandbox: {installer} failed: {out.stderr.strip()[-500:]}",
                               hint="check that the server package is installed completely")

    def _wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                return False
            try:
                pymysql.connect(unix_socket=str(self.socket), user="root").close()
                return True
            except pymysql.err.OperationalError:
                time.sleep(0.05)
        return False

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def stop(self) -> None:
        """Shut the server down and delete its datadir."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._kill()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._owned:
            self._owned.remove()
            self._owned = None
            self.dir = None

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- access ----------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        assert self.dir is not None
        return self.dir / "sock"

    @property
    def data_path(self) -> Path:
        """Its datadir: the one given, or the one it made."""
        assert self.dir is not None
        return self.datadir or self.dir / "data"

    @property
    def binlog_dir(self) -> Path:
        assert self.dir is not None
        return self.dir

    @property
    def dsn(self) -> Dsn:
        return Dsn(user="root", password=None, host="127.0.0.1", port=self.port,
                   unix_socket=str(self.socket))

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}"

    def connect(self, **kw: object) -> pymysql.connections.Connection:
        return self.dsn.connect(**kw)

    def client_args(self) -> list[str]:
        """Arguments for the `mariadb`/`mysql` command-line tools to reach this server."""
        return ["--no-defaults", "--user=root", f"--socket={self.socket}"]
