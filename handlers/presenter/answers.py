"""The answers to commands that show something: history, the saved choice, backups, who is on call."""
from __future__ import annotations

from datetime import datetime

from handlers import messages
from handlers.alerts import mention


def args_text(args: dict) -> str:
    """A job's plan arguments as typed: `cluster=... stop=... skip=... --restart (2 expected)`."""
    parts = [f"cluster={args['cluster']}"] if args.get("cluster") else []
    if args.get("stop_before", "auto") != "auto":
        parts.append(f"stop={args['stop_before']}")
    parts += [f"skip={s}" for s in args.get("skips", [])]
    if args.get("restart"):
        parts.append("--restart")
    if args.get("expected"):
        parts.append(f"({len(args['expected'])} expected)")
    return " ".join(parts)


def bad_input(error: Exception, usage: str) -> str:
    return messages.BAD_INPUT.format(error=error, usage=usage)


def history(entries: list[dict]) -> str:
    if not entries:
        return messages.HISTORY_EMPTY
    return "\n".join(f"{datetime.fromtimestamp(e['ts']).strftime('%m-%d %H:%M:%S')}  {e['actor']}  {e['action']}"
                     f"{' ' + e['job'] if e['job'] else ''}{'  — ' + e['detail'] if e['detail'] else ''}"
                     for e in reversed(entries))


def choice_text(choice: dict) -> str:
    stop = choice.get("stop") or "auto"
    text = messages.CHOICE_STOP_AUTO if stop == "auto" else messages.CHOICE_STOP.format(stop=stop)
    if choice.get("skips"):
        text += messages.CHOICE_SKIPS.format(skips=", ".join(f"`{s}`" for s in choice["skips"]))
    return text


def choice_shown(choice: dict | None, expected: list[dict]) -> str:
    lines = [messages.CHOICE_SHOW.format(user=choice["user"], why=choice["why"], what=choice_text(choice))
             if choice else messages.CHOICE_NONE]
    for e in expected:
        lines.append(messages.EXPECTED_LINE.format(tx=e["tx"], gtid=f" (GTID {e['gtid']})" if e["gtid"] else "",
                                                   user=e["user"], reason=e["reason"]))
    return "\n".join(lines)


def backups(listed: list) -> str:
    """`/backup list`: the newest first, with what to do about dumps that cannot be read."""
    lines = [b.describe() for b in listed]
    if listed and not listed[0].readable:
        # The drill restores the newest dump, and the archiver keeps every binlog while it cannot
        # read it: this one needs acting on, not just listing.
        lines.append(messages.NEWEST_BACKUP_UNREADABLE.format(name=listed[0].path.name))
    elif any(not b.readable for b in listed):
        lines.append(messages.SOME_BACKUPS_UNREADABLE)
    return "\n".join(lines) or messages.NO_BACKUPS


def oncall(current: str | None, rotation: tuple[str, ...]) -> str:
    return messages.ONCALL_NOW.format(current=mention(current),
                                      rotation=", ".join(mention(u) for u in rotation) or messages.ONCALL_NO_ROTATION)


def oncall_set(who: str, user: str) -> str:
    return messages.ONCALL_SET.format(who=mention(who), user=mention(user))
