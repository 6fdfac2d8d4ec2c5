"""The engine's use cases: what the CLI and the chat worker call, and nothing else of the engine."""
from __future__ import annotations

from restore.binlog.source import BinlogSource, open_binlogs
from restore.plan.planner import make_plan
from restore.plan.snapshot import read_snapshots
from restore.replay.runner import restore

__all__ = ["BinlogSource", "open_binlogs", "read_snapshots", "make_plan", "restore"]
