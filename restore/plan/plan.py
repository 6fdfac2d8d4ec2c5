"""The plan: what a restore will do, decided before anything is written.

It is plain data: printed to the operator, serialised with `--json`, stored beside the
checkpoint on the target, and compared by the chat layer's prod gate (same `plan_id`, same
restore).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
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

    @property
    def where(self) -> str:
        return f"{self.file}:{self.pos}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time"] = iso(self.timestamp)
        return d


@dataclass
class Candidate(EventRef):
    """An event that could be the disaster (see candidates.py for the severities)."""

    severity: str = "certain"
    skipped: bool = False    # inside a transaction the operator skips
    chosen: bool = False     # the one the plan stops before

    def key(self) -> tuple[str, int]:
        return (self.file, self.pos)


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
class Outcome:
    """Where the replay ends instead when it judges the plan's stop (a statement-form UPDATE
    without WHERE, "judged at replay") not destructive, and goes on: the next stop and what the
    restored tables then hold. Each is what the plan computed for that longer range."""

    stop: EventRef | None
    end: tuple[str, int]
    transactions: int
    tables: dict[str, TableStats]
    last_timestamp: int | None
    end_gtid: str | None
    skips: list[EventRef]

    def to_dict(self) -> dict:
        return {"stop": self.stop.to_dict() if self.stop else None,
                "end": {"file": self.end[0], "pos": self.end[1]}, "transactions": self.transactions,
                "tables": {name: t.to_dict() for name, t in sorted(self.tables.items())}}


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
    candidates: list[Candidate] = field(default_factory=list)
    candidates_left_out: int = 0         # suspects beyond the listing's cap
    later: list[Outcome] = field(default_factory=list)   # if the stop is judged at replay not to be the disaster
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

    def end_of(self, index: int) -> tuple[str, int]:
        return self.end if index == 0 else self.later[index - 1].end

    def outcome(self, index: int) -> "Plan":
        """The plan as the replay ended it: 0 at its own stop, k after k stops judged not destructive."""
        if index == 0:
            return self
        o = self.later[index - 1]
        return replace(self, stop=o.stop, end=o.end, transactions=o.transactions, tables=o.tables,
                       last_timestamp=o.last_timestamp, end_gtid=o.end_gtid, skips=o.skips, later=[])

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
            "candidates": [c.to_dict() for c in self.candidates],
            "candidates_left_out": self.candidates_left_out,
            "if_judged_not_destructive": [o.to_dict() for o in self.later],
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
