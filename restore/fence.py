"""Keeps application writers away from a production target while it is being restored.

The lesson of the attendance table: a replay into a server the application still writes to
collides. Two modes:
- `refuse` (default): any other session using a restored database, or holding an open
  transaction, stops the restore before anything is swapped, naming each session.
- `lock`: the listed application accounts are locked (ACCOUNT LOCK) and their sessions
  killed for the duration, and unlocked afterwards, also when the restore fails.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import TargetError

_IGNORED_USERS = {"system user", "event_scheduler", "repl", "replication"}


@dataclass(frozen=True)
class Session:
    id: int
    user: str
    host: str
    db: str | None
    command: str
    seconds: int

    def __str__(self) -> str:
        return f"{self.user}@{self.host} (connection {self.id}, database {self.db or '-'}, {self.command} {self.seconds}s)"


def writers(conn, databases: list[str]) -> list[Session]:
    """Other sessions that could write to `databases`: using one of them, or inside a transaction."""
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        me = cur.fetchone()[0]
        cur.execute("SELECT ID, USER, HOST, DB, COMMAND, TIME FROM information_schema.PROCESSLIST")
        rows = cur.fetchall()
        cur.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
        in_tx = {r[0] for r in cur.fetchall()}
    out = []
    for sid, user, host, db, command, seconds in rows:
        if sid == me or user in _IGNORED_USERS or command in ("Binlog Dump", "Daemon", "Killed"):
            continue
        if db in databases or sid in in_tx:
            out.append(Session(sid, user, host, db, command, int(seconds or 0)))
    return out


def refuse_writers(conn, databases: list[str], when: str) -> None:
    found = writers(conn, databases)
    if found:
        listed = "; ".join(str(s) for s in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise TargetError(f"{when}: {len(found)} other session(s) may write to {', '.join(databases)}: {listed}",
                          hint="stop the application (or point it at maintenance mode) and run the job again; "
                               "or set fence = \"lock\" with fence_users for the target")


class AccountLock:
    """ACCOUNT LOCK the application's users and kill their sessions; undone on exit."""

    def __init__(self, conn, users: list[str]) -> None:
        self.conn = conn
        self.users = users
        self.locked: list[tuple[str, str]] = []

    def __enter__(self) -> "AccountLock":
        with self.conn.cursor() as cur:
            for user in self.users:
                cur.execute("SELECT User, Host FROM mysql.user WHERE User = %s", (user,))
                for u, h in cur.fetchall():
                    cur.execute("ALTER USER %s@%s ACCOUNT LOCK", (u, h))
                    self.locked.append((u, h))
            cur.execute("SELECT CONNECTION_ID()")
            me = cur.fetchone()[0]
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN %s AND ID != %s",
                        (tuple(self.users) or ("",), me))
            for (sid,) in cur.fetchall():
                try:
                    cur.execute(f"KILL {int(sid)}")
                except Exception:  # it may have ended on its own meanwhile
                    pass
        return self

    def __exit__(self, *exc: object) -> None:
        with self.conn.cursor() as cur:
            for u, h in self.locked:
                cur.execute("ALTER USER %s@%s ACCOUNT UNLOCK", (u, h))
