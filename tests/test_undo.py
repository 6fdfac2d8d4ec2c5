"""`restore-bot undo` against real servers: a DELETE and an UPDATE without WHERE undone in place on
the live source, later writes kept, conflicts reported, compared with an oracle server given the
same history without the disasters (CHECKSUM TABLE), and the refusals."""
from __future__ import annotations

import dataclasses
import random
from decimal import Decimal

import pytest

from restore import api
from restore.binlog.events import ROWS_EVENTS
from restore.errors import RestoreError
from restore.hooks import NullHooks
from restore.undo import apply as ap
from restore.undo.apply import connect
from restore.undo.changes import UndoReader
from restore.undo.store import Store
from tests.support.db import checksums, copy_binlogs, target_url
from tests.support.undo_story import history, last_gtid, run, scratch_tables, table_rows

pytestmark = pytest.mark.mysql


def test_undo_delete_and_update_keep_later_writes_and_match_the_oracle(source_factory, target, tmp_path, cli):
    source = source_factory("ROW")
    marks = history(source, disaster=True)
    history(target, disaster=False)

    # every column type decodes to exactly what the server's own SELECT returns
    conn = connect(source.dsn)
    with Store() as store:
        undone, changes = UndoReader(api.open_binlogs(copy_binlogs(source, tmp_path / "b0")), marks["delete"], conn,
                                     store).read()
        decoded = {k[0]: s.orig for k, s in changes["shop.orders"].states()}
    conn.close()
    assert decoded == marks["seeded"] and len(decoded) == 20

    before = checksums(source.connect(), ["shop"])
    preview = cli("undo", "--binlogs", copy_binlogs(source, tmp_path / "b1"), "--target", target_url(source),
                  "--event", marks["delete"], "--dry-run")
    assert preview.code == 0, preview.doc
    assert checksums(source.connect(), ["shop"]) == before, "a dry run wrote"
    tables = {t["table"]: t for t in preview.doc["tables"]}
    assert tables["shop.orders"]["rows"] == {"insert": 19, "update": 0, "delete": 0, "already": 0}
    assert tables["shop.log"]["rows"] == {"insert": 4, "update": 0, "delete": 0, "already": 0} and tables["shop.log"]["key"] is None
    assert tables["shop.orders"]["sample"][0]["values"]["note"] == "note 1 😀 ñ"
    [reused] = preview.doc["conflicts"]
    assert reused["table"] == "shop.orders" and reused["key"] == "id=5" and reused["column"] is None
    assert reused["later_value"][3] == "reused key" and reused["undo_value"][3] == "note 5 😀 ñ"
    assert not preview.doc["stale"] and tables["shop.orders"]["later_transactions"]

    applied = cli("undo", "--binlogs", copy_binlogs(source, tmp_path / "b2"), "--target", target_url(source),
                  "--event", marks["delete"], "--yes", "--preview", preview.doc["preview_id"])
    assert applied.code == 0 and applied.doc["applied"] and not applied.doc["verification"], applied.doc

    # the UPDATE, named by the FILE:POS of its row event (inside the transaction), the binlog read
    # from the server itself
    file, start = marks["update_at"]
    pos = next(ev.pos for ev in api.open_binlogs(source.binlog_dir).events(file, 4)
               if ev.pos > start and ev.type in ROWS_EVENTS)
    up = cli("undo", "--binlogs", target_url(source), "--target", target_url(source), "--event", f"{file}:{pos}", "--yes")
    assert up.code == 0 and up.doc["applied"], up.doc
    assert up.doc["transaction"]["id"] == marks["update"]
    [conflict] = up.doc["conflicts"]
    assert (conflict["key"], conflict["column"], conflict["undo_value"], conflict["later_value"]) == \
        ("id=3", "email", "c3@example.com", "again3@example.com")
    [customers] = up.doc["tables"]
    assert customers["rows"]["update"] == 5 and customers["sample"][0]["columns"] == ["email"]

    got, want = checksums(source.connect(), ["shop"]), checksums(target.connect(), ["shop"])
    assert got == want, (got, want)
    assert table_rows(source, "shop.customer")[2][1] == "Renamed Two"   # the later rename stayed


@pytest.fixture
def small(source_factory):
    source = source_factory("ROW")
    run(source, ["CREATE DATABASE s", "CREATE TABLE s.t (id INT PRIMARY KEY, v VARCHAR(40))",
                  "INSERT INTO s.t VALUES (1, 'a'), (2, 'b'), (3, 'c')"])
    return source


