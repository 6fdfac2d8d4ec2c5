"""Where to start or stop: `auto`, `end`, a GTID, `FILE:POS`, or a datetime."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from restore.binlog.gtid import GtidSet, looks_like_gtid
from restore.errors import PlanError

_FILEPOS = re.compile(r"^(?P<file>[^:\s]+\.\d+):(?P<pos>\d+)$")
# 2024-01-01 has a GTID's shape too; the server never prints a GTID's numbers with a leading zero
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SPEC_HELP = ("SPEC is auto, end, a GTID or GTID set (MariaDB 0-1-113680, several domains 0-1-100,1-2-50; "
             "MySQL uuid:n, uuid:1-4:7-9, uuid:tag:1-5, uuid1:1-9,uuid2:1-3), FILE:POS (binlog.000002:4711, "
             "the start of an event) or a datetime (2023-08-19 02:14:00, local time unless it has an offset). "
             "As --start a lone MySQL uuid:n means uuid:1-n (everything up to n is in the dump)")


@dataclass(frozen=True)
class Spec:
    kind: str                 # auto | end | gtid | filepos | time
    text: str
    gtid: str | None = None
    file: str | None = None
    pos: int | None = None
    epoch: float | None = None
    # kind gtid: the transactions it names (--stop-before, --skip) or, as a start, what the dump holds
    gset: GtidSet | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.text


def file_number(name: str) -> int:
    """Binlog files sort by their numeric suffix."""
    return int(name.rsplit(".", 1)[1])


def coord_key(file: str, pos: int) -> tuple[int, int]:
    return (file_number(file), pos)


def _is_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_spec(text: str, *, option: str, allow: tuple[str, ...] = ("auto", "end", "gtid", "filepos", "time")) -> Spec:
    raw = text.strip()
    low = raw.lower()
    spec: Spec | None = None
    if low in ("auto", "end"):
        spec = Spec(low, raw)
    elif looks_like_gtid(raw) and not (_DATE.match(raw) and _is_date(raw)):
        try:
            gset = GtidSet.parse_start(raw) if option == "--start" else GtidSet.parse(raw)
        except PlanError as exc:
            raise PlanError(f"{option} {raw!r}: {exc.message}", hint=exc.hint) from None
        spec = Spec("gtid", raw, gtid=gset.text, gset=gset)
    elif (m := _FILEPOS.match(raw)):
        spec = Spec("filepos", raw, file=m["file"], pos=int(m["pos"]))
    else:
        try:
            when = datetime.fromisoformat(raw.replace(" ", "T", 1) if " " in raw else raw)
        except ValueError:
            when = None
        if when is not None:
            spec = Spec("time", raw, epoch=when.timestamp())
    if spec is None:
        raise PlanError(f"{option} {raw!r} is not a SPEC", hint=SPEC_HELP)
    if spec.kind not in allow:
        raise PlanError(f"{option} does not take {spec.kind} ({raw!r})",
                        hint=f"{option} accepts: {', '.join(allow)}")
    return spec
