"""The growth bound into a ROW-format target: the target's binlog grows by at most twice the
replayed source range (ROW source), with exit 0 and exact data, for a large and a tiny batch.

tests/test_target_binlog.py asserts it into a MIXED target; a ROW target logs every replayed
change as row events, so it is the format a `BINLOG` statement's annotations would blow up most.
"""
from __future__ import annotations

import pytest

from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, restore_args
from tests.support.target_binlog import SHOP, binlog_bytes, replayed_bytes

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


@pytest.fixture(scope="module")
def shop_row(tmp_path_factory):
    return SHOP.build_on_new_source(tmp_path_factory.mktemp("target-binlog-row"), "ROW")


@pytest.mark.parametrize("batch", ["1000", "5"])
def test_a_row_target_binlog_grows_by_at_most_twice_what_is_replayed(shop_row, batch, cli):
    with Sandbox(binlog=True, binlog_format="ROW") as target:
        grown_from = binlog_bytes(target)
        res = cli(*restore_args(shop_row, target, "--batch", batch))
        assert res.code == 0 and res.doc["ok"], res
        assert "row annotations off" in res.doc["restore"]["target_binlog"], res
        grown = binlog_bytes(target) - grown_from
        replayed = replayed_bytes(res.plan, shop_row.binlog_dir)
        with target.connect() as conn:
            assert checksums(conn, ["shop"]) == shop_row.before
        assert replayed > 1_000_000, replayed
        # The dump's load is logged too (a few KB here); the replay itself must stay within 2x.
        assert grown <= 2 * replayed + 64_000, f"target binlog grew {grown} bytes for {replayed} replayed"


@pytest.fixture(scope="module")
def shop_mixed(tmp_path_factory):
    return SHOP.build_on_new_source(tmp_path_factory.mktemp("target-binlog-row-from-mixed"), "MIXED")


def test_a_row_target_logs_each_checkpoint_small_whatever_the_batch(shop_mixed, cli):
    """A ROW target logs the checkpoint UPDATE of every commit as row images of the state row,
    plan JSON included: with --batch 5 that once doubled the growth (17.6 MB against 8.3 MB at
    --batch 1000 for this range). Logged with a minimal image, a commit costs a few hundred bytes.
    (From a MIXED source a ROW target logs full row images of what was one statement: here about
    2.4x the replayed range, by nature, at any batch size.)"""
    grown = {}
    for batch in ("1000", "5"):
        with Sandbox(binlog=True, binlog_format="ROW") as target:
            grown_from = binlog_bytes(target)
            res = cli(*restore_args(shop_mixed, target, "--batch", batch))
            assert res.code == 0 and res.doc["ok"], res
            grown[batch] = binlog_bytes(target) - grown_from
            with target.connect() as conn:
                assert checksums(conn, ["shop"]) == shop_mixed.before
            commits = next(p for p in res.doc["restore"]["phases"] if p["phase"] == "replay")["commits"]
    assert commits >= 300, commits
    per_commit = (grown["5"] - grown["1000"]) / commits
    assert per_commit < 1000, f"each commit adds {per_commit:.0f} bytes to a ROW target's binlog ({grown})"
