"""Is FILE:POS where an event starts?

A start, stop or skip given as FILE:POS (or a dump's CHANGE MASTER coordinates) must name the start
of an event, or the end of the file for a start. A position inside an event would silently drop or
repeat the transaction around it; one past the file's end would replay nothing. Both are refused,
naming the nearest event starts around it, or where the file ends.

Starts are checked on the stream the plan reads anyway (no extra read): the first event of the file
that reaches past the position must start exactly there. Stops and skips that matched nothing are
located afterwards (`locate`), which reads the file from its start once: only on the error path.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from restore.binlog import events as be
from restore.errors import PlanError


@dataclass(frozen=True)
class Watch:
    file: str
    pos: int
    what: str        # who gave the position, in words: "--start binlog.000001:100", "CHANGE MASTER TO in x.sql line 22"
    hint: str = ""


@dataclass(frozen=True)
class Located:
    """Where `pos` lies among the events of `file`."""
    boundary: bool                 # an event starts there (or, with `at_end`, the file ends there)
    before: int | None = None      # the nearest event start before pos
    after: int | None = None       # the nearest event start after pos (None: no event after it)
    end: int | None = None         # where the file's last event ends
    at_end: bool = False


def locate(source, file: str, pos: int) -> Located:
    """Reads `file` from its start up to `pos` (the error path: a position that matched nothing)."""
    prev: tuple[int, int] | None = None
    for ev in source.events(file, 4):
        if ev.file != file:
            break
        if ev.pos == pos:
            return Located(True, before=prev[0] if prev else None, after=ev.end)
        if ev.pos > pos:
            return Located(False, before=prev[0] if prev else None, after=ev.pos)
        if ev.end > pos:
            return Located(False, before=ev.pos, after=ev.end)
        prev = (ev.pos, ev.end)
    end = prev[1] if prev else 4
    return Located(pos == end, before=prev[0] if prev else None, end=end, at_end=True)


def refusal(w: Watch, loc: Located) -> PlanError:
    """The error for a position that is not an event start (or past the file's end)."""
    where = f"{w.file}:{w.pos}"
    if loc.at_end:
        last = f"; its last event starts at {w.file}:{loc.before}" if loc.before is not None else ""
        past = "is the end of" if w.pos == loc.end else "is past the end of"
        return PlanError(
            f"{w.what}: {where} {past} {w.file}, which ends at position {loc.end}{last}: no event starts there",
            where=where,
            hint=w.hint or f"check the position: {w.file} has no event at or after {w.pos}; a later position is "
                           "in a later file (or that file was not copied yet)")
    around = [f"{w.file}:{p}" for p in (loc.before, loc.after) if p is not None]
    inside = (f"it falls inside the event that starts at {w.file}:{loc.before}" if loc.before is not None
              and loc.after is not None else "no event starts there")
    return PlanError(
        f"{w.what}: {where} is not the start of an event ({inside}); the nearest event starts are "
        + (" (before) and ".join(around) + " (after)" if len(around) == 2 else
           (around[0] if around else "unknown")),
        where=where,
        hint=w.hint or "give the position of an event's start, as `mariadb-binlog` prints it after \"# at\" "
                       "(or as `restore-bot plan --json` lists it)")


def file_size(source, file: str) -> int | None:
    """The file's size, when the source can tell without reading it (a directory; a live server's
    SHOW BINARY LOGS)."""
    path = getattr(source, "path", None)
    if path is not None:
        try:
            return os.path.getsize(os.path.join(str(path), file))
        except OSError:
            return None
    logs = getattr(source, "binary_logs", None)
    if logs is not None:
        try:
            return dict(logs()).get(file)
        except Exception:   # noqa: BLE001 - only a shortcut: locate() reads the file instead
            return None
    return None


class _Checker:
    def __init__(self, watches: Iterable[Watch], source) -> None:
        self.source = source
        self.pending: dict[str, list[Watch]] = {}
        for w in sorted(set(watches), key=lambda w: w.pos):
            self.pending.setdefault(w.file, []).append(w)
        self.file: str | None = None

    @property
    def done(self) -> bool:
        return not self.pending

    def see(self, ev: be.RawEvent) -> None:
        if ev.file != self.file:
            if self.file is not None:
                self.leave(self.file)
            self.file = ev.file
        todo = self.pending.get(ev.file)
        if not todo:
            return
        end = ev.end
        while todo and todo[0].pos < end:
            w = todo.pop(0)
            if w.pos == ev.pos:
                continue
            if ev.pos < w.pos:
                raise refusal(w, Located(False, before=ev.pos, after=end))
            loc = locate(self.source, w.file, w.pos)   # the reader started past it: find its neighbours
            if not loc.boundary:
                raise refusal(w, loc)
        if not todo:
            del self.pending[ev.file]

    def leave(self, file: str) -> None:
        """The stream left `file` (or ended) with positions in it not reached: they lie at or past its end."""
        for w in self.pending.pop(file, ()):
            size = file_size(self.source, file)
            if size is not None and w.pos == size:
                continue   # the end of the file: a start there replays from the next file on
            loc = locate(self.source, w.file, w.pos)
            if not loc.boundary:
                raise refusal(w, loc)

    def finish(self) -> None:
        if self.file is not None:
            self.leave(self.file)


def checked(events: Iterable[be.RawEvent], watches: Iterable[Watch], source) -> Iterator[be.RawEvent]:
    """`events`, refusing (PlanError) as soon as the stream shows that a watched position is not the
    start of an event. The checks usually finish within the first events: then the stream is handed
    on as it is, with no layer added per event."""
    checker = _Checker(watches, source)
    it = iter(events)
    head: list[be.RawEvent] = []
    for ev in it:
        head.append(ev)
        checker.see(ev)
        if checker.done:
            return itertools.chain(head, it)
        if len(head) >= 64:
            return itertools.chain(head, _rest(checker, it))
    checker.finish()   # the stream ended
    return iter(head)


def _rest(checker: _Checker, it: Iterator[be.RawEvent]) -> Iterator[be.RawEvent]:
    for ev in it:
        checker.see(ev)
        yield ev
        if checker.done:
            yield from it
            return
    checker.finish()
