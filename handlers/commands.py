"""Parses what people type (`/restore stage`, `restore status R3`, ...) into one Command.

Every transport (Slack, Kakao, console) hands raw text here; handlers only see Commands.
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

from restore.errors import RestoreError
from restore.plan.spec import parse_spec

from handlers import messages

SUBCOMMANDS = ("help", "plan", "stage", "prod", "status", "abort", "history", "approve", "reject", "drill", "choice")


class CommandError(ValueError):
    """Input we cannot act on; the message (with usage) goes back to the user only."""


@dataclass(frozen=True)
class Command:
    name: str                      # one of SUBCOMMANDS
    user: str                      # platform user id (Slack U..., "kakao:<id>", console name)
    stop_before: str = "auto"
    skips: tuple[str, ...] = ()
    job: str | None = None
    origin: str = "console"        # slack | kakao | console
    extra: dict = field(default_factory=dict, compare=False)
    restart: bool = False          # stage: forget an earlier run of the plan on the stage target
    chosen: bool = False           # stop or skips typed in: they alone decide (not the operators' saved choice)
    clear: bool = False            # `choice clear`


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print and exit; we answer instead
        raise CommandError(message)


def _parser(name: str) -> _Parser:
    p = _Parser(prog=f"/restore {name}", add_help=False)
    if name in ("plan", "stage", "prod"):
        p.add_argument("--stop-before", default=None)
        p.add_argument("--skip", action="append", default=[])
    if name == "stage":
        p.add_argument("--restart", action="store_true")
    if name in ("status", "abort", "approve", "reject"):
        p.add_argument("job", nargs="?" if name in ("status", "abort") else None)
    if name == "choice":
        p.add_argument("what", nargs="?", choices=("clear",))
    return p


# `stop=SPEC` and `skip=SPEC` (what the plan card's buttons stand for; easier to type on a phone)
# are the same as `--stop-before SPEC` and `--skip SPEC`.
_SHORT = {"stop": "--stop-before", "stop-before": "--stop-before", "skip": "--skip"}


def _long_forms(words: list[str]) -> list[str]:
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and not key.startswith("-") and key.lower() in _SHORT:
            out += [_SHORT[key.lower()], value]
        else:
            out.append(word)
    return out


def parse(text: str, user: str, origin: str = "console") -> Command:
    """`text` is what follows `/restore` (a leading `/restore` or `restore` is accepted too)."""
    try:
        words = shlex.split(text.strip())
    except ValueError as exc:
        raise CommandError(f"cannot read that: {exc}") from None
    if words and words[0].lstrip("/").lower() == "restore":
        words = words[1:]
    if not words:
        return Command("help", user, origin=origin)
    name = words[0].lower()
    if name not in SUBCOMMANDS:
        raise CommandError(messages.UNKNOWN_SUBCOMMAND.format(name=words[0]))
    args = _parser(name).parse_args(_long_forms(words[1:]))
    stop = getattr(args, "stop_before", None)
    chosen = stop is not None or bool(getattr(args, "skip", None))
    stop = "auto" if stop is None else stop
    skips = tuple(getattr(args, "skip", []) or ())
    try:
        parse_spec(stop, option="--stop-before")
        for s in skips:
            parse_spec(s, option="--skip", allow=("gtid", "filepos"))
    except RestoreError as exc:
        raise CommandError(f"{exc} — {exc.hint}") from None
    return Command(name, user, stop_before=stop, skips=skips, job=getattr(args, "job", None), origin=origin,
                   restart=bool(getattr(args, "restart", False)), chosen=chosen,
                   clear=getattr(args, "what", None) == "clear")
