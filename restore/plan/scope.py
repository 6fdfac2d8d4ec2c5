"""Which events belong to the restore: by the tables they touch and each database's start.

Decided by the databases an event writes — never by its default database, which is how
`mysqlbinlog --database` silently drops statements run without `USE`.
"""
from __future__ import annotations

from restore.binlog.gtid import GtidSet
from restore.binlog.walker import QueryStep, TxBegin
from restore.errors import PlanError
from restore.plan.plan import DatabaseStart
from restore.plan.spec import coord_key

APPLY, LEAVE_OUT = True, False


class Scope:
    def __init__(self, starts: dict[str, DatabaseStart]) -> None:
        self.starts = starts
        self._coords = {db: coord_key(s.file, s.pos) for db, s in starts.items() if s.file}
        self._gtids = {db: GtidSet.parse(s.gtid) for db, s in starts.items()
                       if not s.file and s.gtid}
        self._numbers: dict[str, int] = {}

    def covers(self, db: str) -> bool:
        return db in self.starts

    def started(self, db: str, tx: TxBegin) -> bool:
        """Is this transaction newer than the snapshot of `db`?"""
        coord = self._coords.get(db)
        if coord is not None:
            number = self._numbers.get(tx.file)   # asked once per transaction: the file's number kept
            if number is None:
                number = self._numbers[tx.file] = coord_key(tx.file, 0)[0]
            return (number, tx.pos) >= coord
        gset = self._gtids.get(db)
        if gset is not None and tx.gtid is not None:
            return not gset.contains(tx.gtid)
        return True

    def rows(self, db: str, tx: TxBegin) -> bool:
        return db in self.starts and self.started(db, tx)

    def query(self, step: QueryStep, tx: TxBegin) -> bool:
        info = step.info
        dbs = info.databases
        if not dbs:
            # Server-level statements (GRANT, FLUSH...) and ones we cannot attribute: replay
            # them only when they ran inside a restored database.
            default = step.query.db
            if info.kind in ("dcl",) or not default:
                return LEAVE_OUT
            return default in self.starts and self.started(default, tx)
        ours = [db for db in dbs if db in self.starts]
        if not ours:
            return LEAVE_OUT
        states = {self.started(db, tx) for db in ours}
        if len(states) > 1:
            raise PlanError(
                f"the statement at {step.event.where} writes databases whose snapshots were taken on "
                f"either side of it ({', '.join(sorted(ours))}); it can be neither replayed nor left out exactly",
                where=step.event.where,
                hint="use snapshots of these databases taken at the same moment, or stop the plan before this position")
        if not states.pop():
            return LEAVE_OUT
        foreign = sorted(set(dbs) - set(ours))
        if foreign and info.kind == "ddl":
            raise PlanError(
                f"the statement at {step.event.where} changes restored and other databases at once "
                f"({', '.join(sorted(dbs))}): {step.query.query[:200]}",
                where=step.event.where,
                hint="add a snapshot of the other database(s) too, or stop the plan before this position")
        return APPLY
