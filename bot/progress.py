"""Progress bars on the terminal for the engine's hooks (stderr, so --json stays clean)."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ConsoleHooks:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.console = Console(file=sys.stderr)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> "ConsoleHooks":
        if self.enabled and self._progress is None:
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                      TextColumn("{task.fields[detail]}"), console=self.console, transient=True)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()

    def phase_started(self, phase: str, total: int | None) -> None:
        if self._progress is not None and phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(phase, total=total, detail="")

    def progress(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        if self._progress is None:
            return
        if phase not in self._tasks:
            self.phase_started(phase, total)
        self._progress.update(self._tasks[phase], completed=done, total=total, detail=detail)

    def phase_finished(self, phase: str, result: dict) -> None:
        if self.enabled:
            took = f" in {result['seconds']:.1f}s" if "seconds" in result else ""
            self.console.print(f"[green]✓[/] {phase}{took}")
        if self._progress is not None and phase in self._tasks:
            self._progress.remove_task(self._tasks.pop(phase))

    def message(self, text: str) -> None:
        # Warnings matter with --json too: stderr is not part of the JSON document.
        self.console.print(text, soft_wrap=True)
