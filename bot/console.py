"""`restore-bot console`: the chat commands in a terminal — no Slack account needed.

Same parser, handlers, job store, worker and cards as Slack; the worker runs in a thread of
this process. A prod approval asks for a second operator's name at the prompt.
"""
from __future__ import annotations

import getpass
import sys
import threading
import time
from collections.abc import Callable, Iterable

from rich.console import Console
from rich.markup import escape

from bot.reporter import Reporter
from bot.worker import Worker
from handlers import messages
from handlers.app import application
from handlers.commands import APPROVE_ACTION, REJECT_ACTION, UNDO_APPROVE_ACTION
from handlers.dispatcher import Dispatcher, Reply
from handlers.jobstore import FINISHED, Job, JobStore
from handlers.presenter.undo_card import waiting

_STRIP = str.maketrans({"*": "", "`": ""})


class ConsolePoster:
    def __init__(self, console: Console) -> None:
        self.console = console

    def post_card(self, job: Job, text: str) -> str:
        self.console.print(f"[bold cyan]┌ card {job.id}[/] " + _plain(text))
        return f"console-{job.id}"

    def update_card(self, job: Job, ref: str, text: str) -> None:
        if job.finished:   # the outcome in full: a plan's candidates one a line, to type stop=/skip= from
            self.console.print(f"[cyan]└ card {job.id}[/] " + _plain(text), soft_wrap=True)
        else:
            self.console.print(f"[cyan]│ card {job.id}[/] " + _plain(text).replace("\n", " · "))

    def post_thread(self, job: Job, ref: str | None, text: str) -> None:
        self.console.print(f"[dim]│ {job.id} thread:[/] " + _plain(text))


class ConsoleReply(Reply):
    """Prints the answers; an approval request asks for the second operator's name at the prompt
    and answers it as that person's click on *Approve* (a name) or *Reject* (empty)."""

    def __init__(self, console: Console, ask: Callable[[str], str], app: Dispatcher, user: str) -> None:
        super().__init__()
        self.console, self.ask, self.app, self.user = console, ask, app, user

    def ephemeral(self, text: str) -> None:
        self.console.print(_plain(text))

    def say(self, text: str, *, thread: tuple[str | None, str] | None = None) -> None:
        self.console.print("[bold]" + _plain(text) + "[/]")

    def approval_request(self, job: Job, text: str) -> None:
        self.job = job
        self.console.print("[yellow]" + _plain(text) + "[/]")
        name = self.ask(messages.CONSOLE_APPROVER_PROMPT.format(job=job.id)).strip()
        self.app.action(APPROVE_ACTION if name else REJECT_ACTION, job.id, name or self.user, "console", self)


def _plain(text: str) -> str:
    """mrkdwn as plain text, escaped for rich (`[stop=SPEC]` in the usage is no markup tag)."""
    return escape(text.translate(_STRIP).replace("<@", "@").replace("<#", "#").replace(">", ""))


class OpenAccess:
    """Without an [access] list the console is a local, single-machine tool: everyone may act."""

    def can_operate(self, user: str) -> bool:
        return True

    def can_approve(self, user: str) -> bool:
        return True


class ConsoleSession:
    def __init__(self, settings, store: JobStore, access, *, user: str | None = None,
                 console: Console | None = None, ask: Callable[[str], str] = input) -> None:
        self.console = console or Console()
        self.store = store
        self.user = user or getpass.getuser()
        self.ask = ask
        self.app = application(settings, store, access, channel=None)
        self.worker = Worker(settings, store)
        self.reporter = Reporter(store, ConsolePoster(self.console), interval=1.0, poll=0.2)

    def __enter__(self) -> "ConsoleSession":
        self._worker_thread = threading.Thread(target=self.worker.run_forever, daemon=True, name="worker")
        self._worker_thread.start()
        self.reporter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stopping.set()
        self.reporter.stop()

    def answer(self, line: str, user: str | None = None) -> ConsoleReply:
        """One typed line, answered on the console; the reply says which job it started or showed."""
        reply = ConsoleReply(self.console, self.ask, self.app, user or self.user)
        self.app.text(line, user or self.user, "console", reply)
        return reply

    def run_line(self, line: str, user: str | None = None) -> Job | None:
        """The job the line started or was about (as it is now), if any."""
        job = self.answer(line, user).job
        return self.store.get(job.id) if job is not None else None

    def wait(self, job: Job | None, timeout: float = 600) -> Job | None:
        """Block until `job` finishes or its undo preview waits for approval (and its card and thread
        are printed)."""
        if job is None:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.store.get(job.id)
            if (current.state in FINISHED or waiting(current)) and current.posted_version >= current.card_version \
                    and not self.store.unposted_events(job.id):
                return current
            time.sleep(0.2)
        return self.store.get(job.id)

    def repl(self, lines: Iterable[str] | None = None) -> int:
        self.console.print(_plain(messages.CONSOLE_GREETING))
        source = lines if lines is not None else _prompt_lines()
        for line in source:
            if line.strip() and (started := self.answer(line).started) is not None:
                self.follow(started)
        return 0

    def follow(self, job: Job, asks: int = 3) -> Job | None:
        """Wait for `job`; an undo preview asks at the prompt who approves it (a name: *Approve undo*
        clicked by that person, who must be someone else on production; empty: *Reject*)."""
        current = self.wait(job)
        while current is not None and waiting(current) and asks > 0:
            asks -= 1
            name = self.ask(messages.CONSOLE_UNDO_PROMPT.format(job=job.id)).strip()
            reply = ConsoleReply(self.console, self.ask, self.app, name or self.user)
            self.app.action(UNDO_APPROVE_ACTION if name else REJECT_ACTION, job.id, name or self.user, "console", reply)
            current = self.wait(job)
        return current


def _prompt_lines():
    while True:
        try:
            yield input("restore> ")
        except EOFError:   # Ctrl-D: end the prompt's line, as a shell does (output for the user, not a log line)
            print(file=sys.stderr)
            return
