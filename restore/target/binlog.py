"""What a restore writes into the target's own binlog.

A target with a binlog logs every replayed change, so its replicas receive the restored data.
Row events are replayed as `BINLOG '<base64>'` statements holding many source events each;
with MariaDB's `binlog_annotate_row_events` (ON by default) or MySQL's
`binlog_rows_query_log_events`, the server logs the statement's text once per row-event group
inside it, which makes the target's binlog grow with the square of the batch (a 9.8 MB range
grew one by 1.1 GB). The replay session turns those annotations off; a user not allowed to
(MariaDB wants SUPER or BINLOG ADMIN) gets one `BINLOG` statement per source statement instead,
so each annotation holds one statement's events.

`log_replay=False` (`--no-target-binlog`) keeps the replay out of the target's binlog altogether
(`sql_log_bin=0`): for a target without replicas, or whose replicas are restored on their own.
"""
from __future__ import annotations

from dataclasses import dataclass

import pymysql

from restore.errors import TargetError
from restore.mysql.flavor import Flavor

ACCESS_DENIED = {1227, 1044, 1045, 1142}
UNKNOWN_VARIABLE = 1193   # a server too old to annotate rows: nothing to turn off


@dataclass(frozen=True)
class TargetBinlog:
    enabled: bool            # the target writes a binlog (@@log_bin)
    logged: bool             # the replay goes into it
    annotations_off: bool    # the session's row annotations are off (or there is nothing to annotate)

    @property
    def statement_per_binlog(self) -> bool:
        """Send one source statement's row events per `BINLOG` statement."""
        return self.logged and not self.annotations_off

    def describe(self) -> str:
        if not self.enabled:
            return "the target writes no binlog"
        if not self.logged:
            return "the replay is kept out of the target's binlog (sql_log_bin=0): its replicas do not receive it"
        if self.annotations_off:
            return "the replay goes into the target's binlog (row annotations off), so its replicas receive it"
        return ("the replay goes into the target's binlog, so its replicas receive it; row annotations could not be "
                "turned off for the session (needs SUPER or BINLOG ADMIN), so row events are sent one statement "
                "at a time, which is slower")


def _annotation_variable(flavor: Flavor) -> str:
    return "binlog_annotate_row_events" if flavor.is_mariadb else "binlog_rows_query_log_events"


def init_commands(log_replay: bool) -> list[str]:
    """Session settings for another client writing the restore (the dump loader)."""
    return [] if log_replay else ["SET SESSION sql_log_bin=0"]


def prepare_session(conn, flavor: Flavor, *, log_replay: bool) -> TargetBinlog:
    """Set up a replay session on `conn`; call it on every new replay connection."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin")
        enabled = bool(int(cur.fetchone()[0] or 0))
        if not log_replay:
            try:
                cur.execute("SET SESSION sql_log_bin=0")
            except pymysql.err.MySQLError as exc:
                raise TargetError(
                    f"--no-target-binlog: the target refused SET sql_log_bin=0: {exc.args[-1]}",
                    hint="grant the restore user SUPER or BINLOG ADMIN (MariaDB), SYSTEM_VARIABLES_ADMIN (MySQL), "
                         "or leave --no-target-binlog out so the replay is logged") from None
            return TargetBinlog(enabled, False, True)
        if not enabled:
            return TargetBinlog(False, True, True)
        try:
            cur.execute(f"SET SESSION {_annotation_variable(flavor)}=0")
            off = True
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            if code not in ACCESS_DENIED and code != UNKNOWN_VARIABLE:
                raise
            off = code == UNKNOWN_VARIABLE
    return TargetBinlog(True, True, off)


def checkpoint_row_image(conn) -> tuple[bytes, bytes] | None:
    """SQL to log the replay's checkpoint UPDATEs with `binlog_row_image=MINIMAL`, and to set the
    session's image back after each, or None where it is not needed or not allowed.

    A ROW-format target logs each checkpoint UPDATE (one per commit) as the state row's before and
    after images, plan JSON included: some KB to tens of KB per commit, which with a small --batch
    added more than the replay itself (a 3.4 MB range grew a ROW target by 17.6 MB at --batch 5,
    8.3 MB at 1000). MINIMAL logs the primary key and the changed columns; the replayed data keeps
    the target's own image. Setting it needs SUPER or BINLOG ADMIN: without, nothing changes."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin, @@sql_log_bin, @@binlog_format, @@binlog_row_image")
        log_bin, logged, fmt, image = cur.fetchone()
        if not (int(log_bin or 0) and int(logged or 0)) or str(fmt).upper() != "ROW" or str(image).upper() == "MINIMAL":
            return None
        try:
            cur.execute("SET SESSION binlog_row_image=@@session.binlog_row_image")   # allowed at all?
        except pymysql.err.MySQLError as exc:
            if (exc.args[0] if exc.args else 0) in ACCESS_DENIED:
                return None
            raise
    return b"SET SESSION binlog_row_image='MINIMAL'", f"SET SESSION binlog_row_image='{image}'".encode()
