"""One run of the server's own command-line client, fed a dump (or part of one) by us.

The dump goes through us rather than being handed over as a file so that progress can be
reported and replication commands in it (`--master-data=1` writes a live `CHANGE MASTER TO`)
are neutralised instead of re-pointing the target's replication.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from restore.errors import TargetError
from restore.mysql.dsn import Dsn
from restore.mysql.procs import die_with_parent

REPLICATION = re.compile(rb"^\s*(CHANGE MASTER TO|CHANGE REPLICATION SOURCE TO|SET GLOBAL gtid_slave_pos|"
                         rb"SET @@GLOBAL\.GTID_PURGED|START SLAVE|START REPLICA)", re.I)
_AT_LINE = re.compile(r"\bat line (\d+)")
_CHUNK = 1 << 20
_LEFT_OUT = b"-- (restore-bot left out) "


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


def lines_out(fh: BinaryIO, start: int, end: int,
              muted: Sequence[tuple[int, int]] = ()) -> Iterator[tuple[int, bytes]]:
    """(bytes read, line to send) for the lines of the file's [start, end): a replication command
    is left out as a comment, every line of it (mysqldump's GTID_PURGED of many server uuids takes
    several), as is every line of the `muted` ranges (the splitter's, which knows literals)."""
    fh.seek(start)
    at = start
    going_on = False   # a left-out statement's first line did not end it: nor does the next, maybe
    while at < end:
        line = fh.readline(min(end - at, _CHUNK))
        if not line:
            return
        if going_on or any(s <= at < e for s, e in muted) or REPLICATION.match(line):
            going_on = not line.rstrip().endswith(b";")
            yield len(line), _LEFT_OUT + line
        else:
            yield len(line), line
        at += len(line)


class Client:
    """A `mariadb` client reading statements from us. Its stderr goes to an unnamed temp file, so
    a chatty client can never block on a full pipe while we write. The client is killed when the
    thread that started it ends (die_with_parent): start it in the thread that waits for it."""

    def __init__(self, dsn: Dsn, init: Sequence[str] = ()) -> None:
        self._err = tempfile.TemporaryFile()
        init_command = [f"--init-command={';'.join(init)}"] if init else []
        with client_options(dsn) as (option, fds):
            # A dump without SET NAMES (mariadb-dump --compact) is in the dump tool's default, utf8mb4;
            # the client's own default (utf8mb3 here) refuses its 4-byte characters. A dump's own SET
            # NAMES still decides.
            self.proc = subprocess.Popen([client_binary(), option, "--binary-mode", "--max-allowed-packet=1G",
                                          "--default-character-set=utf8mb4", *init_command],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err,
                                         pass_fds=fds, preexec_fn=die_with_parent())
        self.lines = 0          # lines sent so far: maps the client's "at line N" back to the dump
        self.broken = False

    def send(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.lines += data.count(b"\n")
        except BrokenPipeError:
            self.broken = True   # the client stopped on an error: finish() reports it

    def send_lines(self, fh: BinaryIO, start: int, end: int, count: Callable[[int], None] | None = None,
                   muted: Sequence[tuple[int, int]] = ()) -> None:
        """The file's [start, end) line by line, replication commands neutralised (lines_out)."""
        for size, line in lines_out(fh, start, end, muted):
            if self.broken:
                return
            self.send(line)
            if count:
                count(size)

    def send_raw(self, fh: BinaryIO, start: int, end: int, count: Callable[[int], None] | None = None) -> None:
        """The file's [start, end) as it is, in large reads: a table's section, which holds only
        that table's own statements (restore.replay.dump_split), needs no line-by-line look."""
        fh.seek(start)
        left = end - start
        while left > 0 and not self.broken:
            data = fh.read(min(left, _CHUNK))
            if not data:
                break
            left -= len(data)
            self.send(data)
            if count:
                count(len(data))

    def send_raw_muted(self, fh: BinaryIO, start: int, end: int, muted: Sequence[tuple[int, int]],
                       count: Callable[[int], None] | None = None) -> None:
        """send_raw, but each of the `muted` ranges (sorted, inside [start, end)) left out as
        comments, so the client's line numbers still match the file's."""
        at = start
        for s, e in muted:
            self.send_raw(fh, at, s, count)
            self.send_lines(fh, s, e, count, muted=[(s, e)])
            at = e
        self.send_raw(fh, at, end, count)

    def finish(self) -> tuple[int, str]:
        """Close its input, wait for it; (exit code, the end of what it printed on stderr)."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        code = self.proc.wait()
        self._err.seek(0)
        err = self._err.read().decode("utf-8", "replace").strip()[-800:]
        self._err.close()
        return code, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


def dump_line(err: str, sent_before: int, first_line: int) -> int | None:
    """The dump's line number for the client's "at line N", when the part it was fed started at
    the dump's line `first_line` after `sent_before` lines of our own (the header, a USE)."""
    m = _AT_LINE.search(err)
    if not m or int(m[1]) <= sent_before:
        return None
    return first_line + int(m[1]) - sent_before - 1
