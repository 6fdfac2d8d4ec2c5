"""A physical base snapshot: the target directory of `mariadb-backup --backup` (or xtrabackup),
prepared or not.

What it holds is read from its files: the binlog coordinates the backup ends at
(`mariadb_backup_binlog_info` / `xtrabackup_binlog_info`: file, position, GTID) and whether it is
prepared (`backup_type` in the checkpoints file). Its tables, their columns and row counts are
read by starting a throwaway server on a prepared copy (restore.plan.physical_base): InnoDB's
files cannot be counted without the server. The user's directory is only ever read.
"""
from __future__ import annotations

import configparser
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from restore.errors import SnapshotError
from restore.plan.physical_stream import is_stream, stream_backup
from restore.target.checkpoint import SCHEMA as CHECKPOINT_SCHEMA

# Names from MariaDB 10.x/11.x and from Percona XtraBackup, newest first.
BINLOG_INFO = ("mariadb_backup_binlog_info", "xtrabackup_binlog_info")
CHECKPOINTS = ("mariadb_backup_checkpoints", "xtrabackup_checkpoints")
INFO = ("mariadb_backup_info", "xtrabackup_info")
PREPARED = ("full-prepared", "log-applied")        # xtrabackup, mariadb-backup 10.x+
UNPREPARED = ("full-backuped",)
# Never restored from a backup: the server's own, and restore-bot's state of a server once a restore target.
SYSTEM_DATABASES = frozenset({"mysql", "performance_schema", "sys", "information_schema", CHECKPOINT_SCHEMA})
_REMAKE = "take a new backup with mariadb-backup --backup (with the server's binary log enabled)"


@dataclass(frozen=True)
class BackupDir:
    """What a backup directory's own files say."""
    path: Path
    binlog_info: Path
    binlog_file: str
    binlog_pos: int
    gtid: str | None
    prepared: bool
    backup_id: str                  # xtrabackup_info's uuid, else the checkpoints' to_lsn
    tool_version: str | None
    innodb_options: tuple[str, ...]  # backup-my.cnf's settings a server must start with


def is_backup_dir(path: str | PathLike) -> bool:
    """A directory written by mariadb-backup/xtrabackup (it has a checkpoints or binlog-info file),
    or a compressed stream of one (NAME.mbstream.zst)."""
    p = Path(path)
    return is_stream(p) or p.is_dir() and any((p / name).is_file() for name in CHECKPOINTS + BINLOG_INFO)


def _first(p: Path, names: tuple[str, ...]) -> Path | None:
    return next((p / n for n in names if (p / n).is_file()), None)


def binlog_info_name(path: str | PathLike) -> str:
    """The file of backup directory `path` its coordinates are read from (as its tool names it)."""
    found = _first(Path(path), BINLOG_INFO)
    return found.name if found is not None else BINLOG_INFO[0]


def _refuse(where: Path, message: str, hint: str = _REMAKE) -> SnapshotError:
    return SnapshotError(f"{where}: {message}", where=str(where), hint=hint)


