"""The engine's front door: what the CLI and the chat handlers call."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from .binlog_files import BinlogDirectory
from .destructive import DestructiveRules
from .dsn import Dsn
from .errors import PlanError
from .hooks import Hooks
from .plan import Plan
from .planner import Planner, PlanRequest
from .runner import RestoreResult, RestoreRunner
from .snapshot import Snapshot, read_snapshot
from .spec import parse_spec


def open_binlogs(text: str):
    """A directory of binlog files (offline) or a live server `mysql://...` (replication protocol)."""
    if "://" in text:
        from .binlog_server import ServerBinlogs
        return ServerBinlogs(Dsn.parse(text, what="--binlogs"))
    return BinlogDirectory(text)


def read_snapshots(args: Sequence[str]) -> list[Snapshot]:
    """`FILE` or `DB=FILE` (the latter for dumps taken without --databases)."""
    out = []
    for arg in args:
        db, sep, path = arg.partition("=")
        if not sep or os.path.exists(arg):
            db, path = None, arg
        out.append(read_snapshot(path, db))
    return out


def make_plan(snapshots: list[Snapshot], source, *, stop: str = "auto", skips: Sequence[str] = (),
              start: str | None = None, rules: DestructiveRules | None = None,
              hooks: Hooks | None = None, interrupt: Callable[[], None] | None = None,
              expected: Sequence[str] = ()) -> Plan:
    """`expected`: "file:pos" of transaction starts, or GTIDs, an operator marked Expected: listed
    as candidates of severity "expected", never an automatic stop."""
    if not snapshots:
        raise PlanError("no snapshot given", hint="pass each base dump with --snapshot FILE")
    req = PlanRequest(
        snapshots=snapshots,
        stop=parse_spec(stop, option="--stop-before"),
        skips=[parse_spec(s, option="--skip", allow=("gtid", "filepos")) for s in skips],
        start=parse_spec(start, option="--start", allow=("gtid", "filepos")) if start else None,
        rules=rules or DestructiveRules(),
        expected=frozenset(expected),
    )
    return Planner(source, req, hooks, interrupt).build()


def restore(plan: Plan, snapshots: list[Snapshot], source, target: Dsn, *, existing: str = "refuse",
            hooks: Hooks | None = None, interrupt: Callable[[], None] | None = None,
            batch_transactions: int = 1000, restart: bool = False, fence: str | None = None,
            fence_users: Sequence[str] = (), log_replay: bool = True, space_check: bool = True,
            verdicts: dict[str, str] | None = None) -> RestoreResult:
    """`restart`: forget an earlier run of this plan on the target and start over from the dumps
    (otherwise an earlier run is resumed from its checkpoint). `fence`: None only for a target
    nobody else uses (a sandbox); "refuse" or "lock" (`fence_users`) as for a prod restore.
    `log_replay=False`: keep the restore out of the target's binlog (its replicas do not get it).
    `verdicts`: stops judged at replay by an earlier run (stage), applied as they were ("file:pos" ->
    "certain" or "suspect") instead of being judged again."""
    return RestoreRunner(plan, snapshots, source, target, existing=existing, hooks=hooks,
                         interrupt=interrupt, batch_transactions=batch_transactions, restart=restart,
                         fence=fence, fence_users=list(fence_users), log_replay=log_replay,
                         space_check=space_check, verdicts=verdicts).run()
