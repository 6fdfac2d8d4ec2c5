"""What the watcher and the archiver share: follow a live binlog until stopped, surviving outages."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .binlog_server import ServerBinlogs
from .errors import RestoreError

log = logging.getLogger("restore-bot.follow")


class Follower:
    """Subclasses implement `follow_once()`, which streams until the connection ends or fails."""

    name = "follow"

    def __init__(self, on_trouble: Callable[[str], None] | None = None) -> None:
        self.on_trouble = on_trouble or (lambda text: None)
        self.stopping = threading.Event()
        self._source: ServerBinlogs | None = None

    def follow_once(self) -> None:
        raise NotImplementedError

    def run_forever(self) -> None:
        """Report a failure once per outage (no flood), back off up to a minute, resume."""
        delay, reported = 1.0, False
        while not self.stopping.is_set():
            try:
                self.follow_once()
                delay, reported = 1.0, False
            except RestoreError as exc:
                if not reported:
                    self.on_trouble(f"{exc} — {exc.hint}" if exc.hint else str(exc))
                    reported = True
                log.info("%s: %s; retrying in %.0f s", self.name, exc, delay)  # reported once above
                self.stopping.wait(delay)
                delay = min(delay * 2, 60.0)

    def open_source(self, dsn, *, blocking: bool) -> ServerBinlogs:
        """The stream reader for this pass, closed already if `stop()` came first (no race with it)."""
        self._source = source = ServerBinlogs(dsn, blocking=blocking)
        if self.stopping.is_set():
            source.close()
        return source

    def stop(self) -> None:
        """From another thread: the stream being read ends at once (its reader returns), no error."""
        self.stopping.set()
        src = self._source
        if src is not None:
            src.close()
