"""Base snapshots: consistent dumps, or physical backups, that record their binlog coordinates.

`mariadb-dump`/`mysqldump --single-transaction --master-data=2 --gtid` gives a dump whose
`CHANGE MASTER TO` line is exactly where replay starts; `mariadb-backup --backup` a directory
whose binlog-info file is (restore.plan.physical). Both are written under a temporary name
(`.partial`) and renamed when complete, so a snapshot in the directory is always whole, and a
killed one is never taken for a backup.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from restore.errors import RestoreError
from restore.mysql.dsn import Dsn
from restore.mysql.leftovers import OwnedDir
from restore.mysql.procs import die_with_parent
from restore.plan.physical import SYSTEM_DATABASES, read_backup_dir
from restore.plan.physical_base import backup_tool
from restore.plan.physical_stream import SUFFIX as STREAM, compress_into, is_stream, mirror
from restore.plan.snapshot import read_snapshot
from restore.replay.loader import client_options

PHYSICAL = "-physical"   # a physical backup: the directory STAMP-physical, or compressed STAMP-physical + STREAM
PARTIAL = ".partial"


@dataclass(frozen=True)
class Backup:
    path: Path
    databases: tuple[str, ...]
    size: int
    taken: datetime
    binlog_file: str | None
    binlog_pos: int | None
    # Why the dump cannot be read (it names the file, and the line where it can): then it holds
    # no databases and no coordinates, and nothing can be restored from it.
    problem: str = ""
    kind: str = "dump"   # or "physical": a mariadb-backup directory

    @property
    def readable(self) -> bool:
        return not self.problem

    def describe(self) -> str:
        if self.problem:
            return f"{self.path.name}  UNREADABLE: {self.problem}  {self.size / 1e6:.1f} MB  {self.taken:%Y-%m-%d %H:%M}"
        where = f"{self.binlog_file}:{self.binlog_pos}" if self.binlog_file else "no coordinates"
        kind = "  physical backup" if self.kind == "physical" else ""
        return (f"{self.path.name}{kind}  {', '.join(self.databases)}  {self.size / 1e6:.1f} MB  "
                f"{self.taken:%Y-%m-%d %H:%M}  starts at {where}")


def dump_binary() -> str:
    found = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    if not found:
        raise RestoreError("mariadb-dump/mysqldump is not installed", hint="apt-get install mariadb-client")
    return found


def take_backup(dsn: Dsn, databases: list[str], directory: str | os.PathLike) -> Backup:
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    final = out_dir / f"{stamp}-{'+'.join(databases)}.sql"
    partial = final.with_suffix(".sql.partial")
    with open(partial, "wb") as fh, client_options(dsn) as (option, fds):
        proc = subprocess.run([dump_binary(), option, "--single-transaction", "--master-data=2",
                               "--gtid", "--routines", "--triggers", "--events", "--hex-blob",
                               "--databases", *databases], stdout=fh, stderr=subprocess.PIPE, pass_fds=fds)
        fh.flush()
        os.fsync(fh.fileno())
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RestoreError(f"backup of {', '.join(databases)} from {dsn.redacted()} failed: "
                           f"{proc.stderr.decode('utf-8', 'replace').strip()[-500:]}",
                           hint="the dump user needs SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES and RELOAD "
                                "(for --master-data) on the source")
    partial.rename(final)
    return describe_backup(final)


def take_physical_backup(dsn: Dsn, directory: str | os.PathLike, compress: bool = False) -> Backup:
    """`mariadb-backup --backup` of the server of `dsn` into `directory`/STAMP-physical (the server's
    datadir must be on this host: the tool copies its files); `compress`: streamed (mbstream) and
    compressed with zstd into STAMP-physical.mbstream.zst instead (restore.plan.physical_stream).
    The credentials reach the tool in a private option file, never on its command line."""
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{datetime.now():%Y%m%d-%H%M%S}{PHYSICAL}{STREAM if compress else ''}"
    partial = final.with_name(final.name + PARTIAL)
    _remove(partial)   # an earlier run killed within the same second
    with dsn.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@datadir")
        datadir = cur.fetchone()[0]
    # Not client_options' pipe: mariadb-backup reads its option file twice (server groups, then
    # client groups), a pipe only gives it once, and it then connects as root to the default socket.
    # Its text goes in a file of our own 0700 directory, removed at once (by the leftovers sweep if killed).
    with client_options(dsn) as (_option, fds):
        text = os.read(fds[0], 1 << 16)
    private = OwnedDir("restore-bot-backup-options")
    try:
        options = private.path / "client.cnf"
        options.touch(mode=0o600)
        options.write_bytes(text)
        args = [backup_tool(), f"--defaults-file={options}", "--backup", f"--datadir={datadir}"]
        if compress:
            returncode, stderr = _streamed(args + ["--stream=mbstream", f"--target-dir={private.path}"], partial)
        else:
            proc = subprocess.run(args + [f"--target-dir={partial}"], capture_output=True,
                                  preexec_fn=die_with_parent())
            returncode, stderr = proc.returncode, proc.stderr
    finally:
        private.remove()
    if returncode != 0:
        _remove(partial)
        raise RestoreError(f"physical backup of {dsn.redacted()} into {final} failed: "
                           f"{stderr.decode('utf-8', 'replace').strip()[-500:]}", where=str(final),
                           hint="mariadb-backup runs on the server's host and reads its datadir: run restore-bot "
                                "there as a user that can; the backup user needs RELOAD, PROCESS, LOCK TABLES and "
                                "BINLOG MONITOR (or take dumps: [keep] physical = false)")
    os.sync()   # the files are mariadb-backup's: flush them before the name says the backup is whole
    partial.rename(final)
    return describe_backup(final)


def _streamed(args: list[str], partial: Path) -> tuple[int, bytes]:
    """Run mariadb-backup --stream, its output compressed into `partial` (synced); (exit code, stderr)."""
    with open(partial, "wb") as fh, tempfile.TemporaryFile() as err:
        # stderr to a file: the tool's log is long, and a full pipe would stop it mid-backup.
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, preexec_fn=die_with_parent())
        assert proc.stdout is not None
        try:
            compress_into(proc.stdout, fh)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            proc.stdout.close()
            returncode = proc.wait()
        err.seek(0)
        return returncode, err.read()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def describe_physical(path: Path) -> Backup:
    """A physical backup (a directory, or a compressed stream file) from its own files
    (read_backup_dir): its databases are its subdirectories, its coordinates its binlog-info file.
    Nothing is started; a compressed one is read through once, then described from its .meta.json."""
    backup = read_backup_dir(path)
    stream = is_stream(path)
    with mirror(path) if stream else nullcontext(path) as root:
        dbs = tuple(sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name not in SYSTEM_DATABASES
                           and not e.name.startswith("#")))
    size = path.stat().st_size if stream else sum(e.stat().st_size for e in path.rglob("*") if e.is_file())
    return Backup(path, dbs, size, datetime.fromtimestamp(path.stat().st_mtime), backup.binlog_file,
                  backup.binlog_pos, kind="physical")


def describe_backup(path: Path) -> Backup:
    """What a dump holds and where its replay starts. Reading a dump means reading all of it (tens
    of GB): the answer is kept beside it (`NAME.sql.meta.json`) and used while the file's size and
    mtime are unchanged, so `/backup list` and retention stay quick. A directory is a physical backup."""
    if path.is_dir() or path.name.endswith(STREAM):
        return describe_physical(path)
    st = path.stat()
    meta = path.with_name(path.name + ".meta.json")
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        known = json.loads(meta.read_text())
        if {k: known.get(k) for k in stamp} == stamp:
            return Backup(path, tuple(known["databases"]), st.st_size, datetime.fromtimestamp(st.st_mtime),
                          known["binlog_file"], known["binlog_pos"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or not ours: read the dump
    snap = read_snapshot(str(path))
    try:
        meta.write_text(json.dumps({**stamp, "databases": list(snap.databases), "binlog_file": snap.binlog_file,
                                    "binlog_pos": snap.binlog_pos}))
    except OSError:
        pass  # a read-only backup directory: read the dump again next time
    return Backup(path, tuple(snap.databases), st.st_size, datetime.fromtimestamp(st.st_mtime),
                  snap.binlog_file, snap.binlog_pos)


def dump_files(directory: str | os.PathLike) -> list[Path]:
    """The finished base snapshots in `directory` (dumps, and physical backup directories), newest
    first by the time each was written; none is opened."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for path in [*d.glob("*.sql"), *d.glob(f"*{PHYSICAL}"), *d.glob(f"*{PHYSICAL}{STREAM}")]:
        try:
            st = path.stat()
        except FileNotFoundError:  # deleted since the directory was read
            continue
        if stat.S_ISREG(st.st_mode) or (stat.S_ISDIR(st.st_mode) and path.name.endswith(PHYSICAL)):
            found.append((st.st_mtime, path.name, path))
    return [path for *_, path in sorted(found, reverse=True)]


