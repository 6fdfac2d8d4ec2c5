"""Where a plan and a replay read binlog events from: a directory of files or a live server."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from restore.binlog.events import RawEvent
from restore.binlog.files import BinlogDirectory
from restore.mysql.dsn import Dsn


@runtime_checkable
class BinlogSource(Protocol):
    """What the planner, the applier and the backup drill need of a binlog source."""

    def describe(self) -> str:
        """Where the events come from, for messages (no password)."""

    def first_file(self) -> str:
        """The oldest binlog file the source still holds."""

    def events(self, start_file: str | None = None, start_pos: int = 4) -> Iterator[RawEvent]:
        """Events from (start_file, start_pos) to the end of what the source holds now."""


def open_binlogs(where: str | os.PathLike | Dsn) -> BinlogSource:
    """A directory of binlog files (offline) or a live server (replication protocol): its `Dsn`
    as it is, or `mysql://...` text as a command line gives it."""
    if isinstance(where, Dsn):
        from restore.binlog.server import ServerBinlogs
        return ServerBinlogs(where)
    text = os.fspath(where)
    if "://" in text:
        return open_binlogs(Dsn.parse(text, what="--binlogs"))
    return BinlogDirectory(text)
