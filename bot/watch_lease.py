"""A cluster's watcher, and its archiver, in `serve`, each run by exactly one of the instances
sharing a store.

Each instance keeps trying to hold the lease `watch:CLUSTER` (and `archive:CLUSTER`) in the store
(handlers/store_leader.py); the holder runs the watcher and its alert poster (the archiver), the
others stand by. When the holder dies its lease runs out (`ttl` seconds) and another instance's
keeper takes it and starts its own: a watcher reads on from the position the store saved (alerts
between that position and the death are read again, and the store's unique alert key,
AlertStore.claim, lets each of them out once); an archiver goes on from the newest binlog in the
archive directory, which the instances share (two archivers appending to the same files would
corrupt them).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from handlers.store import Store
from handlers.store_leader import LeaseKeeper
from handlers.store_leases import LeaseStore

log = logging.getLogger("restore-bot.watch")
WATCH_LEASE_SECONDS = 5.0
RESTART_MAX_SECONDS = 30.0
ARCHIVE_LEASE_SECONDS = 10.0   # an archiver that lost its host may stall a bit longer: nobody waits for it


class LeasedRole:
    """`build()` makes the role's runner (an object with run_forever() and stop()) and helpers to
    stop with it (or None) each time this instance gains the cluster's lease `PREFIX:CLUSTER`; they
    stop when it loses the lease or stops."""

    what, prefix, default_ttl = "role", "role", 10.0

    def __init__(self, store: Store, cluster: str, instance_id: str, build: Callable[[], tuple], *,
                 ttl: float | None = None) -> None:
        self.cluster, self.build = cluster, build
        self._lock = threading.Lock()
        self._running: tuple | None = None   # (runner, helpers, thread, halt) while this instance holds the lease
        self.keeper = LeaseKeeper(LeaseStore(store), f"{self.prefix}:{cluster}", instance_id, ttl or self.default_ttl,
                                  on_acquired=self._start, on_lost=self._stop)

    def start(self) -> "LeasedRole":
        self.keeper.start()
        return self

    def stop(self) -> None:
        """A clean stop hands the lease over at once instead of letting it run out."""
        self.keeper.stop(release=True)
        self._stop()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running is not None and self._running[2].is_alive()

    def _start(self) -> None:
        runner, *helpers = self.build()
        halt = threading.Event()
        thread = threading.Thread(target=self._run, args=(runner, halt), name=f"{self.what}-{self.cluster}", daemon=True)
        with self._lock:
            self._running = (runner, helpers, thread, halt)
        thread.start()
        log.info("%s of cluster %s runs here (this instance holds its lease)", self.what, self.cluster)

    def _run(self, runner, halt: threading.Event) -> None:
        """`runner.run_forever()` until the role stops here (`halt`). One that raised (a process it
        could not start, a store it could not reach) is started again after a pause growing to
        RESTART_MAX_SECONDS, as long as this instance holds the lease: else the cluster would stay
        unwatched, unarchived, while its lease says someone is on it."""
        pause = 1.0
        while True:
            try:
                runner.run_forever()
                return                                      # stopped
            except Exception:
                log.exception("%s of cluster %s failed; starting it again in %.0f s", self.what, self.cluster, pause)
            if halt.wait(pause):
                return
            pause = min(pause * 2, RESTART_MAX_SECONDS)

    def _stop(self) -> None:
        with self._lock:
            running, self._running = self._running, None
        if running is None:
            return
        runner, helpers, thread, halt = running
        halt.set()
        runner.stop()
        thread.join(10)
        for helper in helpers:
            if helper is not None:
                helper.stop()
        log.info("%s of cluster %s stopped here", self.what, self.cluster)


class LeasedWatch(LeasedRole):
    """`build()` makes a watcher (bot.watch.WatcherProcess) and its poster (or None)."""

    what, prefix, default_ttl = "watcher", "watch", WATCH_LEASE_SECONDS

    @property
    def state(self) -> str:
        """For `/restore clusters`."""
        with self._lock:
            running = self._running
        if running is None:
            return "watched by another instance" if not self.keeper.held else "starting"
        return "watching" if running[2].is_alive() else "STOPPED"


class LeasedArchiver(LeasedRole):
    """`build()` makes the cluster's archiver (restore.live.archiver.Archiver), in a tuple."""

    what, prefix, default_ttl = "archiver", "archive", ARCHIVE_LEASE_SECONDS
