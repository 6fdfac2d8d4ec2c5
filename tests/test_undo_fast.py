"""A DELETE's rows kept whole per event (restore.undo.fast): the server's scratch copy counts and
checks them; a later write to one of their keys, or another change of the same table in the
transaction, splits them into rows, and the undo is as exact as row by row."""
from __future__ import annotations

from decimal import Decimal

import pytest

from restore import api
from restore.errors import RestoreError
from restore.undo import apply as ap
from restore.undo import fast, fast_apply
from tests.support.db import checksums
from tests.support.undo_story import last_gtid, run, scratch_tables, table_rows

pytestmark = pytest.mark.mysql

ROWS = 3000


@pytest.fixture
def wide(source_factory):
    source = source_factory("ROW")
    run(source, ["CREATE DATABASE f", "CREATE TABLE f.w (id INT PRIMARY KEY, v VARCHAR(40), d DECIMAL(8,2), b BLOB)",
                 f"INSERT INTO f.w SELECT seq, CONCAT('v', seq), seq / 4, IF(seq % 3, NULL, UNHEX('00FF')) "
                 f"FROM f.seq_1_to_{ROWS}"])
    return source


def test_a_later_write_to_a_deleted_key_splits_the_rows_and_is_a_conflict(wide):
    before = table_rows(wide, "f.w")
    run(wide, ["DELETE FROM f.w"])
    gtid = last_gtid(wide)
    run(wide, ["INSERT INTO f.w VALUES (2000, 'later', NULL, NULL)",        # a deleted key taken again
               "INSERT INTO f.w VALUES (9000, 'new', 1, NULL)"])            # a new one: not the undo's business
    preview = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid))
    assert scratch_tables(wide) == []
    [conflict] = preview.conflicts
    assert conflict["key"] == "id=2000" and conflict["later_value"][1] == "later", conflict
    assert preview.tables[0]["rows"]["insert"] == ROWS - 1 and len(preview.tables[0]["later_transactions"]) == 1
    done = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid, dry_run=False, preview=preview.preview_id))
    assert done.applied and not done.verification and done.tables[0]["put_back_by"].startswith("BINLOG")
    want = {**before, 2000: (2000, "later", None, None), 9000: (9000, "new", Decimal("1.00"), None)}
    assert table_rows(wide, "f.w") == want
    assert scratch_tables(wide) == []


def test_rows_kept_whole_and_later_traffic_elsewhere_go_back_exactly_with_the_same_preview(wide):
    run(wide, ["CREATE TABLE f.other (id INT PRIMARY KEY, v INT)"])
    before = checksums(wide.connect(), ["f"])
    run(wide, ["DELETE FROM f.w"])
    gtid = last_gtid(wide)
    run(wide, ["INSERT INTO f.other VALUES (1, 1)", "UPDATE f.other SET v = 2"])
    preview = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid))
    assert preview.tables[0]["rows"]["insert"] == ROWS and not preview.conflicts and not preview.stale
    assert preview.tables[0]["sample"][0]["values"] == {"id": 1, "v": "v1", "d": "0.25", "b": None}
    assert preview.tables[0]["later_transactions"] == []
    again = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid))
    assert again.preview_id == preview.preview_id
    done = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid, dry_run=False, preview=preview.preview_id))
    assert done.applied and not done.verification
    assert checksums(wide.connect(), ["f"])["f.w"] == before["f.w"]
    assert scratch_tables(wide) == []


def test_another_change_of_the_table_in_the_transaction_splits_the_rows(wide):
    """DELETE, UPDATE, DELETE and INSERT of one table in one transaction: the first DELETE's rows
    were kept whole, the UPDATE splits them; the inserted row is taken back."""
    before = checksums(wide.connect(), ["f"])
    run(wide, ["START TRANSACTION", "DELETE FROM f.w WHERE id <= 1000", "UPDATE f.w SET v = 'x' WHERE id = 2000",
               "DELETE FROM f.w WHERE id > 2500", "INSERT INTO f.w VALUES (1, 'back in the same transaction', 0, NULL)",
               "COMMIT"])
    gtid = last_gtid(wide)
    done = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid, dry_run=False))
    assert done.applied and not done.verification and not done.conflicts
    assert checksums(wide.connect(), ["f"])["f.w"] == before["f.w"]


