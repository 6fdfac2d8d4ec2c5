"""Two serve instances on one store archive a cluster's binlogs into one directory: only the holder
of the lease `archive:CLUSTER` runs its archiver; when it stops cleanly (lease released) or dies
(lease expired) the other takes over and goes on from the archive's newest file, and the archive
stays byte-identical to the server's binlogs (two archivers appending would have corrupted it)."""
from __future__ import annotations

import time

import pytest

from bot.watch_lease import LeasedArchiver
from handlers.store import open_store
from handlers.store_leases import LeaseStore
from restore.live.archiver import Archiver
from restore.mysql.sandbox import Sandbox
from tests.support.binlog_archive import archived_files, insert_traffic, server_binlog_files

pytestmark = pytest.mark.mysql
DB = "rb_archiver_lease"
TTL = 2.0


@pytest.fixture
def store(target):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    opened = open_store(f"{target.url}/{DB}")
    yield opened
    opened.dispose()
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")


def _wait(what: str, ready, timeout: float = 15.0) -> float:
    """Seconds until `ready()`; fails naming `what`."""
    start = time.monotonic()
    while not ready():
        assert time.monotonic() - start < timeout, f"{what} within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - start


def test_one_instance_archives_a_cluster_and_the_other_takes_over_on_release_and_on_expiry(store, tmp_path):
    archive = tmp_path / "archive"          # one directory, as shared storage would give both hosts
    built: list[str] = []
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        insert_traffic(src, 50)

        def instance(name: str) -> LeasedArchiver:
            def build():
                built.append(name)
                return (Archiver(src.dsn, archive),)
            return LeasedArchiver(store, "homepage", name, build, ttl=TTL)

        def in_sync() -> bool:
            return archived_files(archive) == server_binlog_files(src)
        a = instance("host-a").start()
        _wait("host-a archiving", lambda: a.running)
        b = instance("host-b").start()
        try:
            insert_traffic(src, 200, flush_every=80)
            _wait("the archive catching up", in_sync)
            time.sleep(TTL)                              # b keeps asking for the lease: refused
            assert built == ["host-a"] and not b.running and LeaseStore(store).holder("archive:homepage")[0] == "host-a"

            a.stop()                                     # a clean stop releases the lease at once
            took = _wait("host-b taking over a released lease", lambda: b.running)
            assert built == ["host-a", "host-b"] and took < TTL
            insert_traffic(src, 200, flush_every=80)
            _wait("host-b's archive catching up", in_sync)

            a = instance("host-a").start()
            b.keeper.stop(release=False)                 # host-b dies: its lease is left to expire
            died = time.monotonic()
            _wait("host-a taking over an expired lease", lambda: a.running, timeout=3 * TTL)
            took = time.monotonic() - died
            assert built == ["host-a", "host-b", "host-a"] and TTL * 0.5 < took < TTL + 1.5, took
            insert_traffic(src, 200, flush_every=80)
            _wait("host-a's archive catching up", in_sync)
        finally:
            a.stop()
            b.stop()
        assert in_sync()                                 # byte-identical across both handovers
        assert len(archived_files(archive)) >= 6         # several files, rotated while others held it
