"""Errors the engine raises. Each carries where it happened and what the operator should do."""
from __future__ import annotations


class RestoreError(Exception):
    """A failure the operator can act on: `str(e)` says what and where, `hint` what to do next."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str = "", where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "message": self.message, "where": self.where,
                "hint": self.hint}

    def __str__(self) -> str:
        text = self.message
        if self.where and self.where not in text:
            text = f"{self.where}: {text}"
        return text


class BinlogError(RestoreError):
    """A binlog file cannot be read exactly (corrupt, truncated, encrypted, unknown event...)."""


class SnapshotError(RestoreError):
    """A dump file is unusable or lacks what the plan needs."""


class PlanError(RestoreError):
    """The plan cannot be built from what was given (bad SPEC, missing start, ...)."""


class ApplyError(RestoreError):
    """The target refused a replayed change (conflict, missing privilege, ...)."""


class VerifyError(RestoreError):
    """The restore finished but the result does not match what the plan predicts."""

    exit_code = 3


class TargetError(RestoreError):
    """The target is not in a state we may write into (holds the databases, unreachable...)."""
