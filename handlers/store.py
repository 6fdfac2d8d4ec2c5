"""Where the job store, the audit log, watch positions, alerts and leases live: one SQLite file (the
embedded default, `[store] path`) or a database server several `serve` instances share
(`[store] url = "mysql://…"` — MariaDB 10.6+/MySQL 8 through PyMySQL — or `postgresql://…`).

`open_store` takes either, gives a `Store` (a SQLAlchemy engine and the few things that differ per
backend: the store's clock, upserts, locking), and brings the schema to the newest Alembic revision
(handlers/store_migrations) before anything reads it. A SQLite file of the releases before Alembic
(`PRAGMA user_version` 0-2) is first brought to version 2 by handlers/sqlite_store.py, then stamped
with revision 0001 (that layout) and upgraded like any other store.

Times that instances compare with each other (heartbeats, leases, alert claims) are the database
server's clock, never a host's: two hosts' clocks may disagree by more than a lease lasts.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from handlers import sqlite_store
from handlers.sqlite_store import StoreFileError

log = logging.getLogger("restore-handlers.store")

MIGRATIONS_DIR = Path(__file__).with_name("store_migrations")
_LOCK_NAME = "restore_bot_store_migrate"
_LOCK_KEY = 0x7265_7374   # PostgreSQL's advisory lock key for the same
_CLAIM_LOCK = "restore_bot_claim"   # Store.claim_lock
# The clock of each backend's server, in Unix seconds with sub-second precision.
_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "mysql": "UNIX_TIMESTAMP(NOW(6))",
    "mariadb": "UNIX_TIMESTAMP(NOW(6))",
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())",
}


@dataclass(eq=False)
class Store:
    """An open store: its engine, and `path` when it is a SQLite file."""
    engine: sa.Engine
    where: str              # for messages: the file, or the URL without its password
    path: str | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """What open_store opens this store again from, password included: for a child process, never
        for a message (`where` is that)."""
        return self.path if self.path is not None else self.engine.url.render_as_string(hide_password=False)

    @property
    def shared(self) -> bool:
        """A database server (several instances may use it), not the embedded file."""
        return self.path is None

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A transaction that will write after it reads: on SQLite it takes the file's write lock at
        BEGIN (BEGIN IMMEDIATE), so two processes never both read "free" and then both take it."""
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def claiming(self) -> Iterator[sa.Connection]:
        """A write transaction no other instance's `claiming` overlaps, lock released after the commit:
        a named lock on MySQL/MariaDB, an advisory one on PostgreSQL (SQLite's BEGIN IMMEDIATE is one)."""
        mysql = self.dialect in ("mysql", "mariadb")
        with self.engine.connect().execution_options(write=True) as conn:
            if mysql:
                conn.exec_driver_sql(f"SELECT GET_LOCK('{_CLAIM_LOCK}', 30)")
                conn.commit()
            try:
                with conn.begin():
                    if self.dialect == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY + 1})")
                    yield conn
            finally:
                if mysql:
                    conn.exec_driver_sql(f"SELECT RELEASE_LOCK('{_CLAIM_LOCK}')")
                    conn.commit()

    def read(self) -> contextlib.AbstractContextManager[sa.Connection]:
        return self.engine.begin()

    def now(self) -> sa.ColumnElement:
        """The database server's clock, as an SQL expression."""
        return sa.literal_column(_NOW[self.dialect], sa.Double)

    def upsert(self, conn: sa.Connection, table: sa.Table, values: dict, key: str) -> None:
        """Insert the row, or update every other column of the one with the same `key`."""
        others = {c: v for c, v in values.items() if c != key}
        if self.dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert
            stmt = insert(table).values(**values)
            conn.execute(stmt.on_duplicate_key_update(**others))
            return
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table).values(**values)
        conn.execute(stmt.on_conflict_do_update(index_elements=[key], set_=others))

    def insert_new(self, table: sa.Table, values: dict) -> bool:
        """Insert a row in its own transaction; False when its key is taken (by any instance:
        the unique key, not a read before, decides)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(table.insert().values(**values))
        except sa.exc.IntegrityError:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(url_or_path: str | Path | Store, *, durable: bool = True) -> Store:
    """The store at a SQLite path or a database URL (`mysql://`, `mysql+pymysql://`, `mariadb://`,
    `postgresql://`, `sqlite:///`), migrated to the newest schema.

    `durable=False` (SQLite only) skips the fsync per commit: WAL keeps the file consistent, a power
    loss may lose the last commits. The alert path takes that for its latency."""
    if isinstance(url_or_path, Store):
        return url_or_path
    text = str(url_or_path)
    if "://" not in text:
        store = _sqlite(text, durable)
    else:
        url = sa.make_url(_driver_url(text))
        if url.get_backend_name() == "sqlite":
            store = _sqlite(url.database or "", durable)
        else:
            where = url.render_as_string(hide_password=True)
            options = {"isolation_level": "READ COMMITTED"} if url.get_backend_name() in ("mysql", "mariadb") else {}
            try:
                engine = sa.create_engine(url, pool_pre_ping=True, pool_recycle=1800, **options)
            except ModuleNotFoundError as exc:   # psycopg is not a dependency of every install
                raise StoreFileError(f"store {where}: its database driver is not installed ({exc.name})",
                                     hint="for PostgreSQL install psycopg 3: pip install 'restore-bot[postgres]' "
                                          "(from a checkout: pip install '.[postgres]')") from exc
            store = Store(engine, where)
    try:
        migrate(store)
    except BaseException:
        store.dispose()
        raise
    return store


def _driver_url(text: str) -> str:
    """restore-bot's own spelling of a server (`mysql://user:pw@host/db`, as in [source]) with the
    driver the project ships (PyMySQL), utf8mb4 so every character of a statement is kept;
    `postgresql://` with psycopg 3 (SQLAlchemy's default would be psycopg2)."""
    scheme, rest = text.split("://", 1)
    scheme = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql", "postgres": "postgresql+psycopg",
              "postgresql": "postgresql+psycopg"}.get(scheme, scheme)
    if scheme.endswith("+pymysql") and "charset=" not in rest:
        rest += ("&" if "?" in rest else "?") + "charset=utf8mb4"
    return f"{scheme}://{rest}"


