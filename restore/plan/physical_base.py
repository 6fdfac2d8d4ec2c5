"""A server running on a copy of a physical backup: to describe the backup at plan time, and as
the restore's sandbox, which then starts with the backup's tables in place (no load).

The user's backup is never written: it is copied (`cp --reflink=auto`: a reflink where the
filesystem allows it) into a directory named for the leftovers sweep, and the copy is prepared
(`mariadb-backup --prepare`) when the backup is not. A marker file in the copy names the backup,
so the restore runner can tell that its target already holds the base (`in_place`).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path

import psutil
import pymysql
from pymysql.connections import Connection

from restore.errors import SnapshotError
from restore.hooks import Hooks
from restore.meter import ByteProgress
from restore.mysql.leftovers import OwnedDir
from restore.mysql.procs import die_with_parent
from restore.mysql.quote import quote_ident, quote_qualified
from restore.mysql.sandbox import Sandbox, find_program
from restore.plan.foreign_keys import parse as parse_foreign_keys
from restore.plan.physical import SYSTEM_DATABASES, BackupDir, read_backup_dir
from restore.plan.physical_stream import extract, is_stream, mirror
from restore.plan.snapshot import ColumnInfo, Snapshot, TableInfo
from restore.target.checkpoint import SCHEMA as CHECKPOINT_SCHEMA

MARKER = "restore-bot-base.json"


def backup_tool() -> str:
    if found := find_program("mariadb-backup", "mariabackup"):
        return found
    raise SnapshotError("mariadb-backup is not installed, and a physical backup is prepared with it",
                        hint="install it (apt-get install mariadb-backup, the same version as the server)")


# The copy the plan read the backup from, kept for the restore that usually follows in the same
# process (a CLI `restore`), so the backup is copied and prepared once. One at most: it is as big as
# the backup. Removed when taken and used, when another replaces it, and at exit.
_spare: dict[tuple[str, str, str | None], OwnedDir] = {}


def _drop_spare() -> None:
    while _spare:
        _spare.popitem()[1].remove()


atexit.register(_drop_spare)


@contextmanager
def prepared_copy(backup: BackupDir, base_dir: str | None = None, *, keep: bool = False) -> Iterator[Path]:
    """A prepared copy of `backup` in a scratch directory, removed on exit (or by the leftovers
    sweep of a later run when we are killed). `keep`: left as the spare for the next use instead
    (a copy only read by its server is still the backup's state)."""
    key = (str(backup.path.resolve()), backup.backup_id, base_dir)
    owned = _spare.pop(key, None)
    try:
        if owned is None:
            owned = OwnedDir("restore-bot-backup", base_dir)
            _copy_reported(backup.path, owned.path / "data")
            if not backup.prepared:
                _prepare(backup, owned.path / "data")
            (owned.path / "data" / MARKER).write_text(
                json.dumps({"backup": key[0], "backup_id": backup.backup_id}))
        yield owned.path / "data"
    except BaseException:
        if owned is not None:
            owned.remove()
        raise
    if keep:
        _drop_spare()
        _spare[key] = owned
    else:
        owned.remove()


# The hooks the copies of this thread (a job's) report their bytes to: set by restore.api around
# the plan and the stage, which make the copies, so no layer in between has to carry them.
_copy_hooks: ContextVar[Hooks | None] = ContextVar("restore_bot_copy_hooks", default=None)


@contextmanager
def reporting_copies(hooks: Hooks | None) -> Iterator[None]:
    """Within: the copy (or unpacking) of a physical backup reports its bytes, rate and ETA to `hooks`."""
    token = _copy_hooks.set(hooks)
    try:
        yield
    finally:
        _copy_hooks.reset(token)


def _copy_reported(src: Path, dst: Path) -> None:
    """The backup copied (a directory) or unpacked (a compressed stream) into `dst`, reported as
    the phase "copy backup" (bytes of the backup read) when reporting_copies() is on."""
    stream = is_stream(src)
    hooks = _copy_hooks.get()
    meter = None
    if hooks is not None:
        total = src.stat().st_size if stream else sum(e.stat().st_size for e in _walk(src))
        meter = ByteProgress(hooks, "copy backup", total, label=f"{src.name}{' unpacked' if stream else ''}")
    if stream:
        extract(src, dst, None if meter is None else lambda done, _total: meter.update(done))
    else:
        _copy(src, dst, meter)
    if meter is not None:
        meter.close()


def _copy(src: Path, dst: Path, meter: ByteProgress | None = None) -> None:
    need = sum(e.stat().st_size for e in _walk(src))
    free = shutil.disk_usage(dst.parent).free
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(["cp", "-a", "--reflink=auto", str(src), str(dst)], stderr=err, text=True,
                                preexec_fn=die_with_parent())
        while True:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if meter is not None:   # what cp has written so far (a reflink's extents count too)
                    meter.update(sum(e.stat().st_size for e in _walk(dst)) if dst.is_dir() else 0)
        err.seek(0)
        out = subprocess.CompletedProcess(proc.args, proc.returncode, "", err.read())
    if out.returncode != 0:
        short = need > free
        raise SnapshotError(f"{src}: copying the backup to {dst.parent} failed: {out.stderr.strip()[-400:]}",
                            where=str(src),
                            hint=(f"the copy needs {need >> 20} MiB and {dst.parent} has {free >> 20} MiB free: "
                                  "point TMPDIR at a bigger filesystem" if short else
                                  "check that this user can read every file of the backup directory"))


def _walk(p: Path) -> Iterator[os.DirEntry]:
    for e in os.scandir(p):
        if e.is_dir(follow_symlinks=False):
            yield from _walk(Path(e.path))
        elif e.is_file(follow_symlinks=False):
            yield e


def memory_for(data: Path) -> int:
    """Bytes of memory for the prepare's redo apply and the throwaway server's buffer pool: the
    backup's size and a quarter more (the replay's new pages, undo), so the replay and the verify
    read each page from disk once; at least the server's usual 128 MiB, at most a quarter of what
    the host has free and 8 GiB."""
    size = sum(e.stat().st_size for e in _walk(data))
    cap = min(psutil.virtual_memory().available // 4, 8 << 30)
    return max(128 << 20, min(size * 5 // 4, cap)) >> 20 << 20


def _prepare(backup: BackupDir, data: Path) -> None:
    # --use-memory: the redo is applied in that many bytes of pages (the default 100 MiB re-reads
    # pages of a big backup, which made the prepare the longest fixed cost of the physical path).
    out = subprocess.run([backup_tool(), "--prepare", f"--use-memory={memory_for(data)}", f"--target-dir={data}"],
                         capture_output=True, text=True, preexec_fn=die_with_parent())
    if out.returncode != 0:
        log = "\n".join(line for line in out.stderr.strip().splitlines()[-8:])
        tool = subprocess.run([backup_tool(), "--version"], capture_output=True, text=True).stderr.strip()
        raise SnapshotError(
            f"{backup.path}: mariadb-backup --prepare failed on a copy of the backup (the backup itself is "
            f"untouched); its output ends with:\n{log}", where=str(backup.path),
            hint=f"the backup was written by mariadb-backup {backup.tool_version or '(version unknown)'}, this "
                 f"host has {tool.split(' based on ')[0] or 'another'}: prepare needs the same major version; "
                 "otherwise the backup is damaged and a new one must be taken")


class BaseSandbox(Sandbox):
    """A throwaway server started on a prepared copy of the physical snapshot `snap`, the copy made
    by start() and removed by stop() (`keep`: only read, so the copy is kept for the next
    BaseSandbox of the same backup). A Sandbox like any other to its users."""

    def __init__(self, snap: Snapshot, base_dir: str | None = None, *, keep: bool = False) -> None:
        super().__init__(base_dir=base_dir)
        self.snap, self.keep = snap, keep
        self._copy: AbstractContextManager[Path] | None = None

    def start(self) -> "BaseSandbox":
        backup = _backup(self.snap)
        self._copy = prepared_copy(backup, self._base_dir, keep=self.keep)
        self.datadir = self._copy.__enter__()
        # A throwaway server, never restarted on these files after a crash (the leftovers sweep removes
        # them): the doublewrite buffer (torn pages after a host crash) is not needed, and a commit
        # written to the OS at once (not synced: =2) survives the server's own death, kill -9 included.
        pool = memory_for(self.datadir)
        self.extra_args = [*backup.innodb_options, f"--innodb-buffer-pool-size={pool}",
                           "--innodb-doublewrite=0", "--innodb-flush-log-at-trx-commit=2"]
        try:
            super().start()
            with self.connect() as conn, conn.cursor() as cur:
                # A backup of a server restore-bot once restored into holds that run's state, not this one's.
                cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(CHECKPOINT_SCHEMA)}")
                if not self.keep:   # the restore's server (the plan's only counts rows)
                    _warm(cur, self.snap, self.datadir, pool)
        except BaseException as e:
            self._stop(e)
            raise
        return self

    def stop(self) -> None:
        self._stop(None)

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._stop(exc)

    def _stop(self, error: BaseException | None) -> None:
        """Stop the server, then drop the copy (kept as the spare when `keep` and all went well)."""
        if not (self.keep and error is None):
            _no_flush_at_shutdown(self)
        try:
            super().stop()
        finally:
            copy, self._copy = self._copy, None
            if copy is not None:
                copy.__exit__(None if error is None else type(error), error, None)


def _warm(cur, snap: Snapshot, datadir: Path, pool: int) -> None:
    """Read the snapshot's tables into the buffer pool, each index in order, when they fit in it.

    A server just started on the copy has an empty pool, and the replay then reads each page it
    touches on its own, one random read at a time (a binlog range touching 1% of the rows reads
    nearly every page so). An index scan reads the same pages in order, with read-ahead: measured
    on 4 x 250,000 rows, 0.9 s of scan took the replay from 3.2-4.2 s to 0.4-1.2 s and halved the
    verify. Only reads; skipped when the tables would not fit (then the pool would evict them again)."""
    files = [datadir / db / f"{name}.ibd" for db, name in snap.tables]
    if sum(f.stat().st_size for f in files if f.is_file()) > pool * 0.9:
        return
    for db, name in snap.tables:
        ident = quote_qualified(db, name)
        try:
            cur.execute(f"SHOW INDEX FROM {ident}")
            indexes = sorted({r[2] for r in cur.fetchall()}, key=lambda i: i != "PRIMARY")
            for index in indexes:
                cur.execute(f"SELECT COUNT(*) FROM {ident} FORCE INDEX ({quote_ident(index)})")
                cur.fetchall()
        except pymysql.err.MySQLError:
            continue   # not an InnoDB table, or one the replay creates: nothing to warm


def _no_flush_at_shutdown(box: Sandbox) -> None:
    """The copy is removed right after the server stops: its dirty pages need not be written first
    (innodb_fast_shutdown=2, as after a crash; nothing starts on these files again)."""
    if box.proc is None or box.proc.poll() is not None:
        return
    try:
        with box.connect() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL innodb_fast_shutdown = 2")
    except pymysql.err.MySQLError:
        pass   # a server that does not answer is stopped the usual way (or killed)


def sandbox_for(snapshots: Sequence[Snapshot], base_dir: str | None = None) -> Sandbox:
    """The restore's sandbox (not started): on the physical base when a snapshot is one, else a new
    empty server."""
    physical = [s for s in snapshots if s.backup_id]
    return BaseSandbox(physical[0], base_dir) if physical else Sandbox(base_dir=base_dir)


def in_place(conn: Connection, snapshots: Sequence[Snapshot]) -> bool:
    """Whether the server of `conn` runs on a prepared copy of the physical snapshot given: then
    its tables are the base, and there is nothing to load. Only a server on this host can be."""
    physical = [s for s in snapshots if s.backup_id]
    if not physical:
        return False
    with conn.cursor() as cur:
        cur.execute("SELECT @@datadir")
        marker = Path(cur.fetchone()[0]) / MARKER
    try:
        doc = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return any(doc.get("backup_id") == s.backup_id and doc.get("backup") == str(Path(s.path).resolve())
               for s in physical)


def physical_bytes(snap: Snapshot, dbs: Sequence[str]) -> int:
    """What moving `dbs` out of the physical snapshot writes on a target, about: their files' size."""
    with mirror(snap.path) if is_stream(snap.path) else nullcontext(Path(snap.path)) as root:
        # a stream's mirror holds sparse files of their size
        return sum(e.stat().st_size for db in dbs if (root / db).is_dir() for e in _walk(root / db))


def _backup(snap: Snapshot) -> BackupDir:
    backup = read_backup_dir(snap.path)
    if backup.backup_id != snap.backup_id:
        raise SnapshotError(f"{snap.path}: the backup directory changed since the plan was made "
                            f"(backup {snap.backup_id}, now {backup.backup_id})", where=snap.path,
                            hint="make the plan again")
    return backup


def read_physical(path: str, databases: str | None = None) -> Snapshot:
    """Describe a backup directory: its coordinates from its files, its tables from a server started
    on a prepared copy. `databases` ("a" or "a,b") narrows it to those."""
    path = os.path.normpath(path)   # "DIR/" names its backup by its basename too
    backup = read_backup_dir(path)
    snap = Snapshot(path=path, flavor="mariadb", binlog_file=backup.binlog_file, binlog_pos=backup.binlog_pos,
                    gtid=backup.gtid, coordinates_line=1, backup_id=backup.backup_id)
    with BaseSandbox(snap, keep=True) as box, box.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        held = sorted(r[0] for r in cur.fetchall() if r[0] not in SYSTEM_DATABASES)
        wanted = [d.strip() for d in databases.split(",")] if databases else held
        missing = [d for d in wanted if d not in held]
        if missing:
            raise SnapshotError(f"{path}: the backup holds no database {', '.join(missing)}", where=path,
                                hint=f"it holds {', '.join(held) or 'no user database'}: name one of these "
                                     "(--database DB, repeatable)")
        snap.databases = wanted
        for db in wanted:
            _describe(cur, snap, db)
    return snap


def _describe(cur, snap: Snapshot, db: str) -> None:
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                "AND TABLE_TYPE='BASE TABLE' ORDER BY TABLE_NAME", (db,))
    for (name,) in cur.fetchall():
        info = TableInfo(db=db, name=name)
        cur.execute("SELECT COLUMN_NAME, COLUMN_TYPE, IS_GENERATED FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION", (db, name))
        for col, ctype, generated in cur.fetchall():
            info.columns.append(ColumnInfo(name=col, definition=ctype, unsigned="unsigned" in ctype.lower(),
                                           generated=generated == "ALWAYS"))
        ident = quote_qualified(db, name)
        try:
            cur.execute(f"SHOW CREATE TABLE {ident}")
            create = cur.fetchone()[1]
            cur.execute(f"SELECT COUNT(*) FROM {ident}")
            info.rows = cur.fetchone()[0]
        except pymysql.err.MySQLError as e:
            # A tablespace missing or damaged in the backup: the server names the table, we name the backup.
            raise SnapshotError(f"{snap.path}: table {db}.{name} cannot be read from the backup: {e.args[-1]}",
                                where=f"{snap.path}/{db}/{name}",
                                hint=f"the backup is damaged or incomplete (look at its files {db}/{name}.*); "
                                     "take a new one, or leave the database out (--database names the ones to restore)") from None
        info.has_primary_key = "\n  PRIMARY KEY " in create
        info.foreign_keys = parse_foreign_keys(create, db, name)
        snap.tables[(db, name)] = info
