"""Archive retention: by age and by size, oldest first, never what the newest base backup needs."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from restore.live.archiver import Archiver
from restore.mysql.sandbox import Sandbox
from tests.support.binlog_archive import archived_files, insert_traffic, server_binlog_files
from tests.support.db import dump, dump_coordinates

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server

NAMES = [f"binlog.{n:06d}" for n in range(1, 8)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A server with binlog.000001 .. 000007, a base backup taken in binlog.000004, and an
    archive of all seven files (copied by each test, which then ages or shrinks its copy)."""
    root = tmp_path_factory.mktemp("retention")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        insert_traffic(src, 30, flush_every=10)
        backups = root / "backups"
        backups.mkdir()
        snap = dump(src, backups / "20240101-000000-club.sql", ["club"])
        start = dump_coordinates(snap)[0]
        insert_traffic(src, 30, flush_every=10)
        Archiver(src.dsn, root / "archive").copy()
        assert sorted(archived_files(root / "archive")) == NAMES and start == "binlog.000004"
        yield SimpleNamespace(src=src, base=root / "archive", backups=backups, snap=snap)


def _copy(world, tmp_path: Path) -> Path:
    d = tmp_path / "archive"
    shutil.copytree(world.base, d)
    return d


def _age(d: Path, days: float, names=NAMES) -> None:
    then = time.time() - days * 86400
    for name in names:
        os.utime(d / name, (then, then))


def _archiver(world, d: Path, troubles: list[str], backup_dir=None, **keep) -> Archiver:
    return Archiver(world.src.dsn, d, on_trouble=troubles.append,
                    backup_dir=world.backups if backup_dir is None else backup_dir, **keep)


def _kept(world, d: Path, names) -> None:
    """Exactly `names` are left, each as archived."""
    assert archived_files(d) == {n: (world.base / n).read_bytes() for n in names}


@pytest.mark.parametrize("old, removed", [
    # binlog.000002 is young: nothing after it goes either, old or not
    ([NAMES[0], NAMES[2]], NAMES[:1]),
    # all old: only the backup's start file (binlog.000004) stops the deleting
    (NAMES, NAMES[:3]),
], ids=["young-file-stops", "backup-start-stops"])
def test_age_retention_keeps_what_the_newest_backup_needs(world, tmp_path, old, removed):
    d = _copy(world, tmp_path)
    _age(d, 30, old)
    troubles: list[str] = []
    assert _archiver(world, d, troubles, keep_days=7).apply_retention() == removed
    _kept(world, d, NAMES[len(removed):])
    assert troubles == []


def test_size_retention_keeps_what_the_newest_backup_needs(world, tmp_path):
    d = _copy(world, tmp_path)
    total = sum(len(b) for b in archived_files(d).values())
    troubles: list[str] = []
    # just over the limit: the oldest file goes, and that is enough
    first = _archiver(world, d, troubles, keep_bytes=total - len((d / NAMES[0]).read_bytes()))
    assert first.apply_retention() == NAMES[:1]
    # far over it: everything before the backup's start file goes, and nothing from there on
    assert _archiver(world, d, troubles, keep_bytes=1).apply_retention() == NAMES[1:3]
    _kept(world, d, NAMES[3:])
    assert troubles == []


def test_retention_never_deletes_the_file_being_written(world, tmp_path):
    d = _copy(world, tmp_path)
    backups = tmp_path / "backups"
    backups.mkdir()
    later = world.snap.read_bytes().replace(b"MASTER_LOG_FILE='binlog.000004'", b"MASTER_LOG_FILE='binlog.000099'")
    (backups / world.snap.name).write_bytes(later)  # a backup from beyond the archive's end
    troubles: list[str] = []
    assert _archiver(world, d, troubles, backup_dir=backups, keep_bytes=1).apply_retention() == NAMES[:-1]
    _kept(world, d, NAMES[-1:])


def _no_backup_dir(world, backups: Path) -> None:
    return None


def _empty(world, backups: Path) -> Path:
    return backups


def _newest_without_coordinates(world, backups: Path) -> Path:
    shutil.copy2(world.snap, backups / world.snap.name)  # older, with coordinates: not the newest
    newest = dump(world.src, backups / "20240102-000000-club.sql", ["club"], coordinates=False)
    os.utime(newest, (time.time() + 60, time.time() + 60))
    return backups


def _newest_damaged(world, backups: Path) -> Path:
    data = world.snap.read_bytes()
    (backups / world.snap.name).write_bytes(data[:len(data) * 2 // 3])  # cut: no "Dump completed"
    return backups


def _other_server(world, backups: Path) -> Path:
    data = world.snap.read_bytes().replace(b"MASTER_LOG_FILE='binlog.", b"MASTER_LOG_FILE='mysql-bin.")
    (backups / world.snap.name).write_bytes(data)
    return backups


@pytest.mark.parametrize("setup, reason", [
    (_no_backup_dir, "not told where the base backups are"),
    (_empty, "no base backup"),
    (_newest_without_coordinates, "records no binlog coordinates"),
    (_newest_damaged, "cannot be read"),
    (_other_server, "mysql-bin.000004"),
], ids=["no-backup-dir", "no-backup", "no-coordinates", "damaged", "other-server"])
def test_retention_keeps_everything_without_the_backups_coordinates(world, tmp_path, setup, reason):
    d = _copy(world, tmp_path)
    _age(d, 30)
    backups = tmp_path / "backups"
    backups.mkdir()
    troubles: list[str] = []
    arch = Archiver(world.src.dsn, d, on_trouble=troubles.append, backup_dir=setup(world, backups),
                    keep_days=1, keep_bytes=1)
    assert arch.apply_retention() == [] and arch.apply_retention() == []
    _kept(world, d, NAMES)
    assert len(troubles) == 1 and "keeps every archived binlog" in troubles[0] and reason in troubles[0], troubles


def test_copy_applies_retention_at_each_rotation(world, tmp_path):
    d = tmp_path / "archive"
    troubles: list[str] = []
    _archiver(world, d, troubles, keep_bytes=1).copy()
    server = server_binlog_files(world.src)
    assert archived_files(d) == {n: server[n] for n in NAMES[3:]}
    assert troubles == []
