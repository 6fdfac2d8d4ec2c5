"""Moving a physical backup's tables into a target server. When its datadir is on this host: the
transportable-tablespace path (`FLUSH TABLES … FOR EXPORT` on a server started on the prepared
copy, the .ibd/.cfg files copied beside the target's `DISCARD`ed table, `IMPORT TABLESPACE`).
The files are copied at disk speed instead of being turned into SQL and parsed again.

A table InnoDB cannot transport this way (another engine, partitions, a name the server encodes
in its file name), and every table of a target whose datadir is elsewhere, is copied by rows,
several tables at once; the result says which path each table took and why.
Views, triggers and routines follow the tables, from the server's own SHOW CREATE.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymysql
import pymysql.cursors
from pymysql.connections import Connection

from restore.errors import TargetError
from restore.mysql.dsn import Dsn
from restore.mysql.quote import quote_ident, quote_qualified
from restore.mysql.sandbox import Sandbox

_PLAIN = re.compile(r"[0-9A-Za-z_]+")   # stored under its own name (others are encoded, @XXXX)
_ROWS_PER_INSERT = 1000
_LOCAL_INFILE_REFUSED = {1148, 2068, 3948, 4166}   # not allowed: by the server, the client, local_infile=0
_GEOMETRY = {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
             "geometrycollection"}


def datadir_on_this_host(conn: Connection) -> Path | None:
    """The target's datadir when this host sees it as the target does: a database created through
    `conn` must appear in it as a directory we can write into."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@datadir")
        datadir = Path(cur.fetchone()[0])
        if not datadir.is_dir():
            return None
        probe = f"restore_bot_probe_{secrets.token_hex(4)}"
        cur.execute(f"CREATE DATABASE {probe}")
        try:
            # As root we hand the files to the server's user; otherwise they must already be ours.
            seen = (datadir / probe).is_dir() and os.access(datadir / probe, os.W_OK) and (
                os.geteuid() in (0, (datadir / probe).stat().st_uid))
        finally:
            cur.execute(f"DROP DATABASE {probe}")
    return datadir if seen else None


def move_tables(box: Sandbox, conn: Connection, target: Dsn, dbs: list[str], *, datadir: Path | None,
                init: Sequence[str] = (), jobs: int = 4, progress: Callable[[str], None] = lambda _: None,
                names: dict[str, str] | None = None, objects: bool = True, skip: Collection[str] = (),
                on_moved: Callable[[str, str], None] = lambda _name, _how: None,
                on_bytes: Callable[[int, int], None] = lambda _done, _total: None) -> dict:
    """Create `dbs` on the target of `conn` with the tables, views, triggers and routines of `box`
    (a server on a prepared backup copy, or any local sandbox). `datadir`: the target's, when on
    this host (datadir_on_this_host); None copies every table by rows, `jobs` tables at a time,
    over connections to `target` that first run `init`. `names`: a database's name on the target
    when not its own (a prod restore's shadow schema); `objects=False` leaves out views, triggers
    and routines (their text names the database). `skip`: tables ("db.name") a killed earlier move
    finished, left as they are; `on_moved(name, how)` is called (from any thread) once a table's
    move is complete, so a rerun can skip it. Views, triggers and routines are made again over an
    earlier run's. `on_bytes(done, total)`: the tables' bytes (data and indexes) moved so far, after
    each table. Returns {"path", "why", "tables": {name: how}}."""
    names = names or {}
    how: dict[str, str] = {}
    by_rows: list[tuple[str, str, str]] = []
    on_moved = _metered(box, dbs, skip, on_moved, on_bytes)
    with box.connect() as src, src.cursor() as scur, conn.cursor() as tcur:
        tcur.execute("SET SESSION foreign_key_checks=0")
        for db in dbs:
            to = names.get(db, db)
            scur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                         "WHERE SCHEMA_NAME=%s", (db,))
            charset, collation = scur.fetchone()
            tcur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(to)} CHARACTER SET {charset} COLLATE {collation}")
            scur.execute("SELECT TABLE_NAME, ENGINE, CREATE_OPTIONS FROM information_schema.TABLES "
                         "WHERE TABLE_SCHEMA=%s AND TABLE_TYPE='BASE TABLE' ORDER BY TABLE_NAME", (db,))
            transport = []
            for name, engine, options in scur.fetchall():
                if f"{db}.{name}" in skip:
                    how[f"{db}.{name}"] = "moved by an earlier run"
                    continue
                scur.execute(f"SHOW CREATE TABLE {quote_qualified(db, name)}")
                tcur.execute(f"USE {quote_ident(to)}")
                tcur.execute(scur.fetchone()[1])
                why = "the target's datadir is not on this host" if datadir is None else \
                    _not_transportable(db, name, engine, options or "") or _not_transportable(to, name, engine, "")
                if why:
                    how[f"{db}.{name}"] = f"rows copied ({why})"
                    by_rows.append((db, to, name))
                else:
                    transport.append(name)
            if transport:
                assert datadir is not None
                _transport(box.data_path, datadir, scur, tcur, db, to, transport,
                           lambda t: on_moved(f"{db}.{t}", "tablespace imported"))
                how.update({f"{db}.{t}": "tablespace imported" for t in transport})
                progress(f"{db}: {len(transport)} tablespace(s) imported")
        tcur.execute("SET SESSION foreign_key_checks=1")
    _copy_rows_parallel(box, target, init, by_rows, jobs, progress, lambda t: on_moved(t, how[t]))
    with box.connect() as src, src.cursor() as scur, conn.cursor() as tcur:
        for db in dbs if objects else ():   # after the rows: a trigger must not fire on the copy
            _objects(scur, tcur, db)
    moved = sum(v == "tablespace imported" for v in how.values())
    if datadir is None:
        return {"path": "parallel logical copy", "tables": how,
                "why": f"the target's datadir is not on this host; {len(how)} tables copied by rows, "
                       f"{min(jobs, len(by_rows) or 1)} at a time"}
    return {"path": "transportable tablespaces", "tables": how,
            "why": f"the target's datadir {datadir} is on this host; {moved} of {len(how)} tables imported as files"}


