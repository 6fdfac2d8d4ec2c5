"""Posts each job's progress card and thread, from the job store, through a Poster.

One card per job, created on first sight and updated in place at most every `interval`
seconds; each phase's start/end and the outcome go into the card's thread. Runs in the bot
process, so a restarted bot simply carries on from what the store says was posted.

Several serve instances on one store would each post every card and message (a post takes as
long as Slack answers, and another instance reads the message still unposted meanwhile): given a
`lease`, a reporter posts only while its instance holds that lease in the store, so one instance
reports and another takes over within the lease's ttl of its death (then re-posting at most the
one message the dead one had posted and not yet marked).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from handlers.jobstore import ACTIVE, Job, JobKind, JobState, JobStore
from handlers.presenter.jobs import card_text
from handlers.store_leader import LeaseKeeper
from handlers.store_leases import LeaseStore

log = logging.getLogger("restore-bot.reporter")


class Poster(Protocol):
    def post_card(self, job: Job, text: str) -> str | None: ...
    def update_card(self, job: Job, ref: str, text: str) -> None: ...
    def post_thread(self, job: Job, ref: str | None, text: str) -> None: ...


class Reporter:
    def __init__(self, store: JobStore, poster: Poster, *, interval: float = 2.5, poll: float = 0.3,
                 accept: Callable[[Job], bool] = lambda job: True,
                 lease: tuple[str, str] | None = None, lease_ttl: float = 10.0) -> None:
        """`lease`: (lease name, this instance's id) when instances share the store (see the module)."""
        self.store = store
        self.poster = poster
        self.accept = accept  # which jobs this reporter owns (e.g. Slack's, not Kakao's)
        self.interval = interval
        self.poll = poll
        self._last_update: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keeper = LeaseKeeper(LeaseStore(store.store), lease[0], lease[1], lease_ttl) if lease else None

    def start(self) -> "Reporter":
        if self._keeper is not None:
            self._keeper.start()
        self._thread = threading.Thread(target=self._loop, name="reporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self._keeper is not None:
            self._keeper.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._keeper is None or self._keeper.held:
                    self.tick()
            except Exception:  # a Slack outage must not kill reporting for good
                log.exception("reporting failed; retrying")
            self._stop.wait(self.poll)

    def tick(self) -> None:
        seen = {j.id: j for j in self.store.jobs(states=ACTIVE, limit=50)}
        for j in self.store.jobs(limit=20):
            if j.card_version > j.posted_version or self.store.unposted_events(j.id):
                seen.setdefault(j.id, j)
        for job in seen.values():
            if not self.accept(job):
                continue
            if job.state == JobState.AWAITING_APPROVAL and not job.card_ts and job.kind != JobKind.UNDO:
                continue  # a prod approval request stands in for the card (an undo's card asks itself)
            self._report(job)

    def _report(self, job: Job) -> None:
        # The interval counts from when a card post or update has gone out (stamped after the call,
        # not before the thread posts that precede it), so updates reach Slack at most every
        # `interval` seconds however long posting takes.
        if not job.card_ts:
            ref = self.poster.post_card(job, card_text(job))
            self.store.update(job.id, bump_card=False, card_ts=ref or "-", posted_version=job.card_version)
            self._last_update[job.id] = time.monotonic()
            job = self.store.get(job.id)
        for event_id, text in self.store.unposted_events(job.id):  # the thread first: then the card
            self.poster.post_thread(job, job.card_ts, text)
            self.store.mark_posted(event_id)
        since = time.monotonic() - self._last_update.get(job.id, float("-inf"))
        if job.card_version > job.posted_version and since >= self.interval:
            self.poster.update_card(job, job.card_ts, card_text(job))
            self.store.update(job.id, bump_card=False, posted_version=job.card_version)
            self._last_update[job.id] = time.monotonic()
