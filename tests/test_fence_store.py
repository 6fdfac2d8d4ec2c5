"""The fence's `refuse` and restore-bot's job store on the production server ([store] url there):
the bot's own sessions in the store's schema, inside their short transactions (claims, heartbeats,
leases), are not writers; any other session inside a transaction still is."""
from __future__ import annotations

import time

import pytest

from handlers.jobstore import JobStore
from restore.target import fence

pytestmark = pytest.mark.mysql


def test_sessions_in_the_job_stores_transactions_are_not_writers_others_are(target):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE rb_fence_store")
        cur.execute("CREATE DATABASE other")
        cur.execute("CREATE TABLE other.t (id INT PRIMARY KEY)")
    jobs = JobStore(f"{target.url}/rb_fence_store")
    app = target.connect()
    try:
        jobs.create("plan", "plan", "UOPS1")
        with jobs.store.engine.connect() as bot, target.connect() as conn:
            bot.exec_driver_sql("SELECT * FROM jobs FOR UPDATE").all()   # a claim, in its transaction
            assert fence.writers(conn, ["shop"]) == []
            with app.cursor() as cur:
                cur.execute("USE other")
                cur.execute("BEGIN")
                cur.execute("INSERT INTO other.t VALUES (1)")
            time.sleep(0.2)   # INNODB_TRX is a cache the server refreshes at most every 0.1 s
            found = fence.writers(conn, ["shop"])
            assert [s.db for s in found] == ["other"], found
    finally:
        app.close()
        jobs.store.dispose()
