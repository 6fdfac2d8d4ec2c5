"""How the engine reports progress: a small interface the CLI and the chat layer implement."""
from __future__ import annotations

from typing import Protocol


class Hooks(Protocol):
    def phase_started(self, phase: str, total: int | None) -> None: ...
    def progress(self, phase: str, done: int, total: int | None, detail: str = "") -> None: ...
    def phase_finished(self, phase: str, result: dict) -> None: ...
    def message(self, text: str) -> None: ...


class NullHooks:
    """Reports nothing."""

    def phase_started(self, phase: str, total: int | None) -> None:
        pass

    def progress(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        pass

    def phase_finished(self, phase: str, result: dict) -> None:
        pass

    def message(self, text: str) -> None:
        pass
