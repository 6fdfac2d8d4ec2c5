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

    @classmethod
    def parse(cls, text: str) -> "GtidSet":
        out = cls(text.strip())
        for part in (p.strip() for p in re.split(r",\s*", text.strip()) if p.strip()):
            if _MARIADB.match(part):
                d, _s, n = (int(x) for x in part.split("-"))
                out.mariadb[d] = max(n, out.mariadb.get(d, 0))
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

    def contains(self, gtid: Gtid) -> bool:
        if gtid.uuid:
            return any(lo <= gtid.seq <= hi for lo, hi in self.mysql.get(gtid.uuid, ()))
        last = self.mariadb.get(gtid.domain)
        return last is not None and gtid.seq <= last

    def __str__(self) -> str:
        return self.text
