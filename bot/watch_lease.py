"""One cluster's watcher in `serve`, run by exactly one of the instances sharing a store.

Each instance keeps trying to hold the lease `watch:CLUSTER` in the store (handlers/store_leader.py);
the holder runs the watcher and its alert poster, the others stand by. When the holder dies its
lease runs out (`ttl` seconds) and another instance's keeper takes it and starts a watcher, which
reads on from the position the store saved: alerts between that position and the death are read
again, and the store's unique alert key (AlertStore.claim) lets each of them out once.
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


class LeasedWatch:
    """`build()` makes a watcher (bot.watch.WatcherProcess) and its poster (or None) each time this
    instance gains the lease; both stop when it loses it or stops."""

    def __init__(self, store: Store, cluster: str, instance_id: str, build: Callable[[], tuple], *,
                 ttl: float = WATCH_LEASE_SECONDS) -> None:
        self.cluster, self.build = cluster, build
        self._lock = threading.Lock()
        self._running: tuple | None = None   # (watcher, poster, thread) while this instance watches
        self.keeper = LeaseKeeper(LeaseStore(store), f"watch:{cluster}", instance_id, ttl,
                                  on_acquired=self._start, on_lost=self._stop)

    def start(self) -> "LeasedWatch":
        self.keeper.start()
        return self

    def stop(self) -> None:
        """A clean stop hands the lease over at once instead of letting it run out."""
        self.keeper.stop(release=True)
        self._stop()

    @property
    def state(self) -> str:
        """For `/restore clusters`."""
        with self._lock:
            running = self._running
        if running is None:
            return "watched by another instance" if not self.keeper.held else "starting"
        return "watching" if running[2].is_alive() else "STOPPED"

    def _start(self) -> None:
        watcher, poster = self.build()
        thread = threading.Thread(target=watcher.run_forever, name=f"watcher-{self.cluster}", daemon=True)
        with self._lock:
            self._running = (watcher, poster, thread)
        thread.start()
        log.info("watching cluster %s here (this instance holds its lease)", self.cluster)

    def _stop(self) -> None:
        with self._lock:
            running, self._running = self._running, None
        if running is None:
            return
        watcher, poster, thread = running
        watcher.stop()
        thread.join(10)
        if poster is not None:
            poster.stop()
        log.info("stopped watching cluster %s here", self.cluster)