def _metered(box: Sandbox, dbs: list[str], skip: Collection[str], on_moved: Callable[[str, str], None],
             on_bytes: Callable[[int, int], None]) -> Callable[[str, str], None]:
    """`on_moved`, then `on_bytes` with the bytes of the tables moved so far (called from the copy's
    threads too)."""
    with box.connect() as src, src.cursor() as cur:
        cur.execute("SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                    f"WHERE TABLE_TYPE='BASE TABLE' AND TABLE_SCHEMA IN ({', '.join(['%s'] * len(dbs))})", tuple(dbs))
        size = {name: int(n or 0) for name, n in cur.fetchall() if name not in skip}
    total, done, lock = sum(size.values()), [0], threading.Lock()
    on_bytes(0, total)

    def moved(name: str, how: str) -> None:
        on_moved(name, how)
        with lock:
            done[0] += size.get(name, 0)
            on_bytes(done[0], total)
    return moved


def _not_transportable(db: str, name: str, engine: str | None, options: str) -> str:
    if (engine or "").upper() != "INNODB":
        return f"engine {engine}"
    if "partitioned" in options.lower():
        return "partitioned"
    if not (_PLAIN.fullmatch(db) and _PLAIN.fullmatch(name)):
        return "its file name is encoded"
    return ""


def _transport(src_datadir: Path, datadir: Path, scur, tcur, db: str, to: str, tables: list[str],
               imported: Callable[[str], None]) -> None:
    """`db`'s `tables` in the source become `to`'s on the target."""
    for t in tables:
        tcur.execute(f"ALTER TABLE {quote_qualified(to, t)} DISCARD TABLESPACE")
    scur.execute("FLUSH TABLES " + ", ".join(quote_qualified(db, t) for t in tables) + " FOR EXPORT")
    try:
        files = [str(src_datadir / db / f"{t}{ext}") for t in tables for ext in (".ibd", ".cfg")]
        out = subprocess.run(["cp", "--reflink=auto", *files, str(datadir / to)], capture_output=True, text=True)
        if out.returncode != 0:
            raise TargetError(f"copying {db}'s tablespaces into {datadir / to} failed: {out.stderr.strip()[-400:]}",
                              where=str(datadir / to), hint="check the free space and rights of the target's datadir")
        owner = (datadir / to).stat()
        if os.geteuid() == 0:   # the target's server (often user mysql) must own what it imports
            for t in tables:
                for ext in (".ibd", ".cfg"):
                    os.chown(datadir / to / f"{t}{ext}", owner.st_uid, owner.st_gid)
    finally:
        scur.execute("UNLOCK TABLES")
    for t in tables:
        tcur.execute(f"ALTER TABLE {quote_qualified(to, t)} IMPORT TABLESPACE")
        imported(t)
        try:   # the server leaves the .cfg it read
            (datadir / to / f"{t}.cfg").unlink()
        except OSError:
            pass


def _copy_rows_parallel(box: Sandbox, target: Dsn, init: Sequence[str], tables: list[tuple[str, str, str]], jobs: int,
                        progress: Callable[[str], None], copied: Callable[[str], None]) -> None:
    """Each table over its own pair of connections, biggest first so the last to finish is small."""
    if not tables:
        return
    with box.connect() as src, src.cursor() as cur:
        size = {}
        for db, to, name in tables:
            cur.execute("SELECT DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
                        (db, name))
            size[(db, to, name)] = cur.fetchone()[0] or 0

    def copy(table: tuple[str, str, str]) -> None:
        with box.connect() as s, target.connect(local_infile=True) as t, s.cursor() as scur, t.cursor() as tcur:
            # Same time zone both ends (TIMESTAMP travels as text); a 0 in an AUTO_INCREMENT column stays 0.
            scur.execute("SET SESSION time_zone='+00:00'")
            for sql in [*init, "SET SESSION foreign_key_checks=0, unique_checks=0, time_zone='+00:00', "
                               "sql_mode='NO_AUTO_VALUE_ON_ZERO'"]:
                tcur.execute(sql)
            how = "LOAD DATA" if _load_data(scur, tcur, box.dir / "tmp", *table) else "INSERT"
            if how == "INSERT":
                with s.cursor(pymysql.cursors.SSCursor) as stream:
                    _copy_rows(stream, tcur, *table)
        copied(f"{table[0]}.{table[2]}")
        progress(f"{table[0]}.{table[2]}: rows copied ({how})")

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(tables)))) as pool:
        list(pool.map(copy, sorted(tables, key=lambda t: -size[t])))   # list(): a table's error is raised here


