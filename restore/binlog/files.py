"""Reads archived binlog files offline: no server needed.

Every event is checked as it is read: framing, next-position, CRC32 when the file announces
checksums, and a type we know how to treat (or one its server flagged ignorable). Anything that
cannot be read exactly stops the run with the file and position at fault. Relay logs (a replica's
`*-relay-bin.NNNNNN`) are read too: their events keep the source's positions, so there only the
chain of event sizes is checked, and positions are offsets in the relay file. A truncated last event in the newest file (what a
crashed server leaves) is not an error by itself: the reader records it and ends, so that
everything complete before it stays usable; the planner decides and reports.
"""
from __future__ import annotations

import itertools
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from restore.binlog import events as be
from restore.binlog.gtid_continuity import TRACKED, GtidContinuity
from restore.errors import BinlogError

_NAME = re.compile(r"^(?P<base>.+)\.(?P<num>\d{6,})$")
_RELAY_NAME = re.compile(r"relay-(?:bin|log)", re.I)   # host-relay-bin.000001, mysqld-relay-bin.000001
_BLOCK = 4 << 20
_MAX_EVENT = (1 << 30) + 64  # max_allowed_packet's ceiling plus headroom: larger is corruption


@dataclass
class Truncation:
    file: str
    pos: int
    reason: str


_KNOWN_TYPES = be.KNOWN_TYPES
# Types the scan loop passes without a second look (the others go through _check_header).
_PLAIN_TYPES = _KNOWN_TYPES - {be.START_ENCRYPTION}


GAP_SUFFIX = ".gap"  # the archiver's marker beside a file it could not finish (the server purged it)


