"""How fast bytes go, in words a person reads ("110.0 MB of 192.0 MB (57%), 6.0 MB/s, ETA 0:14"),
and a reporter that sends such lines to the engine's hooks at a steady pace: the load, the copy
or unpacking of a physical backup, the move of its tables. The console shows the line under its
progress bar, the chat card in place of the bar's rate (its refresh is the card's own interval).
"""
from __future__ import annotations

import time
from collections.abc import Callable

from restore.hooks import Hooks


class Throughput:
    """Turns successive (done, total) byte counts into a line a person reads: how much, how fast,
    how long still. The rate is measured from the first report on, so bytes a resumed load skips
    do not inflate it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._first: tuple[float, int] | None = None

    def line(self, done: int, total: int | None) -> str:
        now = self._clock()
        if self._first is None:
            self._first = (now, done)
        t0, d0 = self._first
        rate = (done - d0) / (now - t0) if now - t0 >= 0.5 else 0.0
        text = _size(done) + (f" of {_size(total)} ({100 * done // max(total, 1)}%)" if total else "")
        if rate > 0:
            text += f", {_size(int(rate))}/s"
            if total and total > done:
                text += f", ETA {_duration((total - done) / rate)}"
        return text


def _size(n: int) -> str:
    """Decimal units, as disks and `ls -h --si` count (a 192 MB dump is 192,000,000 bytes)."""
    if n < 1000:
        return f"{n} B"
    for unit, scale in (("KB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < scale * 1000 or unit == "GB":
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"   # not reached


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ByteProgress:
    """`update(done)` as bytes go by: reported to `hooks` as phase `phase`, at most every `every`
    seconds (and always the first and the last, at close); `phase_started`/`phase_finished` around it."""

    def __init__(self, hooks: Hooks, phase: str, total: int | None, *, label: str = "", every: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hooks, self.phase, self.total, self.label = hooks, phase, total, label
        self.every, self._clock = every, clock
        self.meter = Throughput(clock)
        self._t0 = clock()
        self._last: float | None = None
        self.done = 0
        hooks.phase_started(phase, total)
        self.update(0)

    def update(self, done: int) -> None:
        self.done = done
        now = self._clock()
        if self._last is None or now - self._last >= self.every:
            self._last = now
            self._send()

    def close(self) -> None:
        self.done = self.total if self.total is not None else self.done
        self._send()
        self.hooks.phase_finished(self.phase, {"seconds": round(self._clock() - self._t0, 3), "bytes": self.done})

    def _send(self) -> None:
        line = self.meter.line(self.done, self.total)
        self.hooks.progress(self.phase, self.done, self.total, f"{self.label}: {line}" if self.label else line)


def progress_reporter(hooks: Hooks, phase: str, label: str) -> Callable[[int, int | None], None]:
    """`report(done, total)` for work that says its bytes itself, now and then (a table moved): each
    call one line to `hooks` as phase `phase`."""
    meter = Throughput()

    def report(done: int, total: int | None) -> None:
        hooks.progress(phase, done, total, f"{label}: {meter.line(done, total)}")
    return report