def _columns(cur, db: str, name: str) -> tuple[str, set[str]]:
    """The column list of `db`.`name` without its generated columns, and their types."""
    cur.execute("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s "
                "AND TABLE_NAME=%s AND IS_GENERATED='NEVER' ORDER BY ORDINAL_POSITION", (db, name))
    rows = cur.fetchall()
    return ", ".join(quote_ident(r[0]) for r in rows), {r[1].lower() for r in rows}


def _load_data(scur, tcur, tmp: Path, db: str, to: str, name: str) -> bool:
    """The table as the server's own text (SELECT INTO OUTFILE, LOAD DATA LOCAL, bytes as they are):
    parsed in C on both ends. False when the target refuses LOCAL INFILE or a column type is one
    whose text form is not its value (geometry): then INSERTs do it."""
    cols, types = _columns(scur, db, name)
    if types & _GEOMETRY:
        return False
    path = tmp / f"move-{secrets.token_hex(6)}.txt"
    try:
        scur.execute(f"SELECT {cols} INTO OUTFILE %s CHARACTER SET binary FROM {quote_qualified(db, name)}",
                     (str(path),))
        try:
            tcur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote_qualified(to, name)} CHARACTER SET binary "
                         f"({cols})", (str(path),))
        except pymysql.err.MySQLError as e:
            if e.args[0] in _LOCAL_INFILE_REFUSED:
                return False
            raise
        # LOAD DATA LOCAL turns what it could not store as given into warnings, never errors.
        tcur.execute("SHOW COUNT(*) WARNINGS")
        if (warnings := tcur.fetchone()[0]):
            tcur.execute("SHOW WARNINGS LIMIT 1")
            raise TargetError(f"copying {db}.{name} into {to}.{name} changed values ({warnings} warnings, the first: "
                              f"{tcur.fetchone()[2]})", where=f"{to}.{name}",
                              hint="the target's table differs from the backup's; restore into --target sandbox")
        return True
    finally:
        path.unlink(missing_ok=True)


def _copy_rows(scur, tcur, db: str, to: str, name: str) -> None:
    """One table, streamed (`scur` unbuffered): its non-generated columns, in multi-row INSERTs."""
    cols, _ = _columns(scur, db, name)
    scur.execute(f"SELECT {cols} FROM {quote_qualified(db, name)}")
    marks = ", ".join(["%s"] * len(scur.description))
    while rows := scur.fetchmany(_ROWS_PER_INSERT):
        tcur.executemany(f"INSERT INTO {quote_qualified(to, name)} ({cols}) VALUES ({marks})", rows)


def _objects(scur, tcur, db: str) -> None:
    """Routines, views (a view on a view may need another pass) and triggers, as SHOW CREATE gives them."""
    tcur.execute(f"USE {quote_ident(db)}")
    statements = []
    for kind in ("PROCEDURE", "FUNCTION"):
        scur.execute(f"SHOW {kind} STATUS WHERE Db=%s", (db,))
        for row in scur.fetchall():
            scur.execute(f"SHOW CREATE {kind} {quote_qualified(db, row[1])}")
            statements.append(scur.fetchone()[2])
    scur.execute("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA=%s", (db,))
    views = []
    for (name,) in scur.fetchall():
        scur.execute(f"SHOW CREATE VIEW {quote_qualified(db, name)}")
        views.append(scur.fetchone()[1])
    scur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s "
                 "ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER", (db,))
    triggers = []
    for (name,) in scur.fetchall():
        scur.execute(f"SHOW CREATE TRIGGER {quote_qualified(db, name)}")
        triggers.append(scur.fetchone()[2])
    # An earlier run killed while making them left some: made again from the backup's text.
    tcur.execute("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s "
                 "UNION ALL SELECT 'VIEW', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA=%s "
                 "UNION ALL SELECT 'TRIGGER', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s",
                 (db, db, db))
    for kind, name in tcur.fetchall():
        tcur.execute(f"DROP {kind} IF EXISTS {quote_qualified(db, name)}")
    for sql in statements:
        tcur.execute(sql)
    while views:   # in an order each view's views exist first
        failed = []
        for sql in views:
            try:
                tcur.execute(sql)
            except Exception:  # noqa: BLE001 - retried once the views it reads exist
                failed.append(sql)
        if len(failed) == len(views):
            tcur.execute(failed[0])   # raises the server's own error
        views = failed
    for sql in triggers:
        tcur.execute(sql)
