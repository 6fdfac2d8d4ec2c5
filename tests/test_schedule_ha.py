"""Two `restore-bot serve` instances on one store on a MariaDB server (the `target` test server), with
a scheduled drill ([keep] drill_every_hours): the drill runs once per due time, by the instance holding
the scheduler's lease, not once per instance; kill -9 that instance and the survivor takes the lease
over and runs the next due drill, once (the runs the dead holder missed coalesce into one).

The schedule lives in the store (APScheduler's SQLAlchemy job store), put there by the instances from
`drill_every_hours = 1`; tests/support/fast_schedule makes that hour INTERVAL seconds in the serve
processes. Every run is a drill job and a "scheduled drill" audit row (the drill itself fails at once:
no backups are configured; what is counted is that it runs), whose card is posted in Slack once, by
the instance holding the reporter's lease. Prints the failover time: kill -9 to the survivor's first
drill."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from handlers.jobstore import JobStore
from handlers.store_leases import LeaseStore
from tests.support.serves import serving
from tests.test_serve_ha import _wait

pytestmark = pytest.mark.mysql
FAST_SCHEDULE = Path(__file__).parent / "support" / "fast_schedule"   # one configured hour = INTERVAL seconds
DB = "rb_schedule_ha"
INTERVAL = 3.0   # seconds between due drills


@pytest.fixture
def two_serves(tmp_path, target):
    url = f"{target.url}/{DB}"
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    config = tmp_path / "restore-bot.toml"
    config.write_text(f'[slack]\nchannel = "CHA"\n[store]\nurl = "{url}"\n'
                      f'[keep]\nbackup_dir = "{tmp_path}"\ndrill_every_hours = 1\n')
    jobs = JobStore(url)
    try:
        with serving(config, tmp_path, env={"PYTHONPATH": str(FAST_SCHEDULE),
                                            "TEST_SCHEDULE_HOUR_SECONDS": str(INTERVAL)}) as (fake, bots):
            yield jobs, fake, bots
    finally:
        jobs.store.dispose()


def _runs(jobs: JobStore) -> list[tuple[float, str]]:
    """(store time, job) of every scheduled drill, oldest first."""
    return sorted((a["ts"], a["job"]) for a in jobs.audit_log(1000) if a["action"] == "scheduled drill")


def _holder(jobs: JobStore) -> str | None:
    held = LeaseStore(jobs.store).holder("scheduler")
    return held[0] if held else None


def _due_times(runs: list[tuple[float, str]], first: float, late: float | None = None) -> list[int]:
    """Which due time each run ran for, counted in intervals from `first` (a run on time; the others
    a little delay after theirs); `late`: the one run allowed off the schedule (a coalesced one).
    Fails when a run is off it, or when two ran for one due time (as two instances would each run it)."""
    slots = [((ts - first) / INTERVAL, ts) for ts, _job in runs if ts != late]
    off = [round(k, 2) for k, _ts in slots if abs(k - round(k)) >= 0.3]
    assert not off, f"drills off the {INTERVAL}s schedule, at (in intervals) {off}: {runs}"
    due = [round(k) for k, _ts in slots]
    assert len(set(due)) == len(due), f"a due time run twice, at (in intervals) {[round(k, 2) for k, _ in slots]}"
    return due


def test_a_scheduled_drill_runs_once_per_due_time_and_after_a_kill_9_on_the_survivor(two_serves):
    jobs, fake, bots = two_serves
    up = time.time()   # both instances answer
    try:
        _wait(lambda: len([r for r in _runs(jobs) if r[0] > up]) >= 2, 30, "two scheduled drills with both up")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: runs {_runs(jobs)}, scheduler lease {_holder(jobs)}, "
                             f"now {time.time()}\n" + "\n".join(bot.log_tail(3000) for bot in bots)) from None
    holder = _holder(jobs)
    by_instance = {f"host-{i}:{bot.proc.pid}": bot for i, bot in enumerate(bots)}
    assert holder in by_instance, (holder, list(by_instance))
    both_up = _runs(jobs)
    first = both_up[0][0]
    assert _due_times(both_up, first) == list(range(len(both_up)))   # both up: each due time once

    killed_at, killed_ts = time.monotonic(), time.time()
    by_instance[holder].kill9()
    survivor = next(name for name in by_instance if name != holder)
    _wait(lambda: [r for r in _runs(jobs) if r[0] > killed_ts + 0.5], 60, "the survivor's first drill")
    failover = time.monotonic() - killed_at
    assert _holder(jobs) == survivor
    time.sleep(2.5 * INTERVAL)   # two more due times, and a second run of any of them would be in by now
    runs = _runs(jobs)
    # The survivor runs the due times the dead holder missed once, late (coalesced), then each on time.
    after = [r for r in runs if r[0] > killed_ts + 0.5]
    later = _due_times(after, first, late=after[0][0])
    assert len(later) >= 2 and later == list(range(later[0], later[0] + len(later))), \
        f"after the failover, due times run (in intervals from the first): {later}"
    assert len(_due_times(runs, first, late=after[0][0])) == len(runs) - 1   # none run twice across the kill
    drills = jobs.jobs(kind="drill", limit=100)
    assert sorted(j.id for j in drills) == sorted(job for _ts, job in runs)   # one drill job per run

    def cards(calls):   # each drill's card, once both instances' reporters have had time to post it twice
        per_job = {j.id: [c for c in calls if c.method == "chat.postMessage" and not c.thread_ts
                          and f"`{j.id}`" in c.text] for j in drills}
        return per_job if all(per_job.values()) else None
    fake.wait_for(cards, 30, "every drill's card")
    time.sleep(1.0)
    calls = fake.snapshot()
    assert {job: len(posted) for job, posted in cards(calls).items()} == {j.id: 1 for j in drills}
    threads = Counter((c.thread_ts, c.text) for c in calls if c.method == "chat.postMessage" and c.thread_ts)
    assert not [text for (_ts, text), n in threads.items() if n > 1], "a thread message posted twice"
    print(f"scheduled drill: kill -9 of the scheduling instance to the survivor's first drill {failover:.1f}s")