def _sqlite(path: str, durable: bool) -> Store:
    if not path:
        raise StoreFileError("a sqlite:/// store URL names no file",
                             hint="write sqlite:///path/to/restore-bot.sqlite3, or [store] path")
    # Connections stay open in the engine's pool: closing the last one of a WAL file checkpoints
    # and removes the WAL (an fsync, ~15 ms a statement if each use opened the file).
    engine = sa.create_engine(f"sqlite:///{path}", pool_size=2, max_overflow=8, connect_args={"timeout": 30})
    synchronous = "FULL" if durable else "NORMAL"

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi: sqlite3.Connection, _record) -> None:
        dbapi.isolation_level = None   # the driver's own BEGIN would come only before DML: ours below
        dbapi.execute("PRAGMA journal_mode=WAL")
        dbapi.execute(f"PRAGMA synchronous={synchronous}")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return Store(engine, path, path=path)


# -- migrations -------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


def head() -> str:
    return _scripts().get_current_head()


def _revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def migrate(store: Store) -> None:
    """Bring the store to `head()`. Several processes may open it at once: the first takes the
    backend's lock (SQLite's write lock, GET_LOCK, an advisory lock) and migrates, the others then
    find nothing to do. A store a newer restore-bot migrated is refused, never guessed at."""
    if store.path is not None:
        sqlite_store.convert_legacy(store.path)   # the pre-Alembic versions, to 2 (and a file check)
    with store.read() as conn:
        if _revision(conn) == head():   # the usual case, without any lock
            return
    with store.write() as conn:
        if store.dialect in ("mysql", "mariadb"):
            conn.exec_driver_sql(f"SELECT GET_LOCK('{_LOCK_NAME}', 120)")
        elif store.dialect == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        try:
            _upgrade(store, conn)
        finally:
            if store.dialect in ("mysql", "mariadb"):
                conn.exec_driver_sql(f"SELECT RELEASE_LOCK('{_LOCK_NAME}')")


def _upgrade(store: Store, conn: sa.Connection) -> None:
    found = _revision(conn)
    known = {s.revision for s in _scripts().walk_revisions()}
    if found is not None and found not in known:
        raise StoreFileError(
            f"store {store.where} has schema revision {found}, newer than this restore-bot knows ({head()}): "
            f"a newer restore-bot wrote it",
            hint="run that version or a later one with this store, or point [store] at another one; "
                 "a store is never migrated back")
    if found == head():
        return
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    if found is None and sa.inspect(conn).has_table("jobs"):
        if store.path is None:   # a server store was never written without Alembic
            raise StoreFileError(
                f"store {store.where} already has a `jobs` table that restore-bot's migrations did not make",
                hint="give restore-bot a database of its own: CREATE DATABASE restore_bot, and name it in [store] url")
        command.stamp(cfg, "0001")   # a pre-Alembic file, now at user_version 2: that layout is 0001
    command.upgrade(cfg, "head")
    if store.path is not None:
        # An older restore-bot, which knows user_version 2 at most, refuses this file instead of
        # writing to tables it does not know.
        conn.exec_driver_sql(f"PRAGMA user_version = {sqlite_store.ALEMBIC_VERSION}")
    log.info("store %s: schema %s -> %s", store.where, found or "empty", head())
