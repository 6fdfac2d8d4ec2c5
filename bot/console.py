"""`restore-bot console`: the chat commands in a terminal — no Slack account needed.

Same parser, handlers, job store, worker and cards as Slack; the worker runs in a thread of
this process. A prod approval asks for a second operator's name at the prompt.
"""
from __future__ import annotations

import getpass
import sys
import time
from collections.abc import Callable, Iterable

from rich.console import Console
from rich.markup import escape

from handlers.restore import RestoreHandler

from handlers.commands import CommandError, parse
from handlers.jobstore import FINISHED, Job, JobStore
from bot.reporter import Reporter
from bot.worker import Worker

_STRIP = str.maketrans({"*": "", "`": ""})


class ConsolePoster:
    def __init__(self, console: Console) -> None:
        self.console = console

    def post_card(self, job: Job, text: str) -> str:
        self.console.print(f"[bold cyan]┌ card {job.id}[/] " + _plain(text))
        return f"console-{job.id}"

    def update_card(self, job: Job, ref: str, text: str) -> None:
        if job.finished:   # the outcome in full: a plan's candidates one a line, to type stop=/skip= from
            self.console.print(f"[cyan]└ card {job.id}[/] " + escape(_plain(text)), soft_wrap=True)
        else:
            self.console.print(f"[cyan]│ card {job.id}[/] " + _plain(text).replace("\n", " · "))

    def post_thread(self, job: Job, ref: str | None, text: str) -> None:
        self.console.print(f"[dim]│ {job.id} thread:[/] " + _plain(text))


class ConsoleReplier:
    def __init__(self, console: Console, ask: Callable[[str], str], on_approval: Callable[[Job, str], None]) -> None:
        self.console, self.ask, self.on_approval = console, ask, on_approval

    def ephemeral(self, text: str) -> None:
        self.console.print(_plain(text))

    def say(self, text: str) -> None:
        self.console.print("[bold]" + _plain(text) + "[/]")

    def approval_request(self, job: Job, text: str) -> None:
        self.console.print("[yellow]" + _plain(text) + "[/]")
        name = self.ask(f"Second operator's name to approve {job.id} (empty rejects): ").strip()
        self.on_approval(job, name)


def _plain(text: str) -> str:
    return text.translate(_STRIP).replace("<@", "@").replace("<#", "#").replace(">", "")


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
        self.handler = RestoreHandler(store, access, channel=None, has_prod="prod" in settings.targets)
        self.worker = Worker(settings, store)
        self.reporter = Reporter(store, ConsolePoster(self.console), interval=1.0, poll=0.2)

    def __enter__(self) -> "ConsoleSession":
        import threading
        self._worker_thread = threading.Thread(target=self.worker.run_forever, daemon=True, name="worker")
        self._worker_thread.start()
        self.reporter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stopping.set()
        self.reporter.stop()

    def run_line(self, line: str, user: str | None = None) -> Job | None:
        replier = ConsoleReplier(self.console, self.ask, self._approve)
        try:
            cmd = parse(line, user or self.user, "console")
        except CommandError as exc:
            from handlers import messages
            replier.ephemeral(messages.BAD_INPUT.format(error=exc, usage=messages.USAGE))
            return None
        return self.handler.handle(cmd, replier)

    def _approve(self, job: Job, name: str) -> None:
        self.run_line(f"approve {job.id}" if name else f"reject {job.id}", user=name or self.user)

    def wait(self, job: Job | None, timeout: float = 600) -> Job | None:
        """Block until `job` finishes (and its card and thread are printed)."""
        if job is None:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.store.get(job.id)
            if current.state in FINISHED and current.posted_version >= current.card_version \
                    and not self.store.unposted_events(job.id):
                return current
            time.sleep(0.2)
        return self.store.get(job.id)

    def repl(self, lines: Iterable[str] | None = None) -> int:
        self.console.print("restore-bot console — type `help`, `plan`, `stage`, `prod`, `status`, `history`; "
                           "`plan stop=SPEC skip=SPEC` chooses among the candidates a plan lists; Ctrl-D quits")
        source = lines if lines is not None else _prompt_lines()
        for line in source:
            if not line.strip():
                continue
            job = self.run_line(line)
            if job is not None and job.state in ("queued", "running"):
                self.wait(job)
        return 0


def _prompt_lines():
    while True:
        try:
            yield input("restore> ")
        except EOFError:
            print(file=sys.stderr)
            return
