"""GTID continuity across binlog files: finds transactions that no file read holds.

Every binlog file begins with the GTID state logged before it (MariaDB `GTID_LIST`: per domain and
server_id the last GTID; MySQL `PREVIOUS_GTIDS`: the set). The state at a file's start plus every
GTID event in the file is the state at its end, and the next file's list must announce nothing
beyond that. A file cut at a commit (a crash of the copy, not of the server; a copy cut short) has
lost its last transactions and its ROTATE, and the next file's list shows exactly which.

One `GtidContinuity` follows one stream of events, file after file; the readers (files offline,
the replication protocol) feed it the few events that matter and decide what a gap means for
them: a refusal for plan and restore, an alert (and a `.gap` marker) for the watcher and archiver.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from restore.binlog import events as be
from restore.binlog.gtid import GtidSet
from restore.errors import BinlogError

# The event types a reader hands to `feed()`: GTIDs and the list each file begins with.
TRACKED = frozenset({be.MARIADB_GTID, be.MYSQL_GTID, be.GTID_LIST, be.PREVIOUS_GTIDS})

_MARIADB_GTID = struct.Struct("<QI").unpack_from   # seq_no, domain at the body's start
_MYSQL_GNO = struct.Struct("<q").unpack_from
_MARIA, _MYSQL, _BODY = be.MARIADB_GTID, be.MYSQL_GTID, be.HEADER_LEN


@dataclass
class GtidGap:
    """`file` ends at `end` but `next_file`'s GTID list (at `listed`) announces `missing`."""

    file: str
    end: int
    rotated: bool           # the file ended with its ROTATE/STOP event (then the files do not belong together)
    next_file: str
    listed: int
    missing: list[str]
    mysql: bool

    def describe(self, source: str = "") -> str:
        how = ("ends with its ROTATE event" if self.rotated else
               "ends without its ROTATE event (cut short at a commit)")
        where = f" in {source}" if source else ""
        return (f"{self.file}{where} {how} at position {self.end}, but the GTID list of {self.next_file} "
                f"(at {self.next_file}:{self.listed}) shows transactions logged before {self.next_file} that "
                f"{self.file} does not hold: {', '.join(self.missing)}")

    def hint(self) -> str:
        text = (f"copy the complete {self.file} again from the server or the archive; or restore from a base "
                f"backup taken after the gap (after {self.next_file} began); or stop inside {self.file} "
                f"(--stop-before a GTID or FILE:POS before {self.file}:{self.end})")
        if self.mysql:
            text += (". (On a MySQL replica with log_replica_updates=OFF, or after SET gtid_purged, the list "
                     "also counts transactions never logged in this binlog)")
        return text

    def error(self, source: str = "") -> BinlogError:
        return BinlogError(self.describe(source) + ". Replaying across would silently leave them out",
                           where=f"{self.file}:{self.end}", hint=self.hint())


