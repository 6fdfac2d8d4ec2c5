"""Follower.run_forever without a server: the waits between passes (1, 2, 4 ... 60 s, back to 1 s
once events flow), one report per outage, and what ends the loop. The same behaviour against a
real server, with real outages, is in test_follow_outages.py."""
from __future__ import annotations

import logging
import threading

import pytest

from restore.errors import RestoreError
from restore.live.follow import Follower


class InstantStop(threading.Event):
    """An Event whose timed wait returns at once, recording how long it was asked to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


class Scripted(Follower):
    """Each pass runs the next step: "fail", "flow" (events flowed, then the stream failed),
    "end" (the stream ended without an error) or "stop" (stop() from elsewhere, then it ends)."""

    name = "test"

    def __init__(self, steps: list[str]) -> None:
        self.said: list[str] = []
        super().__init__(self.said.append)
        self.stopping = InstantStop()
        self.steps = iter(steps)
        self.passes = 0

    def follow_once(self) -> None:
        self.passes += 1
        step = next(self.steps)
        if step == "stop":
            self.stop()
        elif step == "flow":
            self.flowing()
            raise RestoreError(f"stream cut (pass {self.passes})", hint="check the source")
        elif step == "fail":
            raise RestoreError(f"stream cut (pass {self.passes})")
        elif step == "boom":
            raise ValueError("a bug")


def test_the_wait_doubles_to_a_minute_and_starts_over_when_events_flow(caplog):
    f = Scripted(["fail"] * 8 + ["flow", "fail", "end", "fail", "stop"])
    with caplog.at_level(logging.INFO, logger="restore-bot.follow"):
        f.run_forever()
    assert f.stopping.waits == [1, 2, 4, 8, 16, 32, 60, 60, 1, 2, 4]
    assert f.passes == 13
    # One report at the start of each outage, one when it ends: not one per retry.
    assert f.said[0] == "stream cut (pass 1)"
    assert f.said[1].startswith("recovered: the test stream is flowing again")
    assert f.said[2] == "stream cut (pass 9) — check the source"
    assert len(f.said) == 3, f.said
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries[0] == "test: stream cut (pass 1); retrying in 1 s" and len(retries) == 11, retries


def test_a_stop_during_the_wait_ends_the_loop_without_another_pass():
    f = Scripted(["fail", "fail"])
    real_wait = f.stopping.wait

    def stop_while_waiting(timeout=None):
        f.stopping.set()
        return real_wait(timeout)
    f.stopping.wait = stop_while_waiting
    f.run_forever()
    assert f.passes == 1 and f.said == ["stream cut (pass 1)"]


def test_anything_but_a_restore_error_is_a_bug_and_ends_the_loop():
    f = Scripted(["fail", "boom"])
    with pytest.raises(ValueError, match="a bug"):
        f.run_forever()
    assert f.passes == 2 and f.stopping.waits == [1]
