"""The engine's use cases: what the CLI and the chat worker call, and nothing else of the engine.

    plan   read the dumps and the binlog, find the stop: a `Planned`
    stage  restore a plan into a throwaway sandbox or a kept target, and verify: a `Staged`,
           whose `evidence` (`StageEvidence`) is what a prod restore of the same plan needs
    prod   the production swap (restore.prod.swap), fed by a stage run's evidence
    drill  the backup drill (restore.live.drill): the newest backup plus the archive, restored
    undo   undo one DML transaction in place from the binlog (restore.undo): an `Undone`
    backup take a base backup (mariadb-dump) into the backup directory

Callers (bot.worker, bot.cli) import this module, restore.errors and restore.hooks only (an
import-linter contract in pyproject.toml holds them to it): what they need of the engine's
types and choices is re-exported here.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from restore.binlog.source import BinlogSource, open_binlogs
from restore.errors import PlanError, RestoreError
from restore.hooks import Hooks, NullHooks
from restore.mysql.dsn import Dsn
from restore.mysql.leftovers import sweep
from restore.plan.destructive import DestructiveRules
from restore.plan.physical import narrow
from restore.plan.physical_base import reporting_copies, sandbox_for
from restore.plan.plan import Plan, iso
from restore.plan.planner import make_plan
from restore.plan.snapshot import Snapshot, read_snapshots
from restore.plan.spec import SPEC_HELP
from restore.replay.runner import EXISTING_CHOICES, RestoreNotVerified, RestoreResult, restore
from restore.target.fence import FENCE_CHOICES

if TYPE_CHECKING:
    from restore.live.backups import Backup
    from restore.prod.swap import ProdOutcome

# Imported when first used: `restore-bot plan` starts faster without the archiver, the drill and
# the prod swap (the bench times a plan from the process's start).
_LAZY = {"Archiver": "restore.live.archiver", "Backup": "restore.live.backups", "DrillFailed": "restore.live.drill",
         "newest_snapshot": "restore.live.drill", "ProdOutcome": "restore.prod.swap"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    # use cases and their types
    "PlanInput", "Planned", "plan", "StageTarget", "Staged", "StageEvidence", "stage", "ProdTarget", "prod",
    "DrillInput", "Drilled", "drill", "UndoInput", "Undone", "undo", "NotBuilt", "backup",
    # what callers need of the engine's own types, choices and tools
    "BinlogSource", "open_binlogs", "read_snapshots", "make_plan", "restore", "Plan", "Snapshot",
    "RestoreResult", "RestoreNotVerified", "Dsn", "DestructiveRules", "sweep", "iso", "SPEC_HELP", "FENCE_CHOICES", "EXISTING_CHOICES",
]   # and, imported when first used, the names in _LAZY

Interrupt = Callable[[], None] | None


# -- plan --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanInput:
    """What a plan is made from: the dumps (`FILE` or `DB=FILE`), the binlogs (a directory, a
    `mysql://` URL or a Dsn), and where it stops and what it skips."""
    snapshots: Sequence[str]
    binlogs: str | os.PathLike | Dsn
    stop: str = "auto"
    skips: Sequence[str] = ()
    start: str | None = None
    expected: Sequence[str] = ()          # candidates an operator marked expected ("file:pos" or GTID)
    rules: DestructiveRules | None = None
    databases: Sequence[str] = ()         # narrows a physical backup to these (--database); () is all it holds


@dataclass
class Planned:
    """A plan with what it was made from: what stage and prod restore."""
    plan: Plan
    snapshots: list[Snapshot]
    source: BinlogSource

    @property
    def plan_id(self) -> str:
        return self.plan.plan_id


def plan(inputs: PlanInput, *, hooks: Hooks | None = None, interrupt: Interrupt = None) -> Planned:
    with reporting_copies(hooks):   # a physical backup is copied (and prepared) to be read
        snapshots = read_snapshots(narrow(inputs.snapshots, inputs.databases))
    source = open_binlogs(inputs.binlogs)
    made = make_plan(snapshots, source, stop=inputs.stop, skips=inputs.skips, start=inputs.start,
                     rules=inputs.rules, hooks=hooks, interrupt=interrupt, expected=inputs.expected)
    return Planned(made, snapshots, source)


# -- stage -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageTarget:
    """Where a stage run restores: `dsn` None is a throwaway sandbox server, removed afterwards."""
    dsn: Dsn | None = None
    existing: str = "refuse"              # a kept target already holding the databases: EXISTING_CHOICES
    restart: bool = False
    fence: str = "refuse"                 # a kept target's writers: FENCE_CHOICES (a sandbox has none)
    fence_users: Sequence[str] = ()
    batch: int = 1000
    log_replay: bool = True
    space_check: bool = True
    load_jobs: int | None = None          # clients loading a dump's tables at once (None: the target's cores, ≤ 8)


@dataclass(frozen=True)
class StageEvidence:
    """What a verified stage run proves, for a prod restore of the same plan: the tables'
    CHECKSUM TABLE (production must end with these) and the verdicts on stops judged at replay
    ("file:pos" -> severity; the prod rebuild applies them as they were)."""
    plan_id: str
    checksums: dict[str, int | None]
    verdicts: dict[str, str] = field(default_factory=dict)
    stage_job: str = ""                   # the stage job that verified it, when a job store ran it

    def to_dict(self) -> dict:
        return {"plan_id": self.plan_id, "checksums": dict(self.checksums), "verdicts": dict(self.verdicts),
                "stage_job": self.stage_job}

    @classmethod
    def from_dict(cls, doc: dict, *, stage_job: str = "") -> "StageEvidence":
        return cls(doc["plan_id"], dict(doc.get("checksums") or {}), dict(doc.get("verdicts") or {}),
                   doc.get("stage_job") or stage_job)

    @classmethod
    def from_result(cls, result: RestoreResult, *, stage_job: str = "") -> "StageEvidence":
        tables = result.verification.tables if result.verification else {}
        return cls(result.plan.plan_id, {name: t.checksum for name, t in tables.items()},
                   {v["where"]: v["severity"] for v in result.verdicts}, stage_job)

    @classmethod
    def from_job_result(cls, result: dict | None, *, plan_id: str, stage_job: str = "") -> "StageEvidence":
        """The evidence a stage job stored; a job stored before `evidence` existed keeps it in its
        restore report (its verification's tables and its verdicts)."""
        result = result or {}
        if result.get("evidence"):
            return cls.from_dict(result["evidence"], stage_job=stage_job)
        report = result.get("restore") or {}
        tables = (report.get("verification") or {}).get("tables") or {}
        return cls(plan_id, {name: t["checksum"] for name, t in tables.items()},
                   {v["where"]: v["severity"] for v in report.get("verdicts") or []}, stage_job)


@dataclass
class Staged:
    result: RestoreResult
    evidence: StageEvidence
    sandbox: bool


def stage(planned: Planned, target: StageTarget, *, hooks: Hooks | None = None, interrupt: Interrupt = None,
          stage_job: str = "", sandbox_note: str = "a throwaway sandbox server on port {port}") -> Staged:
    """Restore `planned` into `target` and verify. Raises RestoreNotVerified (a VerifyError holding
    the run's `result`) when the target does not match the plan's prediction."""
    hooks = hooks or NullHooks()
    box = sandbox_for(planned.snapshots) if target.dsn is None else nullcontext()
    with reporting_copies(hooks), box:
        dsn = box.dsn if target.dsn is None else target.dsn
        if target.dsn is None:
            hooks.message(sandbox_note.format(port=box.port))
        result = restore(planned.plan, planned.snapshots, planned.source, dsn,
                         existing=target.existing,
                         hooks=hooks, interrupt=interrupt, batch_transactions=target.batch, restart=target.restart,
                         fence=None if target.dsn is None else target.fence, fence_users=target.fence_users,
                         log_replay=target.log_replay, space_check=target.space_check, load_jobs=target.load_jobs)
    return Staged(result, StageEvidence.from_result(result, stage_job=stage_job), sandbox=target.dsn is None)


# -- prod --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProdTarget:
    dsn: Dsn
    fence: str = "refuse"
    fence_users: Sequence[str] = ()


def prod(planned: Planned, evidence: StageEvidence, target: ProdTarget, *, job_tag: str,
         hooks: Hooks | None = None, interrupt: Interrupt = None) -> ProdOutcome:
    """Swap `planned` into production (restore.prod.swap), refusing unless `evidence` is a stage
    run's of this very plan. `job_tag` names the job's shadow and aside schemas and its record on
    the target: the same tag run again resumes it."""
    from restore.prod.swap import ProdRestore
    hooks = hooks or NullHooks()
    if planned.plan_id != evidence.plan_id:
        raise PlanError(f"the plan changed since stage verified it ({evidence.plan_id} → {planned.plan_id})",
                        hint="run /restore stage again, then /restore prod")
    if not evidence.checksums:
        raise PlanError(f"the stage run{' ' + evidence.stage_job if evidence.stage_job else ''} of plan "
                        f"{evidence.plan_id} recorded no verified tables, so production could not be checked "
                        "against it", hint="run /restore stage again, then /restore prod")
    with reporting_copies(hooks):
        return ProdRestore(planned.plan, planned.snapshots, planned.source, target.dsn, job_tag=job_tag,
                           expected=dict(evidence.checksums), fence=target.fence,
                           fence_users=list(target.fence_users), hooks=hooks, interrupt=interrupt,
                           verdicts=dict(evidence.verdicts) or None).run()


class NotBuilt(RestoreError):
    """A use case whose signature is kept ready but that does not exist yet."""


# -- undo --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UndoInput:
    """Undo one DML transaction in place (restore.undo): `event` is its GTID, the FILE:POS of
    any of its events, or "auto" (the disaster the plan would choose), `binlogs` a directory or a server (as PlanInput's), `target` the server
    whose rows get back what the transaction destroyed. `dry_run`: the preview only. `preview`:
    the id of the preview the operator approved; the apply refuses if what it would do differs."""
    binlogs: str | os.PathLike | Dsn
    target: Dsn
    event: str
    dry_run: bool = True
    preview: str | None = None


@dataclass
class Undone:
    """The preview (and, unless a dry run, the outcome) of an undo."""
    transaction: dict                 # id, where it starts, its statements
    preview_id: str
    tables: list[dict]                # per table: counts, a sample, conflicts, later transactions
    conflicts: list[dict]
    stale: list[dict]                 # rows where the target does not hold the binlog's end state
    done_before: dict | None = None   # the record of this undo applied earlier on the target: nothing done now
    applied: bool = False
    verification: list[dict] = field(default_factory=list)   # after applying: rows not as intended

    def to_dict(self) -> dict:
        return {"transaction": self.transaction, "preview_id": self.preview_id, "tables": self.tables,
                "conflicts": self.conflicts, "stale": self.stale, "done_before": self.done_before,
                "applied": self.applied, "verification": self.verification}


def undo(inputs: UndoInput, *, hooks: Hooks | None = None) -> Undone:
    """Preview, and unless `dry_run` apply in one transaction, the inverse of one DML transaction
    restricted to the columns it changed, keeping later writes (restore.undo). Raises RestoreError
    for DDL, statement-format or partial row images, and when the target changed since the preview."""
    from restore.undo.session import run_undo
    return Undone(**run_undo(inputs.binlogs, inputs.target, inputs.event, dry_run=inputs.dry_run,
                             preview=inputs.preview, hooks=hooks or NullHooks()))


# -- drill -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DrillInput:
    backup_dir: str | os.PathLike
    archive_dir: str | os.PathLike
    source: Dsn | None = None             # the live server the restored tables are compared with


@dataclass
class Drilled:
    report: dict      # what was checked, with the numbers (BackupDrill)
    restore: dict     # the sandbox restore's RestoreResult.to_dict()

    def to_dict(self) -> dict:
        return {"drill": self.report, "restore": self.restore}


def drill(inputs: DrillInput, *, hooks: Hooks | None = None, interrupt: Interrupt = None) -> Drilled:
    """Restore the newest backup plus the archive into a sandbox and check them (restore.live.drill).
    Raises DrillFailed, naming the file and position, when the backups would not restore."""
    from restore.live.drill import BackupDrill, newest_snapshot
    newest = newest_snapshot(inputs.backup_dir) if inputs.backup_dir else None
    if newest is None or not inputs.archive_dir:
        raise RestoreError("nothing to drill: no backup yet, or no [keep] archive_dir",
                           hint="take one with /backup now and run the archiver ([keep] archive_dir)")
    with reporting_copies(hooks):
        doc = BackupDrill(Path(newest), inputs.archive_dir, inputs.source, hooks=hooks or NullHooks(),
                          interrupt=interrupt).run()
    return Drilled(doc["drill"], doc["restore"])


def backup(source: Dsn, databases: Sequence[str], directory: str | os.PathLike, *, physical: bool = False,
           compress: bool = False) -> Backup:
    """A base backup of `databases` into `directory` (what the drill and a restore start from):
    a dump, or with `physical` a mariadb-backup directory of the whole server."""
    if physical:
        from restore.live.backups import take_physical_backup
        return take_physical_backup(source, directory, compress)
    from restore.live.backups import take_backup
    return take_backup(source, list(databases), directory)
