"""A watcher run on a thread against a test server: positions kept in memory, waiting on what it said."""
from __future__ import annotations

import threading
import time
from typing import Callable

from restore.live.watcher import Alert, Watcher
from restore.mysql.dsn import Dsn
from restore.mysql.sandbox import Sandbox


class MemoryPositions:
    """The watcher's saved position, kept in memory (the bot keeps it in the store file)."""

    def __init__(self, pos: tuple[str, int] | None = None) -> None:
        self.pos = pos

    def load(self):
        return self.pos

    def save(self, file: str, pos: int) -> None:
        self.pos = (file, pos)


def wait_until(condition: Callable[[], object], what: str, said: list, timeout: float = 30) -> None:
    """Poll `condition` until true; on timeout fail naming `what` and everything in `said`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; it said:\n"
                                 + "\n".join(map(str, said)))
        time.sleep(0.05)


def server_status(src: Sandbox, name: str) -> int:
    """A counter of the source server (SHOW GLOBAL STATUS): how often it saw something happen."""
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
        return int(cur.fetchone()[1])


class Watching:
    """A watcher of database club on a thread; alerts kept with the monotonic time they came."""

    def __init__(self, dsn: Dsn, positions: MemoryPositions) -> None:
        self.alerts: list[tuple[float, Alert]] = []
        self.troubles: list[str] = []
        self.positions = positions
        self.watcher = Watcher(dsn, positions, lambda a: self.alerts.append((time.monotonic(), a)),
                               databases=("club",), on_trouble=self.troubles.append)
        self.thread = threading.Thread(target=self.watcher.run_forever, daemon=True)

    def __enter__(self) -> "Watching":
        self.thread.start()
        wait_until(lambda: self.positions.pos is not None, "a starting position", self.troubles, timeout=10)
        time.sleep(0.3)  # connected and streaming
        return self

    def __exit__(self, *exc) -> None:
        self.watcher.stop()
        self.thread.join(timeout=5)