def test_a_target_changed_after_the_preview_is_refused_and_nothing_changes(small, tmp_path):
    run(small, ["DELETE FROM s.t"])
    gtid = last_gtid(small)
    inputs = api.UndoInput(small.binlog_dir, small.dsn, gtid)
    preview = api.undo(inputs)
    assert preview.tables[0]["rows"]["insert"] == 3 and not preview.applied
    run(small, ["SET sql_log_bin = 0", "INSERT INTO s.t VALUES (2, 'written outside the binlog')"])
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False, preview=preview.preview_id))
    assert "run the preview again" in err.value.hint
    assert table_rows(small, "s.t") == {2: (2, "written outside the binlog")}
    # without a preview id, the row the binlog does not explain refuses it too
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False))
    assert "s.t id=2" in str(err.value) and "preview again" in err.value.hint
    assert len(table_rows(small, "s.t")) == 1


class _WritesBeforeApply(NullHooks):
    """Writes into the target between the preview's look at its rows and the apply's transaction."""

    def __init__(self, server, sql: str) -> None:
        self.server, self.sql = server, sql

    def phase_started(self, phase: str, total) -> None:
        if phase == "apply":
            run(self.server, ["SET sql_log_bin = 0", self.sql])


def test_a_write_between_the_look_and_the_apply_is_caught_under_lock(small):
    run(small, ["UPDATE s.t SET v = 'lost'"])
    gtid = last_gtid(small)
    hooks = _WritesBeforeApply(small, "UPDATE s.t SET v = 'meanwhile' WHERE id = 3")
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False), hooks=hooks)
    assert "changed on the target since the preview" in str(err.value) and "preview again" in err.value.hint
    assert table_rows(small, "s.t") == {1: (1, "lost"), 2: (2, "lost"), 3: (3, "meanwhile")}   # none put back


def test_deleted_rows_go_back_as_logged_and_a_key_taken_meanwhile_refuses_them_whole(small):
    """The rows a DELETE removed go back by BINLOG statements of their logged images; a key taken
    between the preview and the apply fails that statement: nothing is put back."""
    run(small, ["CREATE TABLE s.w (id INT PRIMARY KEY, v VARCHAR(40), d DECIMAL(8,2), b BLOB)",
                 "INSERT INTO s.w SELECT seq, CONCAT('v', seq), seq / 4, IF(seq % 3, NULL, UNHEX('00FF')) "
                 "FROM s.seq_1_to_3000",
                 "DELETE FROM s.w"])
    gtid = last_gtid(small)
    hooks = _WritesBeforeApply(small, "INSERT INTO s.w VALUES (2999, 'meanwhile', NULL, NULL)")
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False), hooks=hooks)
    assert "changed on the target since the preview" in str(err.value) and "preview again" in err.value.hint
    assert table_rows(small, "s.w") == {2999: (2999, "meanwhile", None, None)}
    run(small, ["SET sql_log_bin = 0", "DELETE FROM s.w"])
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False))
    assert done.applied and not done.verification and done.tables[0]["put_back_by"].startswith("BINLOG")
    assert done.tables[0]["rows"]["insert"] == 3000 and done.tables[0]["sample"][0]["values"]["v"] == "v1"
    back = table_rows(small, "s.w")
    assert len(back) == 3000 and back[3] == (3, "v3", Decimal("0.75"), b"\x00\xff") and back[4][3] is None


