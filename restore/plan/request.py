"""What a plan is asked for: the snapshots, the start, the stop, the skips, and where each
database's replay starts (its dump's recorded coordinates, or `--start`)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from restore.binlog.gtid import GtidSet
from restore.errors import PlanError
from restore.plan.destructive import DestructiveRules
from restore.plan.physical import binlog_info_name
from restore.plan.plan import DatabaseStart
from restore.plan.snapshot import Snapshot
from restore.plan.spec import Spec, parse_spec


@dataclass
class PlanRequest:
    snapshots: Sequence[Snapshot]
    stop: Spec
    skips: Sequence[Spec] = ()
    start: Spec | None = None
    rules: DestructiveRules = DestructiveRules()
    expected: frozenset[str] = frozenset()   # candidates an operator marked expected ("file:pos" or GTID)


def database_starts(req: PlanRequest) -> dict[str, DatabaseStart]:
    starts: dict[str, DatabaseStart] = {}
    for snap in req.snapshots:
        name = os.path.basename(snap.path)
        if snap.backup_id and (snap.binlog_file or snap.gtid):   # a physical backup: its own file says where
            file, pos, gtid = snap.binlog_file, snap.binlog_pos, snap.gtid
            source = f"{binlog_info_name(snap.path)} in {name}"
        elif snap.binlog_file:
            file, pos, gtid = snap.binlog_file, snap.binlog_pos, snap.gtid
            source = f"CHANGE MASTER TO in {name} line {snap.coordinates_line}"
        elif snap.gtid:
            file, pos, gtid = None, None, snap.gtid
            source = f"GTID position in {name} line {snap.coordinates_line}"
        elif req.start is not None and req.start.kind in ("filepos", "gtid"):
            file, pos, gtid = req.start.file, req.start.pos, req.start.gtid
            source = f"--start {req.start.text} (the dump records no coordinates)"
        else:
            raise PlanError(
                f"{snap.path} records no binlog coordinates (it was dumped without --master-data/--source-data/--gtid), "
                "so the replay start for it is unknown",
                where=snap.path,
                hint="pass --start FILE:POS or --start GTID: the binlog position at the moment the dump was taken")
        if file is None and gtid is not None and gtid == snap.gtid:
            try:
                gtid = GtidSet.parse(gtid).text
            except PlanError as exc:
                where = f"{snap.path}:{snap.coordinates_line}" if snap.coordinates_line else snap.path
                raise PlanError(f"{where}: the dump's GTID position cannot be read: {exc.message}", where=where,
                                hint="use the dump as mysqldump/mariadb-dump wrote it, or pass --start with "
                                     "the GTID set it was taken at") from None
        for db in snap.databases:
            if db in starts:
                raise PlanError(f"database {db} is in two snapshots: {starts[db].snapshot} and {snap.path}",
                                hint="pass one snapshot per database")
            starts[db] = DatabaseStart(db, snap.path, file, pos, gtid, source)
    if not starts:
        raise PlanError("the snapshots contain no database", hint="pass the dump files with --snapshot")
    return starts


def fingerprint(req: PlanRequest) -> dict:
    out = []
    for snap in req.snapshots:
        st = os.stat(snap.path)
        out.append([os.path.abspath(snap.path), st.st_size, int(st.st_mtime)])
    return {"snapshots": out}



def plan_request(snapshots: Sequence[Snapshot], *, stop: str = "auto", skips: Sequence[str] = (),
                 start: str | None = None, rules: DestructiveRules | None = None,
                 expected: Sequence[str] = ()) -> PlanRequest:
    """The request from the options' text; each SPEC is checked here, naming the option at fault."""
    if not snapshots:
        raise PlanError("no snapshot given", hint="pass each base dump with --snapshot FILE")
    return PlanRequest(
        snapshots=snapshots,
        stop=parse_spec(stop, option="--stop-before"),
        skips=[parse_spec(s, option="--skip", allow=("gtid", "filepos")) for s in skips],
        start=parse_spec(start, option="--start", allow=("gtid", "filepos")) if start else None,
        rules=rules or DestructiveRules(),
        expected=frozenset(expected),
    )
