"""Keeps a raw, CRC-verified copy of a server's binlog files, continuously.

Files in the archive are byte-identical to the server's (same names, same positions), so the
engine's `--binlogs DIR` reads them like a datadir. Only whole events are appended, each with
one write; on start the newest archived file is checked event by event and resumed at its end
(a torn tail left by a power cut is the only thing ever cut off). Finished files are never
opened for writing again. Retention deletes whole, finished files, oldest first.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from . import binlog_events as be
from .binlog_files import BinlogDirectory
from .dsn import Dsn
from .errors import BinlogError, RestoreError
from .follow import Follower

log = logging.getLogger("restore-bot.archive")
_NAME = re.compile(r"^(?P<base>.+)\.(?P<num>\d{6,})$")


class ArchiveError(RestoreError):
    pass


def _append(fh, data: bytes) -> None:
    """All of `data`, or OSError (a short write is continued until the disk refuses)."""
    view = memoryview(data)
    while view:
        view = view[fh.write(view):]


class Archiver(Follower):
    name = "archive"

    def __init__(self, dsn: Dsn, directory: str | os.PathLike, *, on_trouble: Callable[[str], None] | None = None,
                 keep_days: float | None = None, keep_bytes: int | None = None) -> None:
        super().__init__(on_trouble)
        self.dsn = dsn
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_days, self.keep_bytes = keep_days, keep_bytes

    # -- where to continue ---------------------------------------------------------------------
    def resume_point(self) -> tuple[str | None, int]:
        """The newest archived file and the end of its last complete event (torn tail cut off)."""
        names = sorted((p.name for p in self.dir.iterdir() if _NAME.match(p.name)),
                       key=lambda n: int(_NAME.match(n)["num"]))
        if not names:
            return None, 4
        newest = names[-1]
        path = self.dir / newest
        end = 4
        reader = BinlogDirectory(self.dir)
        try:
            for ev in reader.events(newest, 4):
                if ev.file != newest:
                    break
                end = ev.end
        except BinlogError as exc:
            raise ArchiveError(f"the archived file {path} is damaged: {exc}", where=exc.where,
                               hint="move it out of the archive; the archiver then copies it again from the server") from None
        size = path.stat().st_size
        if size > end:
            log.warning("%s: cutting a torn tail of %d bytes at %d", newest, size - end, end)
            with open(path, "r+b") as fh:
                fh.truncate(end)
        return newest, end

    def check_gap(self, server_files: list[str], newest: str | None) -> str | None:
        if newest is None or newest in server_files:
            return None
        m = _NAME.match(newest)
        later = [f for f in server_files if _NAME.match(f) and int(_NAME.match(f)["num"]) > int(m["num"])]
        if later and int(_NAME.match(later[0])["num"]) == int(m["num"]) + 1:
            return None  # the server purged the file we finished: fine, we continue with the next
        first = server_files[0] if server_files else "nothing"
        return (f"binlog gap: the archive ends in {newest}, but the server has {first} onwards "
                f"(purged before it was archived); changes in between are not in the archive")

    # -- copying -------------------------------------------------------------------------------
    def follow_once(self) -> None:
        self.copy(blocking=True)

    def copy(self, *, blocking: bool = False) -> int:
        """Append everything new; returns the number of events written."""
        newest, pos = self.resume_point()
        source = self.open_source(self.dsn, blocking=blocking)
        server_files = [name for name, _ in source.binary_logs()]
        gap = self.check_gap(server_files, newest)
        if gap:
            raise ArchiveError(gap, hint="take a new base snapshot now (/backup now); restores can only start after the gap")
        if newest is None or newest not in server_files:
            newest = next((f for f in server_files if newest is None or
                           int(_NAME.match(f)["num"]) > int(_NAME.match(newest)["num"])), server_files[0])
            pos = 4
        written = 0
        out = None
        current = None
        try:
            for ev in source.events(newest, pos):
                if self.stopping.is_set():
                    break
                if ev.file != current:
                    if out:
                        self._finish(out)
                    current = ev.file
                    out = self._open(ev.file)
                if ev.pos != out.tell():
                    continue  # an event the server repeats for a dump start (its format description)
                try:
                    _append(out, ev.data)
                except OSError as exc:
                    raise ArchiveError(f"cannot write {self.dir / ev.file} at {ev.pos}: {exc.strerror}",
                                       where=f"{ev.file}:{ev.pos}",
                                       hint="free space in the archive directory; the archiver resumes where it stopped") from None
                written += 1
                if ev.type == be.ROTATE:
                    self._finish(out)
                    out, current = None, None
                    self.apply_retention()
        finally:
            if out:
                try:
                    self._finish(out)
                except OSError:  # the write error above is the one to report
                    out.close()
        return written

    def _open(self, name: str):
        path = self.dir / name
        fresh = not path.exists()
        fh = open(path, "ab", buffering=0)  # unbuffered: a failed write leaves nothing pending
        if fresh:
            _append(fh, be.MAGIC)
        return fh

    @staticmethod
    def _finish(fh) -> None:
        os.fsync(fh.fileno())
        fh.close()

    # -- retention -------------------------------------------------------------------------------
    def apply_retention(self) -> list[str]:
        files = sorted((p for p in self.dir.iterdir() if _NAME.match(p.name)),
                       key=lambda p: int(_NAME.match(p.name)["num"]))
        finished = files[:-1]  # never the file being written
        removed = []
        now = time.time()
        total = sum(p.stat().st_size for p in files)
        for p in finished:
            too_old = self.keep_days is not None and now - p.stat().st_mtime > self.keep_days * 86400
            too_big = self.keep_bytes is not None and total > self.keep_bytes
            if not (too_old or too_big):
                break
            total -= p.stat().st_size
            p.unlink()
            removed.append(p.name)
        return removed
