"""GTID positions and sets for both flavours: MariaDB `domain-server-seq` and MySQL `uuid:ranges`.

This is the one place that knows how the two servers spell transaction ids.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .binlog_events import Gtid
from .errors import PlanError

_MARIADB = re.compile(r"^\d+-\d+-\d+$")
_MYSQL_ONE = re.compile(r"^[0-9a-fA-F-]{36}:\d+$")


def looks_like_gtid(text: str) -> bool:
    return bool(_MARIADB.match(text) or _MYSQL_ONE.match(text))


def parse_gtid(text: str) -> Gtid:
    text = text.strip()
    if _MARIADB.match(text):
        d, s, n = (int(x) for x in text.split("-"))
        return Gtid(text, domain=d, server=s, seq=n)
    if _MYSQL_ONE.match(text):
        uuid, n = text.rsplit(":", 1)
        return Gtid(f"{uuid.lower()}:{n}", seq=int(n), uuid=uuid.lower())
    raise PlanError(f"{text!r} is not a GTID", hint="write a MariaDB GTID as 0-1-113680 or a MySQL one as uuid:n")


@dataclass
class GtidSet:
    """What a dump already contains: MariaDB keeps one position per domain, MySQL sets of ranges."""

    text: str
    mariadb: dict[int, int] = field(default_factory=dict)              # domain -> last seq
    mysql: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # uuid -> ranges
    last: dict[int, str] = field(default_factory=dict)                 # domain -> its last GTID, as text

    @classmethod
    def parse(cls, text: str) -> "GtidSet":
        out = cls(text.strip())
        for part in (p.strip() for p in re.split(r",\s*", text.strip()) if p.strip()):
            if _MARIADB.match(part):
                d, _s, n = (int(x) for x in part.split("-"))
                if n >= out.mariadb.get(d, 0):
                    out.mariadb[d], out.last[d] = n, part
                continue
            pieces = part.split(":")
            uuid = pieces[0].lower()
            if len(uuid) != 36 or len(pieces) < 2:
                raise PlanError(f"cannot read GTID set {text!r} (at {part!r})",
                                hint="use the value the dump recorded, e.g. 0-1-5 or uuid:1-100")
            for rng in pieces[1:]:
                if not re.match(r"^\d+(-\d+)?$", rng):
                    continue  # MySQL 8.3 tags: not supported, refused elsewhere
                lo, _, hi = rng.partition("-")
                out.mysql.setdefault(uuid, []).append((int(lo), int(hi or lo)))
        return out

    @classmethod
    def from_gtid_list(cls, gtids: list[Gtid]) -> "GtidSet":
        """A MariaDB GTID_LIST (one entry per domain and server_id). Within a domain the highest seq_no
        is where the domain stood: a server that logged earlier (an old primary) has a lower one."""
        out = cls("")
        for g in gtids:
            if g.seq >= out.mariadb.get(g.domain, -1):
                out.mariadb[g.domain], out.last[g.domain] = g.seq, g.text
        out.text = ",".join(out.last[d] for d in sorted(out.last))
        return out

    @classmethod
    def from_ranges(cls, ranges: dict[str, list[tuple[int, int]]]) -> "GtidSet":
        """A MySQL GTID set given as uuid -> inclusive ranges (a PREVIOUS_GTIDS event)."""
        out = cls("", mysql={u: sorted(r) for u, r in ranges.items() if r})
        out.text = ",".join(f"{u}:" + ":".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in r)
                            for u, r in sorted(out.mysql.items()))
        return out

    def missing(self, earlier: "GtidSet") -> list[str]:
        """What `earlier` holds that this set does not, in words: one entry per MariaDB domain or
        MySQL uuid. `self` is what a dump contains, `earlier` what was logged before a binlog file:
        anything listed was logged after the dump and before the file, so it is in neither."""
        out = []
        for d in sorted(earlier.mariadb):
            seq, mine = earlier.mariadb[d], self.mariadb.get(d)
            if mine is None:
                out.append(f"domain {d} up to {earlier.last[d]} (the dump's position has nothing of domain {d})")
            elif seq > mine:
                span = f"seq_no {mine + 1}" if seq == mine + 1 else f"seq_no {mine + 1} to {seq}"
                out.append(f"domain {d} {span} (up to {earlier.last[d]})")
        for uuid in sorted(earlier.mysql):
            gaps = _subtract(earlier.mysql[uuid], self.mysql.get(uuid, []))
            if gaps:
                out.append(f"{uuid}:" + ":".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in gaps))
        return out

    def contains(self, gtid: Gtid) -> bool:
        if gtid.uuid:
            return any(lo <= gtid.seq <= hi for lo, hi in self.mysql.get(gtid.uuid, ()))
        last = self.mariadb.get(gtid.domain)
        return last is not None and gtid.seq <= last

    def __str__(self) -> str:
        return self.text


def _subtract(ranges: list[tuple[int, int]], minus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ranges: the parts of `ranges` not covered by `minus`."""
    out = []
    cut = sorted(minus)
    for lo, hi in sorted(ranges):
        for clo, chi in cut:
            if chi < lo or clo > hi:
                continue
            if clo > lo:
                out.append((lo, clo - 1))
            lo = max(lo, chi + 1)
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return out