def test_every_row_put_back_by_binlog_is_verified_and_one_changed_after_the_commit_is_named(small, monkeypatch):
    """The verification compares every row put back by BINLOG, exactly (a case change that the
    column's collation calls equal too), through a scratch copy that is dropped afterwards; a
    scratch copy left by a dead undo is dropped at the start. (A unique index besides the key
    sends the rows the row-by-row way, verified after the commit; rows kept whole are verified
    inside the transaction: tests/test_undo_fast.py.)"""
    run(small, ["CREATE TABLE s.w (id INT PRIMARY KEY, v VARCHAR(40), d DECIMAL(8,2), UNIQUE KEY (d))",
                 "INSERT INTO s.w SELECT seq, CONCAT('v', seq), seq / 4 FROM s.seq_1_to_4000",
                 "DELETE FROM s.w"])
    gtid = last_gtid(small)
    run(small, ["SET sql_log_bin = 0", "CREATE DATABASE IF NOT EXISTS _restore_bot",
                 "CREATE TABLE _restore_bot.undo_verify_999999999_dead (id INT)"])   # no such pid
    real = ap.verify_binlog_rows

    def after_commit(conn, table):     # runs right after the commit: the target is written meanwhile
        run(small, ["SET sql_log_bin = 0", "UPDATE s.w SET v = 'V3777' WHERE id = 3777"])
        return real(conn, table)
    monkeypatch.setattr(ap, "verify_binlog_rows", after_commit)
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False))
    assert done.applied and done.tables[0]["put_back_by"].startswith("BINLOG")
    [problem] = done.verification
    assert problem["table"] == "s.w" and problem["key"] == "id=3777", problem
    assert problem["intended"][1] == "v3777" and problem["target"][1] == "V3777"
    assert scratch_tables(small) == []
    assert len(table_rows(small, "s.w")) == 4000

    # a clean undo of a few thousand rows: no problem
    monkeypatch.setattr(ap, "verify_binlog_rows", real)
    run(small, ["DELETE FROM s.w"])
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, last_gtid(small), dry_run=False))
    assert done.applied and done.tables[0]["rows"]["insert"] == 4000 and not done.verification, done.verification
    assert scratch_tables(small) == []
    assert table_rows(small, "s.w")[3777] == (3777, "V3777", Decimal("944.25"))


def test_a_user_who_may_not_run_binlog_puts_the_rows_back_by_insert(small):
    run(small, ["DELETE FROM s.t"])
    gtid = last_gtid(small)
    run(small, ["CREATE USER 'plain'@'%' IDENTIFIED BY 'pw'",
                 "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON *.* TO 'plain'@'%'"])
    try:
        plain = dataclasses.replace(small.dsn, user="plain", password="pw")
        done = api.undo(api.UndoInput(small.binlog_dir, plain, gtid, dry_run=False))
        assert done.applied and not done.verification
        assert "may not run BINLOG" in done.tables[0]["put_back_by"]
        assert table_rows(small, "s.t") == {1: (1, "a"), 2: (2, "b"), 3: (3, "c")}
    finally:
        run(small, ["DROP USER 'plain'@'%'"])


def test_a_target_whose_row_events_would_overwrite_gets_the_rows_by_insert(small):
    """slave_exec_mode=IDEMPOTENT makes a row event overwrite a row holding its key: not used then."""
    run(small, ["DELETE FROM s.t"])
    gtid = last_gtid(small)
    run(small, ["SET GLOBAL slave_exec_mode = 'IDEMPOTENT'"])
    try:
        done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False))
        assert done.applied and not done.verification and "slave_exec_mode=IDEMPOTENT" in done.tables[0]["put_back_by"]
        assert table_rows(small, "s.t") == {1: (1, "a"), 2: (2, "b"), 3: (3, "c")}
    finally:
        run(small, ["SET GLOBAL slave_exec_mode = 'STRICT'"])


def test_an_inserted_row_is_deleted_only_while_still_as_inserted(small):
    run(small, ["BEGIN", "INSERT INTO s.t VALUES (4, 'd'), (5, 'e')", "COMMIT"])
    gtid = last_gtid(small)
    run(small, ["UPDATE s.t SET v = 'changed' WHERE id = 5"])
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False))
    assert done.applied and not done.verification and done.tables[0]["rows"]["delete"] == 1
    assert [c["key"] for c in done.conflicts] == ["id=5"]
    assert sorted(table_rows(small, "s.t")) == [1, 2, 3, 5]
    # run again after success: recognised by its record on the target, nothing changes
    run(small, ["INSERT INTO s.t VALUES (4, 'd')"])      # the key the undo freed, taken again
    again = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False))
    assert not again.applied and again.done_before["preview_id"] == done.preview_id
    assert sorted(table_rows(small, "s.t")) == [1, 2, 3, 4, 5]


