"""A cluster's watcher or archiver that fails (its process could not start, the store was away) is
started again, after growing pauses, by the instance holding the lease: a failed runner must not
leave the cluster unwatched while the lease says someone watches it."""
from __future__ import annotations

import threading
import time

from bot import watch_lease
from bot.watch_lease import LeasedRole
from handlers.jobstore import JobStore


class _Flaky:
    def __init__(self, failures: int) -> None:
        self.failures, self.starts = failures, []
        self.stopping = threading.Event()

    def run_forever(self) -> None:
        self.starts.append(time.monotonic())
        if len(self.starts) <= self.failures:
            raise OSError("could not start the watcher process")
        self.stopping.wait()

    def stop(self) -> None:
        self.stopping.set()


def _until(what: str, ready, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_runner_that_raised_is_started_again_while_the_lease_is_held(tmp_path, monkeypatch):
    monkeypatch.setattr(watch_lease, "RESTART_MAX_SECONDS", 0.4)
    store = JobStore(tmp_path / "jobs.sqlite3").store
    runner = _Flaky(failures=3)
    role = LeasedRole(store, "homepage", "host-a", lambda: (runner,), ttl=2.0).start()
    try:
        _until("the fourth start", lambda: len(runner.starts) == 4)
        assert role.running
        pauses = [b - a for a, b in zip(runner.starts, runner.starts[1:])]
        assert 0.9 < pauses[0] < 1.5 and all(0.35 < p < 1.0 for p in pauses[1:]), pauses
    finally:
        role.stop()
    assert not role.running and runner.stopping.is_set()


def test_a_runner_failing_when_the_role_stops_is_not_started_again(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3").store
    runner = _Flaky(failures=99)
    role = LeasedRole(store, "homepage", "host-a", lambda: (runner,), ttl=2.0).start()
    _until("the first start", lambda: runner.starts)
    role.stop()
    time.sleep(1.5)
    assert len(runner.starts) == 1, runner.starts
