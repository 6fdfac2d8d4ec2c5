"""GTID positions and sets for both flavours: MariaDB `domain-server-seq` and MySQL `uuid:ranges`.

This is the one place that knows how the two servers spell transaction ids.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from restore.binlog.events import Gtid
from restore.errors import PlanError

_MARIADB = re.compile(r"^\d+-\d+-\d+$")
_MYSQL_ONE = re.compile(r"^[0-9a-fA-F-]{36}:\d+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")            # MySQL 8.3+ tagged GTIDs
_INTERVAL = re.compile(r"^(\d+)(?:-(\d+))?$")
# What a GTID spec may look like at a glance: MariaDB positions or MySQL sets, comma-separated.
_LOOKS = re.compile(r"^\s*(?:\d+-\d+-\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}(?::[^,\s]*)?)"
                    r"(?:\s*,\s*(?:\d+-\d+-\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}(?::[^,\s]*)?))*\s*$")
_SET_HINT = ("write MariaDB GTIDs as domain-server-seq (0-1-113680, several domains comma-separated: "
             "0-1-100,1-2-50) and MySQL ones as a GTID set: uuid:n, uuid:1-4:7-9, uuid:tag:1-5, "
             "uuid1:1-100,uuid2:1-3")


def looks_like_gtid(text: str) -> bool:
    """A MariaDB GTID/position or a MySQL GTID/set (it may still fail to parse: GtidSet.parse says why)."""
    return bool(_LOOKS.match(text))


def parse_gtid(text: str) -> Gtid:
    text = text.strip()
    if _MARIADB.match(text):
        d, s, n = (int(x) for x in text.split("-"))
        return Gtid(f"{d}-{s}-{n}", domain=d, server=s, seq=n)
    if _MYSQL_ONE.match(text) and _UUID.match(text.rsplit(":", 1)[0]):
        uuid, n = text.rsplit(":", 1)
        return Gtid(f"{uuid.lower()}:{int(n)}", seq=int(n), uuid=uuid.lower())
    raise PlanError(f"{text!r} is not a GTID", hint="write a MariaDB GTID as 0-1-113680 or a MySQL one as uuid:n")


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _ranges_text(ranges: list[tuple[int, int]]) -> str:
    return ":".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in ranges)


@dataclass
class GtidSet:
    """What a dump already contains: MariaDB keeps one position per domain, MySQL sets of ranges.

    The same text read as a list of transactions (`--stop-before`, `--skip`): `names()`. A MariaDB
    `0-1-100,1-2-50` then names those two transactions, a MySQL set every transaction in it.
    MySQL 8.3+ tagged GTIDs are kept under the key `uuid:tag` (untagged ones under `uuid`).
    """

    text: str
    mariadb: dict[int, int] = field(default_factory=dict)              # domain -> last seq
    mysql: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # uuid[:tag] -> ranges
    last: dict[int, str] = field(default_factory=dict)                 # domain -> its last GTID, as text
    named: set[str] = field(default_factory=set)                       # MariaDB GTIDs as written (normalised)

    @classmethod
    def parse(cls, text: str) -> "GtidSet":
        """MariaDB `0-1-100,1-2-50` or MySQL `uuid:1-5:7-9,uuid2:1-3` / `uuid:tag:1-5`; PlanError
        naming the part it cannot read."""
        out = cls(text.strip())
        flavours = set()
        for part in (p.strip() for p in text.strip().split(",")):
            if not part:
                continue
            if _MARIADB.match(part):
                flavours.add("MariaDB")
                d, s, n = (int(x) for x in part.split("-"))
                norm = f"{d}-{s}-{n}"
                out.named.add(norm)
                if n >= out.mariadb.get(d, 0):
                    out.mariadb[d], out.last[d] = n, norm
                continue
            flavours.add("MySQL")
            pieces = [p.strip() for p in part.split(":")]
            if not _UUID.match(pieces[0]):
                raise PlanError(f"cannot read GTID set {text.strip()!r}: {part!r} is neither a MariaDB GTID "
                                "(domain-server-seq) nor a MySQL one (uuid:n)", hint=_SET_HINT)
            uuid, key, got = pieces[0].lower(), pieces[0].lower(), False
            if len(pieces) < 2:
                raise PlanError(f"cannot read GTID set {text.strip()!r}: {part!r} names a server uuid but no "
                                "transaction number", hint=_SET_HINT)
            for piece in pieces[1:]:
                if (m := _INTERVAL.match(piece)) is not None:
                    lo, hi = int(m[1]), int(m[2] or m[1])
                    if lo < 1 or hi < lo:
                        raise PlanError(f"cannot read GTID set {text.strip()!r}: the interval {piece!r} of {uuid} "
                                        "is empty (MySQL transaction numbers start at 1, FIRST-LAST with FIRST <= LAST)",
                                        hint=_SET_HINT)
                    out.mysql.setdefault(key, []).append((lo, hi))
                    got = True
                elif _TAG.match(piece):
                    if key != uuid and key not in out.mysql:
                        raise PlanError(f"cannot read GTID set {text.strip()!r}: the tag {key.split(':')[1]!r} has "
                                        "no transaction number after it", hint=_SET_HINT)
                    key = f"{uuid}:{piece.lower()}"
                    got = False
                else:
                    raise PlanError(f"cannot read GTID set {text.strip()!r}: {piece!r} (in {part!r}) is neither a "
                                    "transaction number, a range FIRST-LAST nor a tag", hint=_SET_HINT)
            if not got:
                raise PlanError(f"cannot read GTID set {text.strip()!r}: {part!r} ends without a transaction "
                                "number", hint=_SET_HINT)
        if len(flavours) > 1:
            raise PlanError(f"GTID set {text.strip()!r} mixes MariaDB GTIDs (domain-server-seq) and MySQL ones "
                            "(uuid:n): a binlog has one kind", hint=_SET_HINT)
        out.mysql = {k: _merge(r) for k, r in out.mysql.items()}
        if out.mysql:
            out.text = out.mysql_text()
        elif out.named:
            out.text = ",".join(sorted(out.named, key=lambda g: tuple(int(x) for x in g.split("-"))))
        return out

    @classmethod
    def parse_start(cls, text: str) -> "GtidSet":
        """A start: what is already in the dump. A lone MySQL `uuid:n` means `uuid:1-n` (MySQL numbers
        one server's transactions 1, 2, 3...: everything up to n); a MariaDB GTID is a position already."""
        out = cls.parse(text)
        if len(out.mysql) == 1 and "," not in text:
            (key, ranges), = out.mysql.items()
            if len(ranges) == 1 and ranges[0][0] == ranges[0][1] and "-" not in text.strip().rsplit(":", 1)[1]:
                out.mysql[key] = [(1, ranges[0][1])]
                out.text = out.mysql_text()
        return out

    @property
    def flavour(self) -> str:
        return "mysql" if self.mysql else "mariadb"

    def mysql_text(self) -> str:
        """MySQL's own spelling: untagged ranges first, then each tag, per uuid."""
        by_uuid: dict[str, list[str]] = {}
        for key in sorted(self.mysql, key=lambda k: (k.split(":")[0], ":" in k, k)):
            uuid, _, tag = key.partition(":")
            by_uuid.setdefault(uuid, []).append((f"{tag}:" if tag else "") + _ranges_text(self.mysql[key]))
        return ",".join(f"{u}:" + ":".join(parts) for u, parts in by_uuid.items())

    def names(self, gtid: Gtid) -> bool:
        """Read as a list of transactions: is `gtid` one of them? (MariaDB: exactly as written.)"""
        if gtid.uuid:
            return any(lo <= gtid.seq <= hi for lo, hi in self.mysql.get(gtid.uuid, ()))
        return gtid.text in self.named

    def single(self) -> bool:
        """One transaction only."""
        if self.mysql:
            return len(self.mysql) == 1 and sum(hi - lo + 1 for r in self.mysql.values() for lo, hi in r) == 1
        return len(self.named) == 1

    def count(self) -> int:
        return sum(hi - lo + 1 for r in self.mysql.values() for lo, hi in r) + len(self.named)

    def without(self, seen: "set[str]") -> str:
        """The transactions named here whose GTID text is not in `seen`, in words (for "not found")."""
        if self.mysql:
            left = {}
            for key, ranges in self.mysql.items():
                got = sorted((int(g.rsplit(":", 1)[1]),) * 2 for g in seen if g.rsplit(":", 1)[0] == key)
                if (rest := _subtract(ranges, got)):
                    left[key] = rest
            return GtidSet("", mysql=left).mysql_text()
        return ",".join(sorted(self.named - seen))

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
        out = cls("", mysql={u: _merge(r) for u, r in ranges.items() if r})
        out.text = out.mysql_text()
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