def test_a_primary_key_update_is_undone_and_a_unique_value_taken_later_is_a_conflict(small):
    run(small, ["CREATE TABLE s.u (id INT PRIMARY KEY, email VARCHAR(20) UNIQUE, nick VARCHAR(20), "
                 "UNIQUE KEY nick_u (nick))",
                 "INSERT INTO s.u VALUES (1, 'a', 'n1'), (2, 'b', 'n2'), (3, 'c', 'n3')", "UPDATE s.u SET id = id + 100"])
    gtid = last_gtid(small)
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False))
    # the rows put back take the unique values of rows the undo itself deletes: no conflict
    assert done.applied and not done.verification and not done.conflicts and done.tables[0]["rows"]["delete"] == 3
    assert table_rows(small, "s.u") == {1: (1, "a", "n1"), 2: (2, "b", "n2"), 3: (3, "c", "n3")}
    run(small, ["BEGIN", "DELETE FROM s.u WHERE id = 1", "UPDATE s.u SET nick = 'renamed' WHERE id = 2", "COMMIT"])
    gtid = last_gtid(small)
    run(small, ["INSERT INTO s.u VALUES (9, 'A', 'x')",          # the deleted row's email (the collation: 'A' = 'a')
                 "UPDATE s.u SET nick = 'n2' WHERE id = 3"])       # the nick row 2 had, taken by row 3
    preview = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid))
    by_key = {c["key"]: c for c in preview.conflicts}
    assert set(by_key) == {"id=1", "id=2"}, preview.conflicts
    assert (by_key["id=1"]["unique_index"], by_key["id=1"]["column"], by_key["id=1"]["undo_value"],
            by_key["id=1"]["later_value"]) == ("email", "email", ["a"], ["A"])
    assert "id=9" in by_key["id=1"]["reason"] and "not put back" in by_key["id=1"]["reason"]
    assert (by_key["id=2"]["unique_index"], by_key["id=2"]["undo_value"], by_key["id=2"]["later_value"]) == \
        ("nick_u", ["n2"], ["n2"])
    assert "id=3" in by_key["id=2"]["reason"]
    assert preview.tables[0]["rows"] == {"insert": 0, "update": 0, "delete": 0, "already": 0}
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False, preview=preview.preview_id))
    assert done.applied and not done.verification
    assert table_rows(small, "s.u") == {2: (2, "b", "renamed"), 3: (3, "c", "n2"), 9: (9, "A", "x")}


def test_a_unique_value_taken_between_preview_and_apply_refuses_the_undo_whole(small):
    run(small, ["CREATE TABLE s.u (id INT PRIMARY KEY, email VARCHAR(20) UNIQUE)",
                 "INSERT INTO s.u VALUES (1, 'a'), (2, 'b')", "DELETE FROM s.u"])
    gtid = last_gtid(small)
    hooks = _WritesBeforeApply(small, "INSERT INTO s.u VALUES (9, 'b')")
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False), hooks=hooks)
    assert "refused the undo (Duplicate entry 'b'" in str(err.value) and "nothing was changed" in str(err.value)
    assert table_rows(small, "s.u") == {9: (9, "b")}


def test_generated_columns_are_left_to_the_server(small):
    run(small, ["CREATE TABLE s.g (id INT PRIMARY KEY, v VARCHAR(10), twice INT AS (id * 2) VIRTUAL, "
                 "shout VARCHAR(20) AS (CONCAT(v, '!')) PERSISTENT)",
                 "INSERT INTO s.g (id, v) VALUES (1, 'a'), (2, 'b')"])
    before = table_rows(small, "s.g")
    run(small, ["UPDATE s.g SET v = 'z'"])
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, last_gtid(small), dry_run=False))
    assert done.applied and not done.verification, done.verification
    assert [s["columns"] for s in done.tables[0]["sample"]] == [["v"], ["v"]]
    assert table_rows(small, "s.g") == before == {1: (1, "a", 2, "a!"), 2: (2, "b", 4, "b!")}


def test_a_table_without_a_key_matches_whole_rows_and_counts_duplicates(small):
    run(small, ["CREATE TABLE s.n (v VARCHAR(10), k INT)",
                 "INSERT INTO s.n VALUES ('a', 1), ('a', 1), ('b', 2), ('b', 2), ('c', 3)"])
    run(small, ["BEGIN", "UPDATE s.n SET k = 7 WHERE v = 'a'", "DELETE FROM s.n WHERE v = 'b'",
                 "INSERT INTO s.n VALUES ('new', 0), ('new', 0)", "COMMIT"])
    gtid = last_gtid(small)
    run(small, ["UPDATE s.n SET v = 'z' WHERE v = 'a' LIMIT 1",    # one updated row changed later
                 "DELETE FROM s.n WHERE v = 'new' LIMIT 1",          # one inserted row deleted later
                 "INSERT INTO s.n VALUES ('c', 3)"])                  # an unrelated duplicate
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid, dry_run=False))
    assert done.applied and not done.verification, done
    assert done.tables[0]["rows"] == {"insert": 2, "update": 1, "delete": 1, "already": 0}
    [conflict] = done.conflicts
    assert conflict["key"] == "v='a', k=1" and conflict["column"] is None
    conn = small.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT v, k, COUNT(*) FROM s.n GROUP BY v, k ORDER BY v, k")
        assert cur.fetchall() == (("a", 1, 1), ("b", 2, 2), ("c", 3, 2), ("z", 7, 1))


