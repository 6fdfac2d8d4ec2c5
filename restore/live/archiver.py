"""Keeps a raw, CRC-verified copy of a server's binlog files, continuously.

Files in the archive are byte-identical to the server's (same names, same positions), so the
engine's `--binlogs DIR` reads them like a datadir. Only whole events are appended, each with
one write; on start the newest archived file is checked event by event and resumed at its end
(a torn tail left by a power cut is the only thing ever cut off). Finished files are never
opened for writing again. Retention deletes whole, finished files, oldest first, and only those
before the file the newest base backup starts in.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from restore.binlog import events as be
from restore.binlog.files import GAP_SUFFIX, BinlogDirectory
from restore.binlog.gtid_continuity import GtidContinuity, GtidGap
from restore.errors import BinlogError, RestoreError
from restore.live.backups import Backup, describe_backup, dump_files
from restore.live.follow import Follower
from restore.mysql.dsn import Dsn

log = logging.getLogger("restore-bot.archive")
_NAME = re.compile(r"^(?P<base>.+)\.(?P<num>\d{6,})$")


class ArchiveError(RestoreError):
    pass


def _number(name: str) -> int:
    return int(_NAME.match(name)["num"])


def _archived(directory: Path) -> list[Path]:
    """The binlog files in `directory`, oldest first."""
    return sorted((p for p in directory.iterdir() if _NAME.match(p.name)), key=lambda p: _number(p.name))


def _append(fh, data: bytes) -> None:
    """All of `data`, or OSError (a short write is continued until the disk refuses)."""
    view = memoryview(data)
    while view:
        view = view[fh.write(view):]


class Archiver(Follower):
    name = "archive"

    def __init__(self, dsn: Dsn, directory: str | os.PathLike, *, on_trouble: Callable[[str], None] | None = None,
                 keep_days: float | None = None, keep_bytes: int | None = None,
                 backup_dir: str | os.PathLike | None = None) -> None:
        """`backup_dir` holds the base backups: retention keeps every binlog the newest one needs,
        and without it (or without that backup's coordinates) retention deletes nothing."""
        super().__init__(on_trouble)
        self.dsn = dsn
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_days, self.keep_bytes = keep_days, keep_bytes
        self.backup_dir = Path(backup_dir) if backup_dir is not None else None
        self._reported_gap: str | None = None
        self._retention_blocked: str | None = None  # the reason last reported, so it is reported once
        self._newest_backup: tuple[tuple[Path, int, int], Backup] | None = None  # read once per dump file

    # -- where to continue ---------------------------------------------------------------------
    def resume_point(self) -> tuple[str | None, int]:
        """The newest archived file and the end of its last complete event (torn tail cut off)."""
        newest, end, _, _ = self._scan_newest()
        return newest, end

    def _scan_newest(self) -> tuple[str | None, int, bool, GtidContinuity]:
        """`resume_point()`, whether the newest file is complete (ends in its ROTATE or STOP), and the
        GTIDs it holds (so that the next file's GTID list can be checked against them)."""
        names = _archived(self.dir)
        if not names:
            return None, 4, False, GtidContinuity()
        newest = names[-1].name
        path = self.dir / newest
        end, last_type = 4, None
        reader = BinlogDirectory(self.dir)
        try:
            for ev in reader.events(newest, 4):
                if ev.file != newest:
                    break
                end, last_type = ev.end, ev.type
        except BinlogError as exc:
            raise ArchiveError(f"the archived file {path} is damaged: {exc}", where=exc.where,
                               hint="move it out of the archive; the archiver then copies it again from the server") from None
        size = path.stat().st_size
        if size > end:
            log.warning("%s: cutting a torn tail of %d bytes at %d", newest, size - end, end)
            with open(path, "r+b") as fh:
                fh.truncate(end)
        # A server ends a file with ROTATE (flush, size limit) or STOP (clean shutdown) and never
        # writes to it again; a file ending in anything else may have had more on the server.
        return newest, end, last_type in (be.ROTATE, be.STOP), reader.gtids

    def check_gap(self, server_files: list[str], newest: str | None, end: int = 4,
                  complete: bool = False) -> str | None:
        """What the archive lost, if the server purged binlog it had not archived yet; else None.

        `newest` is the newest archived file, `end` where its copy ends and `complete` whether
        that copy reached the file's end: only then may the server have purged it harmlessly.
        """
        if newest is None or newest in server_files:
            return None  # nothing archived yet, or the server still has everything we lack
        num = _number(newest)
        later = [f for f in server_files if _NAME.match(f) and _number(f) > num]
        if not later:
            return None  # not a purge (RESET MASTER, another server): copy() refuses it
        if not complete:
            return (f"binlog gap: {newest} was purged on the server before it was fully archived: the archive "
                    f"has it only up to position {end} (no ROTATE event at its end) and the server now starts at "
                    f"{later[0]}; the changes from {newest}:{end} up to {later[0]} are not in the archive")
        if _number(later[0]) == num + 1:
            return None  # the server purged the file we finished: fine, we continue with the next
        return (f"binlog gap: the archive ends with the complete {newest}, but the server has {later[0]} "
                f"onwards (the files in between were purged before they were archived); "
                f"changes in between are not in the archive")

    # -- copying -------------------------------------------------------------------------------
    def follow_once(self) -> None:
        try:
            self.copy(blocking=True)
        except OSError as exc:  # the archive directory itself: reported and retried like an outage
            raise ArchiveError(f"cannot use the archive directory {self.dir}: {exc.strerror or exc}",
                               where=str(getattr(exc, "filename", None) or self.dir),
                               hint="check the disk and the directory's permissions; archiving resumes by itself") from None

    def copy(self, *, blocking: bool = False) -> int:
        """Append everything new; returns the number of events written."""
        newest, end, complete, gtids = self._scan_newest()
        source = self.open_source(self.dsn, blocking=blocking)
        source.on_gap = self._gtid_gap
        server_files = [name for name, _ in source.binary_logs()]
        start, pos = newest, end
        if newest is None or newest not in server_files:
            start, pos = self._continue_with(server_files, newest, end), 4
            gtids = GtidContinuity()  # the server's next file does not follow the archived one's GTIDs
        gap = self.check_gap(server_files, newest, end, complete)
        if gap and not complete:
            # Beside the file: a restore reading the archive must not run across the gap unawares.
            marker = self.dir / (newest + GAP_SUFFIX)
            if not marker.exists():
                marker.write_text(gap + "\n")
        if gap and gap != self._reported_gap:
            # An alert, not an exception: raising would stop the archive at the gap for good,
            # while what the server still has must go on being archived. The partial file stays
            # as it is (it holds everything up to the gap). Reported once, not on every retry.
            log.warning("%s", gap)
            self.on_trouble(f"{gap}; archiving goes on from {start} — take a new base snapshot now "
                            f"(/backup now): restores from the archive can only start after the gap")
            self._reported_gap = gap
        written = 0
        out = None
        current = None
        try:
            for ev in source.events(start, pos, gtids=gtids):
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

    def _gtid_gap(self, gap: GtidGap) -> None:
        """A file the server ended early at a commit (its successor's GTID list names transactions it
        lacks): the archive is a byte copy, so it lacks them too. Marked beside the file like a purge
        gap, so that no restore runs across it, and reported once; archiving goes on."""
        text = f"binlog gap: {gap.describe(self.dsn.redacted())}"
        marker = self.dir / (gap.file + GAP_SUFFIX)
        if not marker.exists():
            marker.write_text(text + "\n")
        if text != self._reported_gap:
            log.warning("%s", text)
            self.on_trouble(f"{text}; archiving goes on — take a new base snapshot now (/backup now): restores "
                            f"from the archive can only run up to {gap.file}:{gap.end} or start after {gap.next_file} began")
            self._reported_gap = text

    def _continue_with(self, server_files: list[str], newest: str | None, end: int) -> str:
        """The server file to archive next when the server no longer has `newest` (or none is archived)."""
        if not server_files:
            raise ArchiveError(f"{self.dsn.redacted()} lists no binary logs", hint="enable log_bin on the source")
        if newest is None:
            return server_files[0]
        later = [f for f in server_files if _NAME.match(f) and _number(f) > _number(newest)]
        if not later:
            # Appending the server's lower-numbered files to archived ones would rewrite them.
            raise ArchiveError(
                f"the server's binlogs ({server_files[0]} .. {server_files[-1]}) do not follow the archive's "
                f"newest file {newest} (archived up to {end}): its binlogs were reset (RESET MASTER) or "
                f"this is another server", where=f"{newest}:{end}",
                hint="archive this server into a new directory (move the old archive aside), then take "
                     "a new base snapshot (/backup now)")
        return later[0]

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
        """Delete finished files past `keep_days`/`keep_bytes`, oldest first; returns their names.

        Never the file being written, nor the file the newest base backup starts in or any later
        one: a restore from that backup replays them. Without its coordinates, nothing at all.
        """
        if self.keep_days is None and self.keep_bytes is None:
            return []
        files = _archived(self.dir)
        needed = self._needed_from(files) if files else None
        if needed is None:
            return []
        finished = files[:-1]  # never the file being written
        removed = []
        now = time.time()
        total = sum(p.stat().st_size for p in files)
        for p in finished:
            if _number(p.name) >= needed:
                break  # this one and all later ones are the newest backup's replay
            too_old = self.keep_days is not None and now - p.stat().st_mtime > self.keep_days * 86400
            too_big = self.keep_bytes is not None and total > self.keep_bytes
            if not (too_old or too_big):
                break
            total -= p.stat().st_size
            p.unlink()
            removed.append(p.name)
        return removed

    def _needed_from(self, files: list[Path]) -> int | None:
        """The number of the archived file the newest base backup starts in, or None (keep them all)."""
        if self.backup_dir is None:
            return self._keep_all("the archiver was not told where the base backups are",
                                  "give it the backup directory ([keep] backup_dir)")
        try:
            newest = next(iter(dump_files(self.backup_dir)), None)
            if newest is None:
                return self._keep_all(f"there is no base backup in {self.backup_dir}",
                                      "take one (/backup now); retention resumes after it")
            backup = self._describe(newest)
        except (OSError, RestoreError) as exc:
            return self._keep_all(f"the newest base backup in {self.backup_dir} cannot be read: {exc}",
                                  "check it (a damaged dump cannot be restored either) and take a new one (/backup now)")
        start = backup.binlog_file
        m = _NAME.match(start) if start else None
        if m is None:
            return self._keep_all(f"the newest base backup {newest} records no binlog coordinates",
                                  "take backups with --master-data (/backup now does)")
        if m["base"] != _NAME.match(files[0].name)["base"]:
            return self._keep_all(f"the newest base backup {newest} starts at {start}:{backup.binlog_pos}, "
                                  f"which is not a file of this archive ({files[0].name} .. {files[-1].name})",
                                  "keep only this server's backups in the backup directory")
        self._retention_blocked = None
        return int(m["num"])

    def _describe(self, path: Path) -> Backup:
        """The backup's coordinates, read once per dump file: a dump can be many GB, and retention
        runs at every rotation."""
        st = path.stat()
        key = (path, st.st_mtime_ns, st.st_size)
        if self._newest_backup is None or self._newest_backup[0] != key:
            self._newest_backup = (key, describe_backup(path))
        return self._newest_backup[1]

    def _keep_all(self, reason: str, hint: str) -> None:
        """Report once (until it changes) that retention deletes nothing, and why: guessing which
        binlogs a backup needs could delete the only copy of changes a restore must replay."""
        text = f"retention keeps every archived binlog: {reason}"
        if text != self._retention_blocked:
            log.warning("%s", text)
            self.on_trouble(f"{text} — {hint}")
            self._retention_blocked = text
        return None
