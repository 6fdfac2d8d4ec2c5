"""Restoring into a target that writes a binlog: what the replay adds to it, and a full disk.

The quadratic trap: with row annotations on (MariaDB's default), each row-event group inside a
multi-event `BINLOG '…'` statement was logged with the whole statement's text; a 9.8 MB range
grew a target's binlog by 1.1 GB. The bound asserted here: the target's binlog grows by at most
twice the replayed source range, the data is exact, the replicas' view (the target's own binlog
replayed into a fresh server) equals the restored data.
"""
from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pymysql
import pytest

from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, databases, restore_args
from tests.support.target_binlog import SHOP, binlog_bytes, replayed_bytes

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server

@pytest.fixture(scope="module", params=["ROW", "MIXED"])
def shop(request, tmp_path_factory):
    return SHOP.build_on_new_source(tmp_path_factory.mktemp(f"target-binlog-{request.param}"), request.param)


def _replicated(server: Sandbox, work: Path) -> dict:
    """What a replica of `server` would hold: its binlog from the start replayed into a fresh server."""
    files = sorted(str(p) for p in Path(server.binlog_dir).iterdir() if p.name.startswith("binlog.0"))
    with Sandbox() as replica:
        decoded = subprocess.run(["mariadb-binlog", "--no-defaults", *files], capture_output=True, check=True).stdout
        subprocess.run(["mariadb", *replica.client_args(), "--binary-mode"], input=decoded, check=True)
        with replica.connect() as conn:
            return checksums(conn, ["shop"])


@pytest.mark.parametrize("batch", ["1000", "5"])
def test_binlog_grows_by_about_what_is_replayed(shop, batch, cli, tmp_path):
    with Sandbox(binlog=True, binlog_format="MIXED") as target:
        grown_from = binlog_bytes(target)
        res = cli(*restore_args(shop, target, "--batch", batch))
        assert res.code == 0 and res.doc["ok"], res
        grown = binlog_bytes(target) - grown_from
        replayed = replayed_bytes(res.plan, shop.binlog_dir)
        with target.connect() as conn:
            assert checksums(conn, ["shop"]) == shop.before
        assert replayed > 1_000_000, replayed
        # The dump's load is logged too (a few KB here); the replay itself must stay within 2x.
        assert grown <= 2 * replayed + 64_000, f"target binlog grew {grown} bytes for {replayed} replayed"
        if batch == "1000":
            assert _replicated(target, tmp_path) == shop.before, "a replica of the target would differ"


def test_without_the_right_to_turn_annotations_off_one_statement_per_binlog(shop, cli):
    """A restore user without SUPER/BINLOG ADMIN cannot turn row annotations off: each BINLOG
    statement then carries one source statement, and the growth stays linear. (The target is
    MIXED like the sources: a ROW target logs full row images of what a MIXED source logged as
    one statement, which is growth of another kind.)"""
    with Sandbox(binlog=True, binlog_format="MIXED") as target:
        with target.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE USER restorer@'%' IDENTIFIED BY 'pw'")
            cur.execute("GRANT ALL ON shop.* TO restorer@'%'")
            cur.execute("GRANT ALL ON _restore_bot.* TO restorer@'%'")
            cur.execute("GRANT BINLOG REPLAY, SELECT, PROCESS ON *.* TO restorer@'%'")
        grown_from = binlog_bytes(target)
        res = cli(*restore_args(shop, f"mysql://restorer:pw@127.0.0.1:{target.port}"))
        assert res.code == 0 and res.doc["ok"], res
        grown = binlog_bytes(target) - grown_from
        replayed = replayed_bytes(res.plan, shop.binlog_dir)
        with target.connect() as conn:
            assert checksums(conn, ["shop"]) == shop.before
        # Each annotation now holds one statement's base64 events: linear, about 2.5x at worst.
        assert grown <= 3 * replayed + 64_000, f"target binlog grew {grown} bytes for {replayed} replayed"
        assert "one statement at a time" in res.doc["restore"]["target_binlog"], res


def test_no_target_binlog_keeps_the_restore_out_of_it(shop, cli):
    with Sandbox(binlog=True, binlog_format="ROW") as target:
        grown_from = binlog_bytes(target)
        res = cli(*restore_args(shop, target, "--no-target-binlog"))
        assert res.code == 0 and res.doc["ok"], res
        with target.connect() as conn:
            assert checksums(conn, ["shop"]) == shop.before
        assert binlog_bytes(target) - grown_from < 10_000   # the dump and the replay left no trace
        assert "sql_log_bin=0" in res.doc["restore"]["target_binlog"], res


def test_no_target_binlog_without_the_right_is_refused_before_writing(shop, cli):
    with Sandbox(binlog=True, binlog_format="ROW") as target:
        with target.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE USER restorer@'%' IDENTIFIED BY 'pw'")
            cur.execute("GRANT ALL ON shop.* TO restorer@'%'")
            cur.execute("GRANT BINLOG REPLAY, PROCESS ON *.* TO restorer@'%'")
        res = cli(*restore_args(shop, f"mysql://restorer:pw@127.0.0.1:{target.port}", "--no-target-binlog"))
        assert res.code == 2 and "sql_log_bin" in res.error["message"], res
        assert "BINLOG ADMIN" in res.error["hint"], res
        with target.connect() as conn:
            assert "shop" not in databases(conn)


# -- a small disk -------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few MB for a target's binlog (needs root, as CI has)."""
    mnt = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)

    try:
        yield mnt, resize
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


def test_a_target_disk_too_small_is_refused_before_writing(shop, cli, small_disk):
    mnt, _ = small_disk
    with Sandbox(extra_args=[f"--log-bin={mnt}/binlog", "--binlog-format=ROW"]) as target:
        res = cli(*restore_args(shop, target))
        assert res.code == 2 and "not enough disk space" in res.error["message"], res
        assert str(mnt) in res.error["message"] and "--no-target-binlog" in res.error["hint"], res
        with target.connect() as conn:
            assert "shop" not in databases(conn)


def test_a_full_disk_stops_the_restore_and_the_same_command_resumes(shop, cli, small_disk):
    mnt, resize = small_disk
    with Sandbox(extra_args=[f"--log-bin={mnt}/binlog", "--binlog-format=ROW"]) as target:
        res = cli(*restore_args(shop, target, "--skip-space-check", "--batch", "100"))
        assert res.code == 2 and "disk is full" in res.error["message"], res
        assert "Waiting for someone to free space" in res.error["message"], res
        assert "run the same command again" in res.error["hint"], res
        resize("64m")    # the operator frees space, as the hint says
        res = cli(*restore_args(shop, target, "--skip-space-check", "--batch", "100"))
        assert res.code == 0 and res.doc["ok"] and res.doc["restore"]["resumed"], res
        with target.connect() as conn:
            assert checksums(conn, ["shop"]) == shop.before
        try:
            target.stop()      # before the tmpfs goes: the server holds its binlog open
        except pymysql.err.MySQLError:
            pass
