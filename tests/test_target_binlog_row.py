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
