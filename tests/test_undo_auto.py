"""`--event auto` (restore.undo.auto.resolve_auto) against real servers: the transaction the plan
would choose as the disaster, when it is DML; DDL is refused toward /restore plan; none, or several,
refused with the candidates listed."""
from __future__ import annotations

import pytest

from restore import api
from restore.errors import RestoreError
from restore.undo.apply import connect
from restore.undo.auto import resolve_auto
from tests.support.db import checksums

pytestmark = pytest.mark.mysql

SETUP = ["CREATE DATABASE a",
         "CREATE TABLE a.big (id INT PRIMARY KEY, n INT, email VARCHAR(40))",
         "CREATE TABLE a.other (id INT PRIMARY KEY, v VARCHAR(20))",
         # rows from before the binlog's start: only the target's COUNT(*) knows them
         "SET sql_log_bin = 0",
         "INSERT INTO a.big SELECT seq, seq % 7, CONCAT('u', seq, '@example.com') FROM seq_1_to_1000",
         "SET sql_log_bin = 1",
         "INSERT INTO a.other VALUES (1, 'x'), (2, 'y'), (3, 'z')"]
TRAFFIC = ["INSERT INTO a.big VALUES (2000, 1, 'new@example.com')",
           "DELETE FROM a.big WHERE id <= 20",                 # 20 of 1000 rows: routine
           "UPDATE a.big SET n = n + 1 WHERE id BETWEEN 100 AND 199",
           "UPDATE a.other SET v = 'w' WHERE id = 2"]


def _play(server, statements) -> dict[str, str]:
    """Runs the statements; a `("mark", name)` item records the GTID of the transaction just committed."""
    marks = {}
    conn = server.connect()
    with conn.cursor() as cur:
        for sql in statements:
            if isinstance(sql, tuple):
                cur.execute("SELECT @@gtid_binlog_pos")
                marks[sql[1]] = cur.fetchone()[0]
            else:
                cur.execute(sql)
    conn.close()
    return marks


def _resolve(server, *, live: bool = False) -> str:
    """From the binlog files, or (`live`) read from the server through the replication protocol."""
    conn = connect(server.dsn)
    try:
        return resolve_auto(api.open_binlogs(server.dsn if live else server.binlog_dir), conn)
    finally:
        conn.close()


@pytest.fixture
def source(source_factory):
    server = source_factory("ROW")
    conn = server.connect()
    with conn.cursor() as cur:
        for sql in SETUP:
            cur.execute(sql.replace("FROM seq_", "FROM mysql.seq_"))
    conn.close()
    return server


MORE_OTHER = "INSERT INTO a.other SELECT seq, 'more' FROM mysql.seq_10_to_59"


def test_auto_refuses_when_two_transactions_hold_a_certain_dml_disaster_and_lists_both(source):
    marks = _play(source, TRAFFIC + ["DELETE FROM a.big WHERE id > 500",      # 500 of 981 rows: not mass
                                     "DELETE FROM a.big WHERE id > 20", ("mark", "big"), MORE_OTHER,
                                     "DELETE FROM a.other", ("mark", "other")])
    with pytest.raises(RestoreError) as err:
        _resolve(source)
    text = str(err.value)
    assert "2 transactions" in text and marks["big"] in text and marks["other"] in text, text
    assert "DELETE FROM a.big WHERE id > 20" in text and "DELETE FROM a.other" in text
    assert "WHERE id > 500" not in text and "--event GTID" in err.value.hint


def test_auto_names_a_transaction_of_two_mass_deletes_once(source):
    marks = _play(source, TRAFFIC + [MORE_OTHER, "BEGIN", "DELETE FROM a.big", "DELETE FROM a.other", "COMMIT",
                                     ("mark", "both")])
    assert _resolve(source) == marks["both"]


def test_auto_names_the_mass_delete_and_the_undo_of_it_matches_the_checksum_before(source):
    _play(source, TRAFFIC)
    before = checksums(source.connect(), ["a"])
    marks = _play(source, ["DELETE FROM a.big WHERE id > 0", ("mark", "disaster"),
                           "INSERT INTO a.other VALUES (4, 'later')"])
    assert _resolve(source) == marks["disaster"] == _resolve(source, live=True)
    done = api.undo(api.UndoInput(source.binlog_dir, source.dsn, _resolve(source), dry_run=False))
    assert done.applied and not done.verification and done.transaction["id"] == marks["disaster"]
    assert checksums(source.connect(), ["a"])["a.big"] == before["a.big"]


def test_auto_names_a_destroying_mass_update_and_counts_routine_deletes_against_the_real_size(source):
    # 20 of 1000 rows deleted: only a size counted back from the target tells it is routine (the
    # binlog alone holds no row of a.big from before)
    marks = _play(source, TRAFFIC + ["UPDATE a.big SET email = 'same@example.com'", ("mark", "disaster")])
    assert _resolve(source) == marks["disaster"]


def test_auto_refuses_when_the_plans_disaster_is_ddl(source):
    _play(source, TRAFFIC + ["TRUNCATE a.other", "DELETE FROM a.big"])
    with pytest.raises(RestoreError) as err:
        _resolve(source)
    assert "DDL" in str(err.value) and "TRUNCATE a.other" in str(err.value) and "/restore plan" in err.value.hint


def test_auto_refuses_when_there_is_no_certain_dml_disaster_and_lists_the_suspects(source):
    _play(source, TRAFFIC + ["UPDATE a.big SET n = n + 1"])     # every row, but nothing lost: a suspect
    with pytest.raises(RestoreError) as err:
        _resolve(source)
    text = str(err.value)
    assert "no certain DML disaster" in text and "UPDATE a.big SET n = n + 1" in text and "suspect" in text
    assert "information: n (8 distinct" in text, text     # the verdict names the target's columns
    assert "--event" in err.value.hint
