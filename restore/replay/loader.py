"""Loads a snapshot (a SQL dump) into the target with the server's own client.

The dump is streamed through us rather than handed over as a file so that progress can be
reported and replication commands in it (`--master-data=1` writes a live `CHANGE MASTER TO`)
are neutralised instead of re-pointing the target's replication.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from restore.errors import SnapshotError, TargetError
from restore.mysql.dsn import Dsn
from restore.mysql.procs import die_with_parent
from restore.mysql.quote import quote_ident
from restore.plan.snapshot import Snapshot

_REPLICATION = re.compile(rb"^\s*(CHANGE MASTER TO|CHANGE REPLICATION SOURCE TO|SET GLOBAL gtid_slave_pos|"
                          rb"SET @@GLOBAL\.GTID_PURGED|START SLAVE|START REPLICA)", re.I)


def client_binary() -> str:
    found = shutil.which("mariadb") or shutil.which("mysql")
    if not found:
        raise TargetError("the mariadb/mysql command-line client is not installed",
                          hint="install it (apt-get install mariadb-client) so snapshots can be loaded")
    return found


@contextmanager
def client_options(dsn: Dsn) -> Iterator[tuple[str, list[int]]]:
    """`--defaults-file=/dev/fd/N` and the fds to pass to one mariadb/mysql client run.

    The credentials reach the client through a pipe it reads as its option file: never on a
    command line others can read (ps), and never in a file a killed process would leave behind.
    A pipe is read once: one `with` per client run."""
    lines = ["[client]", f"user={dsn.user}"]
    if dsn.password:
        lines.append('password="' + dsn.password.replace("\\", "\\\\").replace('"', '\\"') + '"')
    if dsn.unix_socket:
        lines.append(f"socket={dsn.unix_socket}")
    else:
        lines += [f"host={dsn.host}", f"port={dsn.port}", "protocol=tcp"]
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, ("\n".join(lines) + "\n").encode())  # a few hundred bytes: fits the pipe's buffer
    finally:
        os.close(write_end)
    try:
        yield f"--defaults-file=/dev/fd/{read_end}", [read_end]
    finally:
        os.close(read_end)


def load_snapshot(dsn: Dsn, snap: Snapshot, progress: Callable[[int, int], None] | None = None, *,
                  init: Sequence[str] = ()) -> None:
    """`init`: session statements the client runs first (`SET SESSION sql_log_bin=0`)."""
    size = os.path.getsize(snap.path)
    with client_options(dsn) as (option, fds):
        init_command = [f"--init-command={';'.join(init)}"] if init else []
        proc = subprocess.Popen([client_binary(), option, "--binary-mode", "--max-allowed-packet=1G", *init_command],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=fds, preexec_fn=die_with_parent())
    assert proc.stdin is not None
    done = 0
    try:
        if snap.named_db:
            name = quote_ident(snap.named_db)
            proc.stdin.write(f"CREATE DATABASE IF NOT EXISTS {name};\nUSE {name};\n".encode())
        with open(snap.path, "rb") as fh:
            for line in fh:
                done += len(line)
                if _REPLICATION.match(line):
                    line = b"-- (restore-bot left out) " + line
                proc.stdin.write(line)
                if progress and done % (4 << 20) < len(line):
                    progress(done, size)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
    code = proc.wait()
    if code != 0:
        raise SnapshotError(f"loading {snap.path} into {dsn.redacted()} failed: {err[-800:]}",
                            where=snap.path,
                            hint="the client's message names the line of the dump at fault; fix the target or the dump and run again")
    if progress:
        progress(size, size)
