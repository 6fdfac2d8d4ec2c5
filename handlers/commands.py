"""What people type or click, parsed once into one `Command`, for every transport.

`/restore stage`, `restore status R3`, `status R3`, `/backup list`, `oncall set @kim` and a Slack
button's action id + value all become a Command; the dispatcher routes it by `name`. Parsing is
argparse with a subparser per slash command and per subcommand, so options, positionals and their
errors are argparse's; the transports only hand the raw text (or action) here.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import dataclass, replace

from handlers import messages
from restore.errors import RestoreError
from restore.plan.spec import parse_spec

# The slash commands (Slack registers these; console and KakaoTalk take them with or without the
# slash). Typed text naming none of them is a `/restore` subcommand: `plan` is `/restore plan`.
SLASH_COMMANDS = ("/restore", "/backup", "/oncall")
RESTORE_SUBCOMMANDS = ("help", "plan", "stage", "prod", "status", "abort", "history", "approve", "reject", "drill",
                       "choice", "undo", "clusters")
# Commands that act on one cluster's databases (the rest are about jobs, people or alerts): the
# dispatcher settles which cluster before their handler runs.
CLUSTER_COMMANDS = frozenset({"plan", "stage", "prod", "drill", "undo", "backup now", "backup list"})
UNDO_TARGETS = ("stage", "prod")   # `/restore undo SPEC [stage|prod]`: the configured target it writes into

# Buttons: action ids the presenter puts on messages, and what each one's value carries.
APPROVE_ACTION, REJECT_ACTION = "approve_prod", "reject_prod"           # value: the job id
STOP_ACTION, SKIP_ACTION = "candidate_stop", "candidate_skip"           # value: JSON {job, spec, where, chosen}
ALERT_ACK, ALERT_EXPECTED, ALERT_INCIDENT = "alert_ack", "alert_expected", "alert_incident"  # value: alert key
ALERT_PLAN = "alert_plan"                                               # value: the event's stop spec
ALERT_UNDO = "alert_undo"                                               # value: the transaction's GTID or file:pos
# An undo preview's *Approve undo* (value: the undo job; an operator's, but a target with a prod entry
# takes the prod gate: an approver other than the requester); its *Reject* is REJECT_ACTION.
UNDO_APPROVE_ACTION = "approve_undo"
ACTIONS = (APPROVE_ACTION, REJECT_ACTION, STOP_ACTION, SKIP_ACTION, ALERT_ACK, ALERT_EXPECTED, ALERT_INCIDENT,
           ALERT_PLAN, ALERT_UNDO, UNDO_APPROVE_ACTION)

# A cluster's name as typed: the config allows only names of this shape that are no command word
# (bot.config.CLUSTER_NAME, RESERVED_NAMES), so a SPEC (digits with - or :) or a job id never reads as one.
_CLUSTER = re.compile(r"^[a-z][a-z0-9_]*$", re.I)
_MENTION = re.compile(r"^<?@?(?P<id>[A-Za-z0-9:_.-]+)(\|[^>]*)?>?$")  # <@U123|kim>, @U123, U123, kakao:7


class CommandError(ValueError):
    """Input we cannot act on; the message goes back to the user with `usage`, nothing else happens."""

    def __init__(self, message: str, usage: str = messages.USAGE) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Command:
    """One request. `name` is what the dispatcher routes on: a `/restore` subcommand ("plan",
    "status", "choice clear"), "backup now" / "backup list", "oncall" / "oncall set", or what a
    button stands for ("choose stop", "choose skip", "alert ack", "alert expected", "alert incident")."""
    name: str
    user: str                      # platform user id (Slack U..., "kakao:<id>", console name)
    origin: str = "console"        # slack | kakao | console
    stop_before: str = "auto"
    skips: tuple[str, ...] = ()
    job: str | None = None
    restart: bool = False          # stage: forget an earlier run of the plan on the stage target
    chosen: bool = False           # stop or skips typed in (or clicked): they alone decide, not the saved choice
    who: str | None = None         # oncall set: who is on call now
    spec: str | None = None        # choose: the candidate's transaction (GTID or file:pos)
    where: str = ""                # choose: the candidate's file:pos, to say what was chosen
    alert: str | None = None       # alert buttons: the alert's key
    target: str = "stage"          # undo: the configured target it writes into (UNDO_TARGETS); "" from an
                                   # alert's *Undo this*: stage if it is a kept server, else prod
    cluster: str | None = None     # the cluster named (None: the only one; the dispatcher refuses it with several)


class _Parser(argparse.ArgumentParser):
    """argparse that raises CommandError (with the usage of the slash command) instead of exiting."""

    def error(self, message: str) -> None:  # argparse would print and exit; we answer instead
        raise CommandError(message, _usage(self.prog))


def _usage(prog: str) -> str:
    return {"/backup": messages.BACKUP_USAGE, "/oncall": messages.ONCALL_USAGE}.get(prog.split()[0], messages.USAGE)


def _build() -> _Parser:
    root = _Parser(prog="", add_help=False)
    groups = root.add_subparsers(dest="group", required=True, parser_class=_Parser)
    restore = groups.add_parser("restore", prog="/restore", add_help=False)
    subs = restore.add_subparsers(dest="name", parser_class=_Parser)
    for name in RESTORE_SUBCOMMANDS:
        p = subs.add_parser(name, prog=f"/restore {name}", add_help=False)
        if name in ("plan", "stage", "prod", "drill"):   # the cluster: after the subcommand, before any option
            p.add_argument("cluster", nargs="?", metavar="CLUSTER")
        if name in ("plan", "stage", "prod"):
            p.add_argument("--stop-before", default=None)
            p.add_argument("--skip", action="append", default=[])
        if name == "stage":
            p.add_argument("--restart", action="store_true")
        if name in ("status", "abort", "approve", "reject"):
            p.add_argument("job", nargs="?" if name in ("status", "abort") else None)
        if name == "choice":   # [clear] [CLUSTER]
            p.add_argument("words", nargs="*", metavar="[clear] [CLUSTER]")
        if name == "undo":   # SPEC [stage|prod] [CLUSTER], or `approve JOB` (the typed form of *Approve undo*)
            p.add_argument("words", nargs="+", metavar="SPEC [stage|prod] [CLUSTER]")
    backup = groups.add_parser("backup", prog="/backup", add_help=False)
    backup.add_argument("what", nargs="?", choices=("now", "list"), default="list")
    backup.add_argument("cluster", nargs="?", metavar="CLUSTER")
    oncall = groups.add_parser("oncall", prog="/oncall", add_help=False)
    oncall.add_argument("what", nargs="?", choices=("set",))
    oncall.add_argument("who", nargs="?")
    return root


_PARSER = _build()

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
    """`text` as typed: `/restore stage`, `restore stage`, `stage`, `/backup list`, `oncall set @kim`.
    (Slack hands the slash command and its text joined by a space.)"""
    try:
        words = shlex.split(text.strip())
    except ValueError as exc:
        raise CommandError(f"cannot read that: {exc}") from None
    group = words[0].lstrip("/").lower() if words else "restore"
    if group in ("restore", "backup", "oncall"):
        words = words[1:]
    else:
        group = "restore"
    words, cluster = _cluster_option(words)
    if group == "restore":
        if not words:
            return Command("help", user, origin=origin)
        if words[0].lower() not in RESTORE_SUBCOMMANDS:
            raise CommandError(messages.UNKNOWN_SUBCOMMAND.format(name=words[0]))
        words = [words[0].lower()] + _long_forms(words[1:])
    args, extra = _PARSER.parse_known_args([group] + words)
    if extra:
        raise CommandError(f"unrecognized arguments: {' '.join(extra)}", _usage(f"/{group}"))
    if group == "oncall":
        return _oncall(args, user, origin)
    cmd = Command(f"backup {args.what}", user, origin=origin) if group == "backup" else _restore(args, user, origin)
    typed = [c for c in (cluster, getattr(args, "cluster", None), cmd.cluster) if c]
    if len({c.lower() for c in typed}) > 1:
        raise CommandError(f"two clusters named: {' and '.join(typed)}; name one")
    return replace(cmd, cluster=_cluster_name(typed[0])) if typed else cmd


def _cluster_option(words: list[str]) -> tuple[list[str], str | None]:
    """`--cluster NAME`, `--cluster=NAME` or `cluster=NAME` anywhere, taken out of the words."""
    out, cluster, i = [], None, 0
    while i < len(words):
        key, eq, value = words[i].partition("=")
        if key.lower() in ("--cluster", "cluster") and eq:
            cluster = value
        elif words[i].lower() == "--cluster" and i + 1 < len(words):
            cluster, i = words[i + 1], i + 1
        else:
            out.append(words[i])
        i += 1
    return out, cluster


def _cluster_name(word: str) -> str:
    if not _CLUSTER.match(word):
        raise CommandError(f"{word!r} is not a cluster name (letters, digits and _, starting with a letter); "
                           "`/restore clusters` lists them")
    return word.lower()


def _oncall(args: argparse.Namespace, user: str, origin: str) -> Command:
    if args.what is None and args.who is None:
        return Command("oncall", user, origin=origin)
    if args.what != "set" or args.who is None or not (m := _MENTION.match(args.who)):
        raise CommandError("`/oncall set` takes one person: `/oncall set @user`", messages.ONCALL_USAGE)
    return Command("oncall set", user, origin=origin, who=m["id"])


def _restore(args: argparse.Namespace, user: str, origin: str) -> Command:
    if args.name == "undo":
        return _undo(args.words, user, origin)
    stop = getattr(args, "stop_before", None)
    skips = tuple(getattr(args, "skip", None) or ())
    chosen = stop is not None or bool(skips)
    stop = "auto" if stop is None else stop
    try:
        parse_spec(stop, option="--stop-before")
        for s in skips:
            parse_spec(s, option="--skip", allow=("gtid", "filepos"))
    except RestoreError as exc:
        raise CommandError(f"{exc} — {exc.hint}") from None
    name, cluster = args.name, None
    if name == "choice":
        name, cluster = _choice(args.words)
    return Command(name, user, origin=origin, stop_before=stop, skips=skips, job=getattr(args, "job", None),
                   restart=bool(getattr(args, "restart", False)), chosen=chosen, cluster=cluster)


def _choice(words: list[str]) -> tuple[str, str | None]:
    clear = bool(words) and words[0].lower() == "clear"
    rest = words[1:] if clear else words
    if len(rest) > 1:
        raise CommandError(f"`/restore choice` takes `clear` and then one cluster; got {' '.join(words)!r}")
    return ("choice clear" if clear else "choice"), (_cluster_name(rest[0]) if rest else None)


def _undo(words: list[str], user: str, origin: str) -> Command:
    if words[0].lower() == "approve":
        if len(words) != 2:
            raise CommandError("`/restore undo approve` takes the undo job: `/restore undo approve R5`")
        return Command("undo approve", user, origin=origin, job=words[1])
    targets = [w.lower() for w in words[1:] if w.lower() in UNDO_TARGETS]
    clusters = [w for w in words[1:] if w.lower() not in UNDO_TARGETS]
    if len(targets) > 1 or len(clusters) > 1:
        raise CommandError(f"`/restore undo` takes one SPEC and then the target, {' or '.join(UNDO_TARGETS)} "
                           f"(default stage), and the cluster; got {' '.join(words)!r}")
    cmd = undo_command(words[0], targets[0] if targets else "stage", user, origin)
    return replace(cmd, cluster=clusters[0]) if clusters else cmd


def undo_command(spec: str, target: str, user: str, origin: str) -> Command:
    """`/restore undo SPEC [stage|prod]` (or an alert's *Undo this*): SPEC is checked here, so a typo
    is answered at once rather than by a failed job."""
    if spec.strip().lower() != "auto":
        try:
            parse_spec(spec, option="undo SPEC", allow=("gtid", "filepos"))
        except RestoreError as exc:
            raise CommandError(f"{exc.message} — {messages.UNDO_SPEC_HELP}") from None
    return Command("undo", user, origin=origin, spec=spec.strip(), target=target)


def from_action(action_id: str, value: str, user: str, origin: str = "slack") -> Command:
    """A button click (its action id and value, as the presenter put them on the message) as a Command."""
    if action_id in (APPROVE_ACTION, REJECT_ACTION):
        return Command("approve" if action_id == APPROVE_ACTION else "reject", user, origin=origin, job=value)
    if action_id == UNDO_APPROVE_ACTION:
        return Command("undo approve", user, origin=origin, job=value)
    if action_id in (STOP_ACTION, SKIP_ACTION):
        try:
            doc = json.loads(value)
            job, spec = str(doc["job"]), str(doc["spec"])
        except (ValueError, KeyError, TypeError):
            raise CommandError(f"a {action_id} button with an unreadable value {value[:80]!r}") from None
        return Command("choose stop" if action_id == STOP_ACTION else "choose skip", user, origin=origin, job=job,
                       spec=spec, where=str(doc.get("where") or ""), chosen=bool(doc.get("chosen")))
    if action_id in (ALERT_ACK, ALERT_EXPECTED, ALERT_INCIDENT):
        return Command(action_id.replace("_", " "), user, origin=origin, alert=value)
    # An alert's Plan restore / Undo this: the value is the event's spec, then `@CLUSTER` when the
    # alert names its cluster (a GTID or FILE:POS never holds an @).
    value, _at, cluster = value.partition("@")
    cluster_name = _cluster_name(cluster) if cluster else None
    if action_id == ALERT_PLAN:
        try:
            parse_spec(value, option="--stop-before")
        except RestoreError as exc:
            raise CommandError(f"{exc} — {exc.hint}") from None
        return Command("plan", user, origin=origin, stop_before=value, chosen=True, cluster=cluster_name)
    if action_id == ALERT_UNDO:
        return replace(undo_command(value, "", user, origin), cluster=cluster_name)
    raise CommandError(f"I don't know the button `{action_id}`.")