@pytest.mark.parametrize("session, words", [
    (["DROP TABLE s.t"], ["DDL", "/restore plan"]),
    (["SET SESSION binlog_format = 'STATEMENT'", "DELETE FROM s.t"], ["statement", "binlog_format=ROW"]),
    (["SET SESSION binlog_row_image = 'MINIMAL'", "DELETE FROM s.t"], ["MINIMAL", "binlog_row_image=FULL"]),
])
def test_what_cannot_be_undone_is_refused_clearly(small, session, words):
    run(small, session)
    gtid = last_gtid(small)
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid))
    text = f"{err.value} {err.value.hint}"
    assert all(w in text for w in words), text


def test_a_transaction_whose_deletes_or_key_updates_cascaded_to_children_is_refused(small):
    run(small, ["CREATE TABLE s.c (id INT PRIMARY KEY, t_id INT, FOREIGN KEY fk_cascade (t_id) REFERENCES s.t (id) "
                 "ON DELETE CASCADE ON UPDATE SET NULL) ENGINE=InnoDB",
                 "CREATE TABLE s.r (id INT PRIMARY KEY, t_v VARCHAR(40), KEY (t_v))",
                 "INSERT INTO s.c VALUES (10, 1), (20, 2)"])
    conn = small.connect()
    before = checksums(conn, ["s"])
    run(small, ["UPDATE s.t SET v = CONCAT(v, '!')"])      # no referenced column changed: undone
    done = api.undo(api.UndoInput(small.binlog_dir, small.dsn, last_gtid(small), dry_run=False))
    assert done.applied and not done.verification and checksums(conn, ["s"]) == before
    for statement, rule in (("DELETE FROM s.t WHERE id = 1", "ON DELETE CASCADE"),
                            ("UPDATE s.t SET id = id + 100 WHERE id = 2", "ON DELETE CASCADE ON UPDATE SET NULL")):
        run(small, [statement])
        with pytest.raises(RestoreError) as err:
            api.undo(api.UndoInput(small.binlog_dir, small.dsn, last_gtid(small)))
        assert f"fk_cascade from s.c is {rule}" in err.value.message and "/restore plan" in err.value.hint, err.value


# Random values per type, NULLs among them: what a DELETE of them logged must decode to exactly what
# the server's own SELECT returned, and the undo must put them back bit for bit.
def _time(rnd, digits: int) -> str:
    frac = f".{rnd.randint(0, 10 ** digits - 1):0{digits}d}" if digits else ""
    sign = "-" if rnd.random() < 0.4 else ""
    return f"'{sign}{rnd.randint(0, 838)}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}{frac}'"


def _hex(rnd, most: int) -> str:
    return "x'" + bytes(rnd.randint(0, 255) for _ in range(rnd.randint(0, most))).hex() + "'"


TYPES = {
    "t0": ("TIME", lambda r: _time(r, 0)), "t2": ("TIME(2)", lambda r: _time(r, 2)),
    "t3": ("TIME(3)", lambda r: _time(r, 3)), "t6": ("TIME(6)", lambda r: _time(r, 6)),
    "bn": ("BINARY(6)", lambda r: _hex(r, 6)), "vb": ("VARBINARY(300)", lambda r: _hex(r, 300)),
    "ch": ("CHAR(8) CHARACTER SET latin1", lambda r: repr(r.choice(["ab", "é ", "  x", "", "abc   ", "€"]))),
    "mu": ("MEDIUMINT UNSIGNED", lambda r: str(r.randint(0, 16777215))),
    "ms": ("MEDIUMINT", lambda r: str(r.randint(-8388608, 8388607))),
    "bt": ("BIT(64)", lambda r: str(r.getrandbits(64))),
    "d0": ("DECIMAL(30,0)", lambda r: str(r.randint(-10 ** 30 + 1, 10 ** 30 - 1))),
    "d9": ("DECIMAL(38,19)", lambda r: f"{r.choice('-+')}{r.randint(0, 10 ** 19 - 1)}.{r.randint(0, 10 ** 19 - 1):019d}"),
    "dt": ("DATETIME", lambda r: f"'{r.randint(1000, 9999)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "
                                 f"{r.randint(0, 23)}:{r.randint(0, 59)}:{r.randint(0, 59)}'"),
    "ts": ("TIMESTAMP(6) NULL", lambda r: f"'{r.randint(1971, 2037)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "
                                          f"{r.randint(0, 23)}:{r.randint(0, 59)}:{r.randint(0, 59)}.{r.randint(0, 999999):06d}'"),
    "st": ("SET('a','b','c','d')", lambda r: repr(",".join(r.sample("abcd", r.randint(0, 4))))),
    "tx": ("MEDIUMTEXT CHARACTER SET utf8mb4", lambda r: repr("".join(r.choice("aé😀\n'") for _ in range(r.randint(0, 300))))),
    "db": ("DOUBLE", lambda r: repr(r.uniform(-1, 1) * 10 ** r.randint(-300, 300))),
}


