"""What the watcher and the archiver share: follow a live binlog until stopped, surviving outages."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type

from restore.binlog.server import ServerBinlogs
from restore.errors import RestoreError
from restore.mysql.dsn import Dsn

log = logging.getLogger("restore-bot.follow")


class Follower:
    """Subclasses implement `follow_once()`, which streams until the connection ends or fails."""

    name = "follow"

    def __init__(self, on_trouble: Callable[[str], None] | None = None) -> None:
        self.on_trouble = on_trouble or (lambda text: None)
        self.stopping = threading.Event()
        self._source: ServerBinlogs | None = None
        self._delay = 1.0                 # the next wait before reconnecting
        self._outage: float | None = None  # monotonic time the reported outage began; None: none reported
        self._failed_at: tuple[str, int] | None = None  # the end of the last event read before the last failure

    def follow_once(self) -> None:
        raise NotImplementedError

    def run_forever(self) -> None:
        """Report a failure once per outage (no flood), back off up to a minute, resume.

        The outage ends, and the backoff starts over, when events flow again (`flowing()`), not
        when `follow_once()` returns: a blocking stream nearly always ends by raising, so waiting
        for a return would report only the first outage ever and keep the wait at a minute. So the
        backoff is ours (`_backoff`), not counted by tenacity from the first failure."""
        self._delay, self._outage = 1.0, None
        retrying = Retrying(retry=retry_if_exception_type(RestoreError), wait=self._backoff,
                            sleep=self.stopping.wait, before_sleep=self._failed)
        while not self.stopping.is_set():
            retrying(self._follow_unless_stopped)

    def _follow_unless_stopped(self) -> None:
        if not self.stopping.is_set():  # stop() during the wait: no further pass
            self.follow_once()

    def _backoff(self, retry_state: RetryCallState) -> float:
        """1, 2, 4 ... 60 s: doubled by each failure, back to 1 s when events flow (`flowing()`)."""
        delay, self._delay = self._delay, min(self._delay * 2, 60.0)
        return delay

    def _failed(self, retry_state: RetryCallState) -> None:
        """Before the wait: say what failed, to `on_trouble` only at the start of an outage."""
        exc = retry_state.outcome.exception()
        reached = self._source.reached() if self._source is not None else None
        if reached is not None:
            self._failed_at = reached
        if self._outage is None:
            self.on_trouble(f"{exc} — {exc.hint}" if exc.hint else str(exc))
            self._outage = time.monotonic()
        log.info("%s: %s; retrying in %.0f s", self.name, exc, retry_state.next_action.sleep)  # reported once above

    def flowing(self) -> None:
        """The stream got past where it last failed, or is caught up (called by its reader): end the
        outage, saying so, and reset the backoff."""
        self._delay = 1.0
        began, self._outage = self._outage, None
        if began is not None:
            self.on_trouble(f"recovered: the {self.name} stream is flowing again "
                            f"(after {time.monotonic() - began:.0f} s of trouble)")

    def open_source(self, dsn: Dsn, *, blocking: bool) -> ServerBinlogs:
        """The stream reader for this pass, closed already if `stop()` came first (no race with it)."""
        self._source = source = ServerBinlogs(dsn, blocking=blocking, on_flowing=self.flowing,
                                              flowing_after=self._failed_at)
        if self.stopping.is_set():
            source.close()
        return source

    def stop(self) -> None:
        """From another thread: the stream being read ends at once (its reader returns), no error."""
        self.stopping.set()
        src = self._source
        if src is not None:
            src.close()