def _key_values(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def read_backup_dir(path: str | PathLike) -> BackupDir:
    """Check that the directory is a whole backup and read its coordinates; never writes to it."""
    p = Path(path)
    if is_stream(p):   # a compressed one: its files as a directory mirrors them (restore.plan.physical_stream)
        return stream_backup(p, read_backup_dir)
    checkpoints = _first(p, CHECKPOINTS)
    if checkpoints is None:
        raise _refuse(p / CHECKPOINTS[0], "is missing (neither mariadb_backup_checkpoints nor xtrabackup_checkpoints "
                      "is there): the backup is incomplete or was not written by mariadb-backup",
                      hint="pass the --target-dir of a finished mariadb-backup --backup; " + _REMAKE)
    kind = _key_values(checkpoints).get("backup_type", "")
    if kind not in PREPARED + UNPREPARED:
        incremental = "incremental" in kind
        raise _refuse(checkpoints, f"backup_type is {kind or 'missing'!r}: "
                      + ("an incremental backup is not a base restore-bot can start from" if incremental
                         else "not a full backup restore-bot knows"),
                      hint="prepare the full backup with its incrementals merged (mariadb-backup --prepare "
                           "--incremental-dir) into a copy and pass that" if incremental else _REMAKE)
    info = _first(p, BINLOG_INFO)
    if info is None:   # named as this backup's tool names its files
        raise _refuse(p / BINLOG_INFO[CHECKPOINTS.index(checkpoints.name)], "is missing: the backup does not say at which binlog position it was "
                      "taken, so the replay cannot start after it (was the server's binary log off?)",
                      hint="take the backup from a server with log_bin enabled, or restore from a dump")
    fields = info.read_text(errors="replace").split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise _refuse(info, f"holds {' '.join(fields)[:200]!r}, not 'FILE POSITION [GTID]'",
                      hint="the file is damaged; " + _REMAKE)
    for name in ("ibdata1", "ib_logfile0"):
        if (p / f"{name}.qp").is_file() or (p / f"{name}.zst").is_file():
            raise _refuse(p / name, "is compressed in this backup (mariadb-backup --compress)",
                          hint=f"decompress a copy (mariadb-backup --decompress --target-dir=COPY) and pass "
                               f"--snapshot COPY; {p} itself is never modified")
        if not (p / name).is_file():
            raise _refuse(p / name, "is missing: InnoDB's system tablespace and redo log are part of every "
                          "backup, so this one is incomplete", hint="copy the whole backup directory; " + _REMAKE)
    meta = _key_values(f) if (f := _first(p, INFO)) is not None else {}
    server = meta.get("server_version", "")
    if server and "mariadb" not in server.lower():
        raise _refuse(f, f"the backup is of server {server}, and restore-bot starts MariaDB on a backup's files",
                      hint="restore that server from a dump (mysqldump --source-data), or from a MariaDB backup")
    return BackupDir(path=p, binlog_info=info, binlog_file=fields[0], binlog_pos=int(fields[1]),
                     gtid=fields[2] if len(fields) > 2 and fields[2] else None,
                     prepared=kind in PREPARED,
                     backup_id=meta.get("uuid") or _key_values(checkpoints).get("to_lsn", ""),
                     tool_version=meta.get("tool_version"), innodb_options=_innodb_options(p))


def _innodb_options(p: Path) -> tuple[str, ...]:
    """The InnoDB layout backup-my.cnf records: a server started with other values refuses the files."""
    cnf = p / "backup-my.cnf"
    if not cnf.is_file():
        return ()
    parser = configparser.ConfigParser(allow_no_value=True, strict=False, interpolation=None)
    try:
        parser.read_string(cnf.read_text(errors="replace"))
    except configparser.Error as e:
        raise _refuse(cnf, f"cannot be read: {e}", hint="the file is damaged; " + _REMAKE) from None
    if not parser.has_section("mysqld"):
        return ()
    keep = ("innodb_page_size", "innodb_data_file_path", "innodb_undo_tablespaces", "innodb_checksum_algorithm")
    return tuple(f"--{k.replace('_', '-')}={parser.get('mysqld', k)}" for k in keep
                 if parser.get("mysqld", k, fallback=None))


def narrow(snapshots: Sequence[str], databases: Sequence[str]) -> list[str]:
    """`--snapshot` arguments with `--database` applied: a backup directory `DIR` becomes `DB,DB=DIR`
    (restore.plan.snapshot.read_snapshots then refuses a name the backup does not hold, naming
    the ones it does). Dumps are restored whole, so `databases` with only dumps is refused."""
    wanted = list(dict.fromkeys(d.strip() for d in databases if d.strip()))
    if not wanted:
        return list(snapshots)
    if bad := [d for d in wanted if "," in d or "=" in d]:
        raise SnapshotError(f"--database {bad[0]}: a database name with ',' or '=' cannot narrow a backup",
                            hint="leave out --database to restore every database of the backup")
    out, narrowed = [], False
    for arg in snapshots:
        if is_backup_dir(arg):
            out.append(",".join(wanted) + "=" + str(arg))
            narrowed = True
            continue
        db, sep, path = str(arg).partition("=")
        if sep and is_backup_dir(path):
            raise SnapshotError(f"--snapshot {arg} names its databases and --database names them again",
                                where=path, hint=f"give them once: --snapshot {path} --database {db.split(',')[0]} ...")
        out.append(str(arg))
    if not narrowed:
        raise SnapshotError("--database narrows a physical backup directory, and no --snapshot is one",
                            hint="a dump is restored whole: leave out --database (DB=FILE names the database of a dump "
                                 "taken without --databases)")
    return out