@pytest.mark.parametrize("by", ["sums", "key"])
def test_rows_not_held_as_logged_before_the_commit_are_named_and_roll_the_undo_back(wide, monkeypatch, by):
    """Past PART_BYTES the pieces go to several scratch copies, written by two sessions at once.
    Before the commit every row is checked: by the table's checksum against the copies' (`sums`,
    the table holding no more rows than go back), or part by part by another session reading the
    uncommitted rows while the next part goes in (`key`). Rows changed by the apply's own session
    inside its transaction are named, and the undo is rolled back."""
    monkeypatch.setattr(fast, "PART_BYTES", 10000)
    if by == "key":
        monkeypatch.setattr(fast_apply, "SCAN_FACTOR", -1)
    run(wide, ["DELETE FROM f.w"])
    gtid = last_gtid(wide)
    real = ap.put_back
    seen = {}

    def tampered(rows, conn, table):
        seen["parts"] = [len(refs) for refs in rows.part_refs]
        assert sum(rows.counts) == ROWS and len(rows.parts) == len(rows.part_refs)
        send = rows.raw.send

        def send_then_change(c, refs):
            n = send(c, refs)
            if c is conn:     # the apply's session: the rows are put back, not committed
                with conn.cursor() as cur:
                    cur.execute("UPDATE f.w SET v = 'V2900' WHERE id = 2900")
                    cur.execute("UPDATE f.w SET d = d + 0.01 WHERE id = 100")
            return n
        rows.raw.send = send_then_change
        return real(rows, conn, table)
    monkeypatch.setattr(ap, "put_back", tampered)
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid, dry_run=False))
    assert len(seen["parts"]) >= 3 and all(seen["parts"]), seen
    message = str(err.value)
    assert "f.w: 2 row(s) put back are not held as logged" in message and "first: id=100" in message, message
    assert "rolled back" in message
    assert table_rows(wide, "f.w") == {} and scratch_tables(wide) == []

    monkeypatch.setattr(ap, "put_back", real)   # untouched: every row checked, all exact
    done = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid, dry_run=False))
    assert done.applied and not done.verification and done.tables[0]["rows"]["insert"] == ROWS
    assert len(table_rows(wide, "f.w")) == ROWS and scratch_tables(wide) == []


def test_a_table_holding_many_more_rows_than_go_back_is_checked_by_key(wide, monkeypatch):
    """A whole-table checksum would scan far more rows than go back: the rows are compared by key
    instead, and the table's own checksum is never taken."""
    run(wide, ["DELETE FROM f.w WHERE id <= 100"])
    gtid = last_gtid(wide)
    sums = []
    real = fast_apply._checksum
    monkeypatch.setattr(fast_apply, "_checksum", lambda conn, ident: sums.append(ident) or real(conn, ident))
    done = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid, dry_run=False))
    assert done.applied and not done.verification and done.tables[0]["rows"]["insert"] == 100
    assert sums == [] and len(table_rows(wide, "f.w")) == ROWS


def test_a_row_the_binlog_does_not_explain_at_a_deleted_key_of_the_second_copy_refuses_the_undo(wide, monkeypatch):
    monkeypatch.setattr(fast, "PART_BYTES", 1000)
    run(wide, ["DELETE FROM f.w"])
    gtid = last_gtid(wide)
    run(wide, ["SET sql_log_bin = 0", "INSERT INTO f.w VALUES (2900, 'written outside the binlog', NULL, NULL)"])
    preview = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid))
    assert [s["key"] for s in preview.stale] == ["id=2900"] and preview.stale[0]["target"][1] == "written outside the binlog"
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, gtid, dry_run=False))
    assert "f.w id=2900" in str(err.value) and "preview again" in err.value.hint
    assert len(table_rows(wide, "f.w")) == 1 and scratch_tables(wide) == []


@pytest.mark.parametrize("ddl", [
    # an AUTO_INCREMENT column keeps its key in the scratch copy
    "CREATE TABLE f.a (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40), KEY (v))",
    # a key MyISAM cannot take (1,200 bytes): the scratch copy stays InnoDB
    "CREATE TABLE f.a (id VARCHAR(300) CHARACTER SET utf8mb4 PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB",
])
def test_a_scratch_copy_the_server_will_not_lighten_still_checks_every_row(wide, ddl):
    run(wide, [ddl, "INSERT INTO f.a SELECT seq, CONCAT('v', seq) FROM f.seq_1_to_500"])
    before = checksums(wide.connect(), ["f"])["f.a"]
    run(wide, ["DELETE FROM f.a"])
    done = api.undo(api.UndoInput(wide.binlog_dir, wide.dsn, last_gtid(wide), dry_run=False))
    assert done.applied and not done.verification and done.tables[0]["rows"]["insert"] == 500
    assert checksums(wide.connect(), ["f"])["f.a"] == before and scratch_tables(wide) == []
