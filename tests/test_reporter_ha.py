"""Two serve instances' reporters on one job store on a MariaDB server (the `target` test server):
with a lease, each job's card and every thread message is posted once, by the instance holding it, even
when a post takes as long as Slack's (without it both instances posted everything twice); when that
instance dies, the other reports what came after, once."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from bot.reporter import Reporter
from handlers.jobstore import JobStore
from tests.test_serve_ha import _wait

pytestmark = pytest.mark.mysql
DB = "rb_reporter_ha"
TTL = 1.5


class SlowSlack:
    """A poster that takes as long as Slack answering, recording what it posted and who posted it."""

    def __init__(self, posts: list, name: str) -> None:
        self.posts, self.name = posts, name

    def post_card(self, job, text: str) -> str:
        time.sleep(0.15)
        self.posts.append((self.name, "card", job.id))
        return f"ts-{job.id}"

    def update_card(self, job, ref: str, text: str) -> None:
        time.sleep(0.15)

    def post_thread(self, job, ref, text: str) -> None:
        time.sleep(0.15)
        self.posts.append((self.name, "thread", text))


def _each_once(posts: list) -> None:
    twice = [what for what, n in Counter(p[1:] for p in posts).items() if n > 1]
    assert not twice, f"posted more than once: {twice}"


def test_one_instance_reports_each_message_once_and_the_other_after_it_dies(target):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    stores = [JobStore(f"{target.url}/{DB}") for _ in range(2)]
    posts: list = []
    reporters = [Reporter(store, SlowSlack(posts, f"host-{i}"), lease=("reporter:slack", f"host-{i}"),
                          lease_ttl=TTL).start() for i, store in enumerate(stores)]
    try:
        job = stores[0].create("stage", "stage", "UOPS1")
        for i in range(8):
            stores[1].add_event(job.id, f"event {i}")
            time.sleep(0.1)
        _wait(lambda: len(posts) >= 9, 15, "the card and 8 messages")
        time.sleep(1.0)   # a second post of any would be in by now
        _each_once(posts)
        reporting = {name for name, *_ in posts}
        assert len(reporting) == 1, posts

        dead = reporters[int(reporting.pop()[-1])]   # dies: its lease expires, nobody releases it
        dead._stop.set()
        dead._thread.join()
        dead._keeper.stop(release=False)
        died = time.monotonic()
        stores[0].add_event(job.id, "after the death")
        _wait(lambda: len(posts) >= 10, 15, "the survivor's post")
        took = time.monotonic() - died
        time.sleep(1.0)
        _each_once(posts)
        assert posts[-1][0] != posts[0][0] and took < TTL + TTL / 4 + 1.0, (posts, took)
    finally:
        for reporter in reporters:
            reporter.stop()
        for store in stores:
            store.store.dispose()
