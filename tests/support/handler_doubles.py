"""Stand-ins the dispatcher is handed in tests: an access policy and a transport that records replies."""
from __future__ import annotations

from handlers.dispatcher import Reply


class Access:
    """UOPS1 and UOPS2 operate; UAPP1 and UOPS2 approve."""
    operators = {"UOPS1", "UOPS2"}
    approvers = {"UAPP1", "UOPS2"}

    def can_operate(self, user: str) -> bool:
        return user in self.operators

    def can_approve(self, user: str) -> bool:
        return user in self.approvers


class Recorder(Reply):
    """A transport that keeps what it was told: private answers, public ones, approval requests."""

    channel = "CINC"

    def __init__(self) -> None:
        super().__init__()
        self.private: list[str] = []
        self.public: list[str] = []
        self.threads: list[tuple[tuple, str]] = []
        self.approvals: list[tuple[str, str]] = []

    def ephemeral(self, text: str) -> None:
        self.private.append(text)

    def say(self, text: str, *, thread=None) -> None:
        self.public.append(text)
        if thread is not None:
            self.threads.append((thread, text))

    def approval_request(self, job, text: str) -> None:
        self.job = job
        self.approvals.append((job.id, text))
