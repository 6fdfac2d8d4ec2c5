"""The plan: what a restore will do, decided before anything is written.

It is plain data: printed to the operator, serialised with `--json`, stored beside the
checkpoint on the target, and compared by the chat layer's prod gate (same `plan_id`, same
restore).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone


@dataclass
class DatabaseStart:
    db: str
    snapshot: str
    file: str | None
    pos: int | None
    gtid: str | None
    source: str          # where the coordinates came from, in words

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EventRef:
    """One event the plan talks about: the stop, or a skipped transaction."""

    file: str
    pos: int                 # the event itself
    tx_file: str
    tx_pos: int              # its transaction's first event: where replay stops
    gtid: str | None
    timestamp: int
    statement: str
    reason: str
    database: str | None = None
    table: str | None = None
    rows: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time"] = iso(self.timestamp)
        return d


@dataclass
class TableStats:
    snapshot_rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    exact: bool = True       # False once a statement changed rows in a way the binlog does not count
    note: str = ""

    @property
    def predicted(self) -> int | None:
        return self.snapshot_rows + self.inserted - self.deleted if self.exact else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["predicted_rows"] = self.predicted
        return d


@dataclass
class Plan:
    binlogs: str
    snapshots: list[str]
    databases: dict[str, DatabaseStart]
    replay_from: tuple[str, int]
    end: tuple[str, int]                 # replay stops before this position
    stop_spec: str
    stop: EventRef | None
    skips: list[EventRef] = field(default_factory=list)
    transactions: int = 0                # transactions that will be replayed
    left_out: int = 0                    # events outside the restored databases
    tables: dict[str, TableStats] = field(default_factory=dict)
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    end_gtid: str | None = None
    warnings: list[str] = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)

    @property
    def plan_id(self) -> str:
        """Identifies what is restored: snapshots, binlog range, stop and skips."""
        key = json.dumps({
            "snapshots": self.fingerprint.get("snapshots"),
            "binlogs": self.binlogs,
            "from": list(self.replay_from), "end": list(self.end),
            "starts": {db: [s.file, s.pos, s.gtid] for db, s in sorted(self.databases.items())},
            "skips": [[s.tx_file, s.tx_pos] for s in self.skips],
        }, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "plan_id": self.plan_id,
            "binlogs": self.binlogs,
            "snapshots": self.snapshots,
            "databases": {db: s.to_dict() for db, s in self.databases.items()},
            "replay_from": {"file": self.replay_from[0], "pos": self.replay_from[1]},
            "end": {"file": self.end[0], "pos": self.end[1]},
            "stop_spec": self.stop_spec,
            "stop": self.stop.to_dict() if self.stop else None,
            "skips": [s.to_dict() for s in self.skips],
            "transactions": self.transactions,
            "left_out_events": self.left_out,
            "time_span": {"first": iso(self.first_timestamp), "last": iso(self.last_timestamp)},
            "tables": {name: t.to_dict() for name, t in sorted(self.tables.items())},
            "warnings": self.warnings,
        }


def iso(ts: int | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
