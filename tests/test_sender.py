"""The replay's sender thread: in order, nothing sent after the first failure, failure handed back."""
from __future__ import annotations

import pytest
from pymysql.constants import CLIENT

from restore.replay.sender import Sender, SendFailure


def _connect(target):
    return target.connect(client_flag=CLIENT.MULTI_STATEMENTS, autocommit=True)


def test_groups_run_in_order_and_stop_at_the_first_failure(target):
    conn = _connect(target)
    try:
        conn.query(b"CREATE DATABASE club")
        conn.query(b"CREATE TABLE club.t (id INT PRIMARY KEY, n INT)")
        sender = Sender(conn)
        try:
            sender.submit([b"INSERT INTO club.t VALUES (1, 1)", b"UPDATE club.t SET n = 2 WHERE id = 1"], "g1", "c1")
            sender.submit([b"INSERT INTO club.t VALUES (2, 1)", b"INSERT INTO club.t VALUES (1, 9)"], "g2", "c2")
            sender.submit([b"INSERT INTO club.t VALUES (3, 1)"], "g3", "c3")
            with pytest.raises(SendFailure) as caught:
                sender.drain()
        finally:
            sender.close()
        failure = caught.value
        assert (failure.group, failure.context) == ("g2", "c2")
        assert failure.failed.index == 1          # the second statement of the group failed
        assert failure.failed.error.args[0] == 1062
        with conn.cursor() as cur:
            cur.execute("SELECT id, n FROM club.t ORDER BY id")
            # g1 ran in order (UPDATE after INSERT), g2's first statement ran, g3 never did.
            assert cur.fetchall() == ((1, 2), (2, 1))
    finally:
        conn.close()


def test_a_submit_after_a_failure_raises_it(target):
    conn = _connect(target)
    try:
        sender = Sender(conn, depth=1)
        try:
            sender.submit([b"SELECT * FROM no_such_db.no_such_table"], "bad", None)
            with pytest.raises(SendFailure):
                for _ in range(50):  # the failure surfaces at the latest once the queue moved on
                    sender.submit([b"SELECT 1"], "ok", None)
                sender.drain()
        finally:
            sender.close()
    finally:
        conn.close()