def test_each_decoded_type_equals_the_servers_select_and_goes_back_bit_for_bit(source_factory):
    rnd = random.Random(12)
    source = source_factory("ROW")
    run(source, ["CREATE DATABASE y",
                  "CREATE TABLE y.t (id INT PRIMARY KEY, " + ", ".join(f"{k} {t}" for k, (t, _) in TYPES.items()) + ")"]
         + [f"INSERT INTO y.t VALUES ({i}, " + ", ".join("NULL" if rnd.random() < 0.05 else make(rnd)
                                                          for _, make in TYPES.values()) + ")" for i in range(200)])
    selected = table_rows(source, "y.t")
    run(source, ["DELETE FROM y.t"])
    gtid = last_gtid(source)
    conn = connect(source.dsn)
    with Store() as store:
        _, changes = UndoReader(api.open_binlogs(source.binlog_dir), gtid, conn, store).read()
        decoded = {k[0]: s.orig for k, s in changes["y.t"].states()}
    conn.close()
    names = ["id", *TYPES]
    wrong = {names[j]: (selected[i][j], decoded[i][j]) for i in selected for j in range(len(names))
             if selected[i][j] != decoded[i][j]}
    assert not wrong and len(decoded) == 200, wrong
    done = api.undo(api.UndoInput(source.binlog_dir, source.dsn, gtid, dry_run=False))
    assert done.applied and not done.verification
    assert table_rows(source, "y.t") == selected
    # every column of every row set back by the batched UPDATE (literals through a derived table)
    run(source, ["UPDATE y.t SET " + ", ".join(f"{k} = {v}" for k, v in OTHER.items())])
    done = api.undo(api.UndoInput(source.binlog_dir, source.dsn, last_gtid(source), dry_run=False))
    assert done.applied and not done.verification and done.tables[0]["rows"]["update"] == 200
    assert table_rows(source, "y.t") == selected


OTHER = {"t0": "'01:02:03'", "t2": "'01:02:03.5'", "t3": "'-01:02:03.5'", "t6": "'00:00:00.000001'", "bn": "x'01'",
         "vb": "x'02'", "ch": "'zz'", "mu": "1", "ms": "-1", "bt": "1", "d0": "1", "d9": "'-0.5'",
         "dt": "'2000-01-01 00:00:00'", "ts": "'2000-01-01 00:00:00.5'", "st": "'a,d'", "tx": "'zz'", "db": "1.5"}


@pytest.mark.parametrize("later, words", [
    (["ALTER TABLE s.t ADD INDEX (v)"], ["later transaction", "runs DDL on s.t", "/restore plan"]),
    (["ALTER TABLE s.t ADD COLUMN w INT"], ["s.t had 2 columns", "the target's has 3", "/restore plan"]),
    (["SET SESSION binlog_format = 'STATEMENT'", "UPDATE s.t SET v = 'stmt' WHERE id = 1"],
     ["later transaction", "statement-format write on s.t", "ROW format"]),
])
def test_a_later_write_whose_rows_cannot_be_told_is_refused(small, later, words):
    run(small, ["DELETE FROM s.t WHERE id = 2"])
    gtid = last_gtid(small)
    run(small, later)
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(small.binlog_dir, small.dsn, gtid))
    text = f"{err.value} {err.value.hint}"
    assert all(w in text for w in words), text


# a kill -9 during the apply, and the rerun after it: tests/test_undo_scale.py


def test_the_cli_will_not_apply_without_yes_when_it_cannot_ask(cli, tmp_path):
    refused = cli("undo", "--binlogs", tmp_path, "--target", "mysql://root@127.0.0.1:1", "--event", "0-1-5")
    assert refused.code == 2 and "without confirmation" in refused.error["message"], refused
    assert "--dry-run" in refused.error["hint"]
