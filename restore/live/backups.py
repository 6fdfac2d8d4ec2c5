"""Base snapshots: consistent dumps that record their binlog coordinates.

`mariadb-dump`/`mysqldump --single-transaction --master-data=2 --gtid` gives a dump whose
`CHANGE MASTER TO` line is exactly where replay starts. Dumps are written under a temporary
name and renamed when complete, so a snapshot in the directory is always whole.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from restore.errors import RestoreError
from restore.mysql.dsn import Dsn
from restore.plan.snapshot import read_snapshot
from restore.replay.loader import client_options


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

    @property
    def readable(self) -> bool:
        return not self.problem

    def describe(self) -> str:
        if self.problem:
            return f"{self.path.name}  UNREADABLE: {self.problem}  {self.size / 1e6:.1f} MB  {self.taken:%Y-%m-%d %H:%M}"
        where = f"{self.binlog_file}:{self.binlog_pos}" if self.binlog_file else "no coordinates"
        return (f"{self.path.name}  {', '.join(self.databases)}  {self.size / 1e6:.1f} MB  "
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


def describe_backup(path: Path) -> Backup:
    """What a dump holds and where its replay starts. Reading a dump means reading all of it (tens
    of GB): the answer is kept beside it (`NAME.sql.meta.json`) and used while the file's size and
    mtime are unchanged, so `/backup list` and retention stay quick."""
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
    """The dumps in `directory`, newest first by the time each was written; none is opened."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for path in d.glob("*.sql"):
        try:
            st = path.stat()
        except FileNotFoundError:  # deleted since the directory was read
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((st.st_mtime, path.name, path))
    return [path for *_, path in sorted(found, reverse=True)]


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