def half_written(directory: str | os.PathLike) -> list[Path]:
    """Physical backups that never finished (mariadb-backup killed, the host down): never restored from."""
    d = Path(directory)
    return sorted([*d.glob(f"*{PHYSICAL}{PARTIAL}"), *d.glob(f"*{PHYSICAL}{STREAM}{PARTIAL}")],
                  reverse=True) if d.is_dir() else []


def list_backups(directory: str | os.PathLike) -> list[Backup]:
    """Every dump, newest first. A damaged or unreadable one is listed with `problem` set instead
    of raising: one bad old dump must not hide the good ones (nor the fact that it is bad)."""
    out = []
    for path in dump_files(directory):
        try:
            out.append(describe_backup(path))
        except (RestoreError, OSError) as exc:
            if (bad := _unreadable(path, exc)) is not None:
                out.append(bad)
    for path in half_written(directory):   # listed so that someone removes them: they can be big
        bad = _unreadable(path, RestoreError(f"{path}: half-written: mariadb-backup stopped before it finished "
                                             "(the backup was never renamed complete); delete it"))
        if bad is not None:
            out.append(replace(bad, kind="physical"))
    return out


def _unreadable(path: Path, exc: RestoreError | OSError) -> Backup | None:
    """`path` as a Backup whose `problem` says why it cannot be read; None if it is gone."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError:
        size, taken = 0, datetime.fromtimestamp(0)
    else:
        size, taken = st.st_size, datetime.fromtimestamp(st.st_mtime)
    why = exc.message if isinstance(exc, RestoreError) else f"{path}: {exc.strerror or exc}"
    # The file by its name, as the listing shows it: a full path makes a chat line hard to read.
    return Backup(path, (), size, taken, None, None, problem=why.replace(str(path), path.name))