class GtidContinuity:
    """Fed, per stream: `feed(etype, data, file, pos, checksum)` for every event of a type in TRACKED,
    `file_ended(file, end, rotated)` when a file is left for the next one. `feed` returns the
    gap a file's GTID list reveals (or None); the caller raises or reports it."""

    __slots__ = ("_known", "_maria", "_mysql", "_closed", "checked")

    def __init__(self) -> None:
        self._known = False        # the state at the current file's start is known (its list was read)
        self._maria: dict[int, int] = {}                  # domain -> highest seq_no: start + seen
        self._mysql: dict[bytes, list[list[int]]] = {}    # sid (16 bytes) -> ranges seen, [lo, hi]
        self._closed: tuple | None = None   # (file, end, rotated, known, maria, mysql) of the file just left
        self.checked: set[str] = set()      # files whose successor's list was compared with them

    # -- per event -----------------------------------------------------------------------------
    def feed(self, etype: int, data: bytes, file: str, pos: int, checksum: bool) -> GtidGap | None:
        if etype == _MARIA:   # once per transaction of every plan: kept short
            seq, domain = _MARIADB_GTID(data, _BODY)
            maria = self._maria
            if seq > maria.get(domain, -1):
                maria[domain] = seq
            return None
        if etype == _MYSQL:
            sid = data[_BODY + 1:_BODY + 17]
            gno = _MYSQL_GNO(data, _BODY + 17)[0]
            ranges = self._mysql.get(sid)
            if ranges is None:
                self._mysql[sid] = [[gno, gno]]
            elif ranges[-1][1] + 1 == gno:
                ranges[-1][1] = gno
            else:
                ranges.append([gno, gno])
            return None
        return self._listed(be.RawEvent(file, pos, 0, etype, 0, 0, data, checksum))

    def file_ended(self, file: str, end: int, rotated: bool) -> None:
        self._closed = (file, end, rotated, self._known, self._maria, self._mysql)
        self._known, self._maria, self._mysql = False, {}, {}

    # -- at a file's GTID list -----------------------------------------------------------------
    def _listed(self, ev: be.RawEvent) -> GtidGap | None:
        file, pos = ev.file, ev.pos
        try:
            if ev.type == be.GTID_LIST:
                entries = [(g.domain, g.server, g.seq) for g in be.parse_gtid_list(ev)]
                ranges = None
            else:
                entries, ranges = None, be.parse_previous_gtids(ev)
        except (ValueError, IndexError) as exc:  # struct.error is a ValueError
            raise BinlogError(f"{file}:{pos}: cannot read the GTID list at the start of {file}: {exc}",
                              where=f"{file}:{pos}", hint="the file is damaged; copy it again") from None
        closed, self._closed = self._closed, None
        gap = None
        if closed is not None:
            prev, end, rotated, known, maria, mysql = closed
            missing = (_maria_missing(entries, maria, known) if entries is not None
                       else _mysql_missing(ranges, mysql, known))
            if missing:
                gap = GtidGap(prev, end, rotated, file, pos, missing, entries is None)
            self.checked.add(prev)
        # The state at this file's start: what its list says (GTIDs seen so far in it kept too).
        self._known = True
        if entries is not None:
            for domain, _server, seq in entries:
                if seq > self._maria.get(domain, -1):
                    self._maria[domain] = seq
        else:
            for uuid, spans in ranges.items():
                sid = bytes.fromhex(uuid.replace("-", ""))
                self._mysql[sid] = sorted([lo, hi] for lo, hi in spans) + self._mysql.get(sid, [])
        return gap


def _maria_missing(entries: list[tuple[int, int, int]], maria: dict[int, int], known: bool) -> list[str]:
    """Per domain, what the list announces beyond the highest seq_no read. Several server_ids in a
    domain (after a failover) are compared by seq_no, the domain's one counter. With the file's start
    unknown (no list read), only domains the file logged in are judged."""
    above: dict[int, list[tuple[int, int]]] = {}
    for domain, server, seq in entries:
        have = maria.get(domain)
        if have is None and not known:
            continue
        if have is None or seq > have:
            above.setdefault(domain, []).append((seq, server))
    out = []
    for domain in sorted(above):
        have = maria.get(domain)
        hi, server = max(above[domain])
        servers = sorted({s for _, s in above[domain]})
        if have is None:
            out.append(f"domain {domain} up to {domain}-{server}-{hi}")
        elif len(servers) > 1:
            out.append(f"domain {domain} seq_no {have + 1}..{hi} (servers {', '.join(map(str, servers))}; "
                       f"up to {domain}-{server}-{hi})")
        elif hi == have + 1:
            out.append(f"{domain}-{server}-{hi}")
        else:
            out.append(f"{domain}-{server}-{have + 1}..{domain}-{server}-{hi}")
    return out


def _mysql_missing(listed: dict[str, list[tuple[int, int]]], mysql: dict[bytes, list[list[int]]],
                   known: bool) -> list[str]:
    """The set difference, per uuid. With the file's start unknown, only uuids the file logged are
    judged, and everything below the first GTID read of each counts as read."""
    out = []
    for uuid in sorted(listed):
        have = mysql.get(bytes.fromhex(uuid.replace("-", "")))
        if have is None:
            if not known:
                continue
            have = []
        elif not known and min(lo for lo, _ in have) > 1:
            have = [[1, min(lo for lo, _ in have) - 1], *have]
        out += GtidSet.from_ranges({uuid: [(lo, hi) for lo, hi in have]}).missing(
            GtidSet.from_ranges({uuid: listed[uuid]}))
    return out