class BinlogDirectory:
    """A directory of binlog files `base.000001`, `base.000002`, ... (an archive or a datadir)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise BinlogError(f"binlog directory {self.path} does not exist",
                              hint="pass --binlogs the directory holding the binlog files, or a mysql:// DSN")
        groups: dict[str, dict[int, str]] = {}
        for entry in os.listdir(self.path):
            m = _NAME.match(entry)
            if m and (self.path / entry).is_file():
                groups.setdefault(m["base"], {})[int(m["num"])] = entry
        if not groups:
            raise BinlogError(f"no binlog files (NAME.000001 ...) in {self.path}",
                              hint="copy the server's binlog files there, or pass a mysql:// DSN")
        self._groups = groups
        self.truncation: Truncation | None = None
        # Files that end without ROTATE or STOP although later ones follow: a server crash leaves
        # that, and so does a copy cut short. One whose successor's GTID list announces transactions
        # it lacks is refused (GtidContinuity); the others are warned about: (file, end position,
        # whether the next file's GTID list showed nothing missing).
        self._unended: list[tuple[str, int]] = []
        self.gtids = GtidContinuity()  # the GTID state of the last `events()` stream, where it got to

    @property
    def unended(self) -> list[tuple[str, int, bool]]:
        return [(name, end, name in self.gtids.checked) for name, end in self._unended]

    def files(self, base: str | None = None) -> list[str]:
        if base is None:
            if len(self._groups) > 1:
                raise BinlogError(
                    f"{self.path} holds binlogs of several servers: {', '.join(sorted(self._groups))}",
                    hint="keep one server's binlogs per directory")
            base = next(iter(self._groups))
        if base not in self._groups:
            return []
        return [self._groups[base][n] for n in sorted(self._groups[base])]

    def first_file(self) -> str:
        return self.files()[0]

    def describe(self) -> str:
        return str(self.path)

    def _sequence_from(self, start_file: str) -> list[str]:
        m = _NAME.match(start_file)
        if not m or m["base"] not in self._groups:
            raise BinlogError(f"binlog file {start_file} is not in {self.path}",
                              hint="copy it (and every later file) there; the dump's coordinates need it")
        numbers = self._groups[m["base"]]
        first = int(m["num"])
        if first not in numbers:
            raise BinlogError(f"binlog file {start_file} is not in {self.path}",
                              hint="copy it (and every later file) there; the dump's coordinates need it")
        wanted = [n for n in sorted(numbers) if n >= first]
        for prev, nxt in zip(wanted, wanted[1:]):
            if nxt != prev + 1:
                width = len(m["num"])
                missing = f"{m['base']}.{prev + 1:0{width}d}"
                raise BinlogError(
                    f"binlog file {missing} is missing from {self.path} (between {numbers[prev]} and {numbers[nxt]})",
                    hint="copy the missing file from the server or its archive; replaying across a gap would lose changes")
        return [numbers[n] for n in wanted]

    def events(self, start_file: str | None = None, start_pos: int = 4) -> Iterator[be.RawEvent]:
        """Every event from `start_file:start_pos` to the end of the newest file.

        The format description of each file is always yielded first (the applier needs it),
        even when `start_pos` is past it.
        """
        self.truncation = None
        self._unended = []
        files = self._sequence_from(start_file or self.first_file())
        last = len(files) - 1
        self.gtids = gtids = GtidContinuity()   # across the files of this one stream
        # chain() hands each event straight from the file scan to the consumer: one Python
        # generator level less per event. Only the last file may end truncated (earlier ones raise).
        return itertools.chain.from_iterable(
            self._scan(name, start_pos if index == 0 else 4, index == last, gtids) for index, name in enumerate(files))

    def _open(self, name: str):
        path = self.path / name
        # Plain buffered reads, not mmap: touched mmap pages would count as our memory and
        # grow with the file; this keeps the footprint at one event plus the buffer.
        try:
            fh = open(path, "rb", buffering=1 << 20)
        except OSError as exc:
            raise BinlogError(f"cannot read binlog file {path}: {exc.strerror}", where=f"{name}:0",
                              hint="check that the file is still there and readable") from None
        size = os.fstat(fh.fileno()).st_size
        if size < 4:
            fh.close()
            raise BinlogError(f"{name} is empty or cut short ({size} bytes)", where=f"{name}:0",
                              hint="copy the file again from the server or the archive")
        return fh, size

    def _scan(self, name: str, start_pos: int, last: bool, gtids: GtidContinuity) -> Iterator[be.RawEvent]:
        fh, size = self._open(name)
        with fh:
            if fh.read(4) != be.MAGIC:
                raise BinlogError(f"{name} is not a binlog file (bad magic number)", where=f"{name}:0",
                                  hint="check the file: an encrypted or compressed copy (gzip?) must be restored to the original first")
            pos = 4
            checksum = False
            seen_fde = False
            # Read in blocks and slice events out of them: one read() per event costs more than
            # everything else we do with a small event. This loop runs once per event of every
            # plan and replay, so the common path is kept to a few comparisons.
            buf, off = b"", 0
            header = be.parse_header
            crc32, residue, known = zlib.crc32, be.CRC32_RESIDUE, _PLAIN_TYPES
            hlen, max_event, raw_event, fde_type = be.HEADER_LEN, _MAX_EVENT, be.RawEvent, be.FORMAT_DESCRIPTION
            tracked, feed = TRACKED, gtids.feed
            looked_into = TRACKED | {fde_type}   # one test per event finds the few read for themselves
            etype = None
            # A relay log keeps the source's end_log_pos in its events: the chain of event sizes is
            # checked (it must reach the file's end) but not the positions. Known by its name, or by
            # what the replica writes when it connects: a ROTATE or a format description from
            # another server (the source) than the one whose format description opens the file.
            relay = _RELAY_NAME.search(name) is not None
            own_id: int | None = None    # server id of the file's first format description
            sourced = False              # a ROTATE of another server was seen
            while pos < size:
                if len(buf) - off < hlen:
                    buf, off = buf[off:] + fh.read(_BLOCK), 0
                    if len(buf) < hlen:
                        self._truncated(name, pos, last, f"{size - pos} stray bytes after the last complete event")
                        return
                ts, etype, server_id, ev_size, next_pos, flags = header(buf, off)
                end = pos + ev_size
                if end > size or next_pos != end or etype not in known or ev_size < hlen or ev_size > max_event:
                    # Rare: a special event, a file over 4 GiB (next_pos wraps), or damage.
                    if end > size and hlen <= ev_size <= max_event and etype in _KNOWN_TYPES:
                        self._truncated(name, pos, last, f"the event at {pos} needs {ev_size} bytes, the file has {size - pos}")
                        return
                    if (etype == be.ROTATE or etype == fde_type) and own_id is not None and server_id != own_id:
                        sourced = True
                    if not relay and sourced and server_id != own_id and next_pos and next_pos != end & 0xFFFFFFFF:
                        relay = True
                    self._check_header(name, pos, etype, ev_size, 0 if relay else next_pos, flags)
                if end <= start_pos and etype != fde_type and etype not in tracked:
                    # Before the start: skip the body unread (checksums are checked where we read).
                    # GTIDs and the GTID list are read all the same: the check across files counts them.
                    if ev_size > len(buf) - off:
                        fh.seek(end)
                        buf, off = b"", 0
                    else:
                        off += ev_size
                    pos = end
                    continue
                if len(buf) - off < ev_size:
                    buf, off = buf[off:] + fh.read(max(_BLOCK, ev_size)), 0
                data = buf[off:off + ev_size]
                off += ev_size
                if etype in looked_into:
                    if etype == fde_type:
                        checksum = be.parse_format_description(data).checksum
                        seen_fde = True
                        if own_id is None:
                            own_id = server_id
                        if checksum and not be.crc_ok(data):
                            self._crc_mismatch(name, pos)
                    else:  # a GTID or a GTID list: counted for the check across files (GtidContinuity)
                        if not seen_fde:
                            self._no_format_description(name, pos)
                        if checksum and crc32(data) != residue:
                            self._crc_mismatch(name, pos)
                        gap = feed(etype, data, name, pos, checksum)
                        if gap is not None:
                            raise gap.error(str(self.path))
                        if end <= start_pos:
                            pos = end
                            continue
                elif not seen_fde:
                    self._no_format_description(name, pos)
                elif checksum and crc32(data) != residue:
                    self._crc_mismatch(name, pos)
                yield raw_event(name, pos, ts, etype, server_id, flags, data, checksum)
                pos = end
            if not last:
                # Only a replay that goes on into the next file crosses the gap: one stopping
                # before this file's end (--stop-before) is fine.
                marker = self.path / (name + GAP_SUFFIX)
                if marker.exists():
                    raise BinlogError(f"{self.path} lost binlog after {name}: {marker.read_text().strip()}",
                                      where=f"{name}:{pos}",
                                      hint="restore from a base backup taken after the gap, or stop before it "
                                           "(--stop-before a GTID or FILE:POS inside the archived part)")
                gtids.file_ended(name, pos, etype in (be.ROTATE, be.STOP))
                if etype not in (be.ROTATE, be.STOP):
                    self._unended.append((name, pos))

    @staticmethod
    def _check_header(name: str, pos: int, etype: int, ev_size: int, next_pos: int, flags: int = 0) -> None:
        """Raises for a header that makes no sense; returns for the rare legitimate cases (an event
        of a type we do not know that its server flagged ignorable passes: the Walker notes it)."""
        if ev_size < be.HEADER_LEN or ev_size > _MAX_EVENT or (
                etype not in _KNOWN_TYPES and not flags & be.LOG_EVENT_IGNORABLE_F):
            raise BinlogError(
                f"{name} is corrupt at position {pos}: event header makes no sense "
                f"(type {etype}, size {ev_size})", where=f"{name}:{pos}",
                hint="copy the file again from the server; if the server's copy is damaged too, stop the plan before this position with --stop-before")
        if etype == be.START_V3 and pos == 4:
            raise BinlogError(f"{name} was written by MySQL 3.23 or 4.x (binlog format v1/v3: a START_EVENT_V3 at "
                              "position 4), which restore-bot does not read: it reads format v4 (MySQL 5.0 and "
                              "later, every MariaDB)", where=f"{name}:{pos}",
                              hint="replay this file with the mysqlbinlog of the MySQL version that wrote it, or "
                                   "restore from a base backup taken after the server was upgraded")
        if next_pos and next_pos != (pos + ev_size) & 0xFFFFFFFF:
            raise BinlogError(f"{name} is corrupt at position {pos}: next position {next_pos} "
                              f"does not follow the event size {ev_size}", where=f"{name}:{pos}",
                              hint="copy the file again from the server")
        if etype == be.START_ENCRYPTION:
            raise BinlogError(f"{name} is encrypted (START_ENCRYPTION event at {pos}); it cannot be read offline",
                              where=f"{name}:{pos}",
                              hint="pass --binlogs as a mysql:// DSN of the server that holds the key")

    @staticmethod
    def _no_format_description(name: str, pos: int) -> None:
        raise BinlogError(f"{name} has no format description event before position {pos}",
                          where=f"{name}:{pos}", hint="the file is damaged; copy it again")

    @staticmethod
    def _crc_mismatch(name: str, pos: int) -> None:
        raise BinlogError(f"{name}: CRC32 mismatch in the event at position {pos}",
                          where=f"{name}:{pos}",
                          hint="the file is damaged; copy it again from the server or the archive")

    def _truncated(self, name: str, pos: int, last: bool, detail: str) -> None:
        if not last:
            raise BinlogError(f"{name} is truncated at position {pos} ({detail}) but later files follow",
                              where=f"{name}:{pos}",
                              hint="copy the complete file again from the server or the archive")
        self.truncation = Truncation(name, pos, detail)
