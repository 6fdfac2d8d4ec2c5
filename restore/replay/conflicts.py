"""Turns a server error during replay into something an operator can act on at 3 a.m."""
from __future__ import annotations

import re

from restore.errors import ApplyError

# Following it loses nothing: a writer's rows stay, in the set-aside copy.
RESTART = ("Stop the writers (or fence them: --fence lock --fence-user APP_USER), then start over from the dumps with "
           "--restart: what this run restored, with any row a writer committed into it, is moved to "
           "<db>__unfinished_<time>, nothing is deleted. If the coordinates are at fault, use a dump whose recorded "
           "position matches its data")
# A changed plan (other dumps, another stop) is another plan: it starts over from the dumps.
START_OVER = "--restart (what this run restored is moved to <db>__unfinished_<time>, nothing is deleted)"
_DUP = re.compile(r"Duplicate entry '(?P<value>.*)' for key '(?P<key>[^']*)'", re.S)


def explain_failure(exc: Exception, where: str, table: str | None) -> ApplyError:
    code = exc.args[0] if exc.args else 0
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    on = f" on table {table}" if table else ""
    resume = "run the same command again: it resumes from the last checkpoint"
    if code == 1062:
        m = _DUP.search(text)
        key = f"key {m['key']} = '{m['value']}'" if m else text
        return ApplyError(
            f"conflict at binlog {where}{on}: duplicate {key}",
            where=where,
            hint=("likely cause: something else is writing to the target (is the application still connected? "
                  "stop it or fence it), or a dump's coordinates are older than its data. " + RESTART))
    if code in (1032, 1020):
        return ApplyError(
            f"conflict at binlog {where}{on}: the row the binlog changes is not on the target ({text})",
            where=where,
            hint=("likely cause: the target diverged from the binlog (a writer changed it, or the dump was taken "
                  "at a different position than it records). " + RESTART))
    if code in (1146, 1049):
        return ApplyError(
            f"binlog {where}{on}: {text}",
            where=where,
            hint=("the snapshot lacks an object this change needs: check that every database the binlog touches has "
                  "a snapshot, and that each dump's coordinates match it; then run the command with the right dumps "
                  "and " + START_OVER))
    if code in (1227, 1044, 1045, 1142):
        return ApplyError(
            f"the target refused binlog {where}: {text}",
            where=where,
            hint=("the restore user needs BINLOG REPLAY (MariaDB 10.5+) or SUPER to replay row events, and rights "
                  "on the restored databases; grant them and " + resume))
    if code in (2006, 2013):
        return ApplyError(
            f"lost the connection to the target at binlog {where}: {text}",
            where=where, hint=f"check the target server is up, then {resume}")
    return ApplyError(f"the target refused binlog {where}{on}: error {code}: {text}", where=where,
                      hint=f"fix the cause shown by the server, then {resume}; or restore only up to before its "
                           f"transaction: add --stop-before {where} {START_OVER}")
