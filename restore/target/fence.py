"""Keeps application writers away from a production target while it is being restored.

The lesson of the attendance table: a replay into a server the application still writes to
collides. Two modes:
- `refuse` (default): any other session using a restored database, or holding an open
  transaction, stops the restore before anything is swapped, naming each session.
- `lock`: the listed application accounts are locked (ACCOUNT LOCK) and their sessions
  killed for the duration, and unlocked afterwards, also when the restore fails.

A `refuse` checked only at the start lets a writer that connects later write while the replay
runs for minutes: `Fence.check_still_alone` looks again (one PROCESSLIST and one INNODB_TRX
query, a few ms), and `Fence.after_each_commit` runs it after every committed batch, so such a
writer stops the restore within one batch, with its checkpoint kept.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pymysql

from restore.errors import TargetError

FENCE_CHOICES = ("refuse", "lock")

_NO_SUCH_THREAD = 1094
_ACCESS_DENIED = {1227, 1044, 1045, 1142, 1143}
_CONNECTION_LOST = {2006, 2013, 2055}
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


def writers(conn, databases: list[str], ours: Collection[int] = ()) -> list[Session]:
    """Other sessions that could write to `databases`: using one of them, or inside a transaction
    (except restore-bot's own, in its job store's schema). `ours`: connection ids of the restore
    itself (its replay session uses them, in a transaction)."""
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        me = cur.fetchone()[0]
        cur.execute("SELECT ID, USER, HOST, DB, COMMAND, TIME FROM information_schema.PROCESSLIST")
        rows = cur.fetchall()
        in_tx = {r[0] for r in _transactions(cur)}
        stores = _job_stores(cur, {r[3] for r in rows if r[0] in in_tx and r[3] and r[3] not in databases})
    out = []
    for sid, user, host, db, command, seconds in rows:
        if sid == me or sid in ours or user in _IGNORED_USERS or command in ("Binlog Dump", "Daemon", "Killed"):
            continue
        if db in databases or (sid in in_tx and db not in stores):
            out.append(Session(sid, user, host, db, command, int(seconds or 0)))
    return out


# restore-bot's own job store on this server ([store] url): the tables only it has. Its instances'
# sessions there (workers claiming jobs, heartbeats, leases, reporters) hold short transactions all
# the time: counted as writers, they made a prod restore onto the server holding the store refuse.
_STORE_TABLES = ("jobs", "events", "leases", "watch_position", "alembic_version")


def _job_stores(cur, schemas: set[str]) -> set[str]:
    """Those of `schemas` that hold a restore-bot job store."""
    if not schemas:
        return set()
    marks = ", ".join(["%s"] * len(_STORE_TABLES))
    cur.execute(f"SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({', '.join(['%s'] * len(schemas))}) "
                f"AND TABLE_NAME IN ({marks}) GROUP BY TABLE_SCHEMA HAVING COUNT(*) = %s",
                (*sorted(schemas), *_STORE_TABLES, len(_STORE_TABLES)))
    return {r[0] for r in cur.fetchall()}


# Either fence needs to see every session (PROCESSLIST shows only our own without PROCESS), and
# `lock` to end the application's (KILL of another user's session: CONNECTION ADMIN or SUPER).
_SESSION_RIGHTS = ("grant the restore user PROCESS (to see whether the application is connected) and CONNECTION ADMIN "
                   "(to end its sessions with fence lock): GRANT PROCESS, CONNECTION ADMIN ON *.* TO <restore user>; "
                   "then run the same command again")


def _transactions(cur) -> list[tuple]:
    """Open InnoDB transactions' connection ids; refused without PROCESS, which also hides the
    other sessions from PROCESSLIST: a fence would then see nobody, so it stops here."""
    try:
        cur.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
    except pymysql.err.MySQLError as exc:
        if (exc.args[0] if exc.args else 0) not in _ACCESS_DENIED:
            raise
        raise TargetError(f"fence: cannot see the target's other sessions: {exc.args[-1]}; nothing was changed",
                          hint=_SESSION_RIGHTS) from None
    return list(cur.fetchall())


def _listed(found: list[Session]) -> str:
    return "; ".join(str(s) for s in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")


def refuse_writers(conn, databases: list[str], when: str) -> None:
    found = writers(conn, databases)
    if found:
        listed = _listed(found)
        raise TargetError(f"{when}: {len(found)} other session(s) may write to {', '.join(databases)}: {listed}",
                          hint="stop the application (or point it at maintenance mode) and run the job again; or "
                               "lock the application's accounts out for the restore: fence = \"lock\" with fence_users "
                               "for a chat target, --fence lock --fence-user APP_USER on the command line")


def preflight(conn, databases: list[str], mode: str, users: list[str], when: str) -> None:
    """Before a long job: with `refuse`, no writer now; with `lock`, every account to lock exists
    (a typo in fence_users is reported at once, not hours later)."""
    if mode == "refuse":
        refuse_writers(conn, databases, when)
    else:
        accounts(conn, users)
        with conn.cursor() as cur:
            _transactions(cur)


class Fence:
    """The fence in force during a restore, to look again while it runs (see the module's docstring)."""

    def __init__(self, conn, databases: list[str], mode: str) -> None:
        self.conn = conn
        self.databases = list(databases)
        self.mode = mode

    def check_still_alone(self, ours: Collection[int] = ()) -> None:
        """With `refuse`: raise a TargetError naming every other session that may now write to the
        databases being restored (`ours`: the restore's own connection ids). With `lock` the
        application cannot log in at all: nothing to look at."""
        if self.mode != "refuse":
            return
        try:
            found = writers(self.conn, self.databases, ours)
        except pymysql.err.OperationalError as exc:
            if (exc.args[0] if exc.args else 0) not in _CONNECTION_LOST:
                raise
            # Its session was ended (an operator's KILL, a restart): look again on a new one.
            try:
                self.conn.connect()   # pymysql: opens the connection again with its parameters
                found = writers(self.conn, self.databases, ours)
            except pymysql.err.MySQLError as again:
                raise TargetError(f"fence: lost the connection to the target while the restore ran: {_server_text(again)}; "
                                  "everything committed so far is kept",
                                  hint="check that the target is up, then run the same command again: it resumes "
                                       "from the last checkpoint") from None
        if found:
            raise TargetError(
                f"restore stopped: {len(found)} other session(s) connected while it ran and may write to "
                f"{', '.join(self.databases)}: {_listed(found)}. Everything committed so far is kept (its checkpoint)",
                hint="stop the application (or point it at maintenance mode), or lock its accounts out with "
                     "--fence lock --fence-user APP_USER (chat target: fence = \"lock\" with fence_users); then run "
                     "the same command again: the restore resumes from its checkpoint")

    def after_each_commit(self, interrupt: Callable[[], None] | None,
                          ours: Callable[[], Collection[int]]) -> Callable[[], None]:
        """An `interrupt` for the Applier (called after every committed batch): `interrupt` first,
        then `check_still_alone(ours())`."""
        def check() -> None:
            if interrupt is not None:
                interrupt()
            self.check_still_alone(ours())
        return check


@contextmanager
def fenced(conn, databases: list[str], mode: str, users: list[str], when: str) -> Iterator[Fence]:
    """Writers kept away from `databases` for the duration of the block: with `refuse`, the block
    runs only if no other session may write to them now (and `Fence.check_still_alone` looks again
    while it runs); with `lock`, `users` cannot log in and their sessions are killed until the block ends."""
    fence = Fence(conn, databases, mode)
    if mode == "lock":
        with AccountLock(conn, users):
            yield fence
        return
    refuse_writers(conn, databases, when)
    yield fence


class AccountLock:
    """ACCOUNT LOCK the application's users and kill their sessions; undone on exit.

    If locking fails half way, what was locked is unlocked again before the error goes up:
    `__exit__` never runs for a failed `__enter__`, and the application must not stay locked out."""

    def __init__(self, conn, users: list[str]) -> None:
        self.conn = conn
        self.users = users
        self.locked: list[tuple[str, str]] = []

    def __enter__(self) -> "AccountLock":
        accounts = self._accounts()
        with self.conn.cursor() as cur:
            _transactions(cur)   # sessions it cannot see, it could not end: refused before locking
        current = None
        try:
            with self.conn.cursor() as cur:
                for account in accounts:
                    current = account
                    cur.execute("ALTER USER %s@%s ACCOUNT LOCK", account)
                    self.locked.append(account)
                current = None
                cur.execute("SELECT CONNECTION_ID()")
                me = cur.fetchone()[0]
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN %s AND ID != %s",
                            (tuple(self.users) or ("",), me))
                for (sid,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL {int(sid)}")
                    except pymysql.err.MySQLError as exc:
                        if exc.args[0] != _NO_SUCH_THREAD:   # not merely ended on its own meanwhile
                            raise
        except BaseException as exc:
            still = self._unlock()
            if not isinstance(exc, Exception):  # Ctrl-C, an abort: unlocked, and it goes on up as it is
                self.locked = still
                raise
            doing = f"locking {_account(current)}" if current else "killing the application's sessions"
            undone = (f"; the accounts locked before it ({', '.join(map(_account, self.locked))}) were unlocked again"
                      if self.locked and not still else "")
            if still:
                undone = (f"; these accounts are STILL LOCKED: {', '.join(map(_account, still))} "
                          "(unlock each with ALTER USER 'user'@'host' ACCOUNT UNLOCK)")
            self.locked = still
            raise TargetError(f"fence: {doing} failed: {_server_text(exc)}{undone}; nothing was swapped",
                              hint="check fence_users for the target (each an existing account, not a role) and that "
                                   "the restore user may ALTER USER (CREATE USER privilege) and end other users' "
                                   "sessions (CONNECTION ADMIN), then run the job again") from None
        return self

    def _accounts(self) -> list[tuple[str, str]]:
        return accounts(self.conn, self.users)

    def _unlock(self) -> list[tuple[str, str]]:
        """Unlock every account we locked; returns those that could not be unlocked."""
        failed = []
        for account in self.locked:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("ALTER USER %s@%s ACCOUNT UNLOCK", account)
            except Exception:
                failed.append(account)
        return failed

    def __exit__(self, exc_type, exc, tb) -> None:
        still = self._unlock()
        self.locked = still
        if still:
            failed = f" (the swap itself failed: {_server_text(exc)})" if isinstance(exc, Exception) else ""
            raise TargetError(f"fence: could not unlock {', '.join(map(_account, still))} after the swap{failed}; "
                              "the application cannot log in with them",
                              hint="unlock each with ALTER USER 'user'@'host' ACCOUNT UNLOCK on the target")


def accounts(conn, users: list[str]) -> list[tuple[str, str]]:
    """Every user@host of the listed users; a listed user without an account is an error (a typo
    in fence_users would otherwise leave the application unfenced)."""
    out: list[tuple[str, str]] = []
    with conn.cursor() as cur:
        for user in users:
            cur.execute("SELECT User, Host FROM mysql.user WHERE User = %s", (user,))
            found = [(u, h) for u, h in cur.fetchall()]
            if not found:
                raise TargetError(f"fence: fence_users names {user!r}, which has no account on the target; "
                                  "nothing was locked",
                                  hint="fix fence_users for the target (the application's MySQL user names, "
                                       "as in SELECT User FROM mysql.user), then run the job again")
            out += found
    return out


def _account(account: tuple[str, str] | None) -> str:
    return f"'{account[0]}'@'{account[1]}'" if account else "?"


def _server_text(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return f"error {args[0]}: {args[1]}"
    return str(exc) or type(exc).__name__
