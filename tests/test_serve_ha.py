"""Two `restore-bot serve` instances on one store on a MariaDB server (the `target` test server)
watching one source: one holds the cluster's watch lease and alerts; kill -9 it, drive a destructive
statement while nobody watches, and the other instance takes the lease over, reads on from the saved
position and alerts that statement, once; the statement alerted before the kill is not alerted again.
Prints the failover time: kill -9 to the survivor's alert in Slack."""
from __future__ import annotations

import json
import time

import pytest

from restore.mysql.sandbox import Sandbox
from tests.support.serves import serving

pytestmark = pytest.mark.mysql
CHANNEL = "CHA"
DB = "rb_serve_ha"


def _alerts(calls, what: str):
    return [c for c in calls if c.method == "chat.postMessage" and "🚨" in c.text and what in c.text]


def _holder(target) -> str | None:
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT owner FROM {DB}.leases WHERE name = 'watch:default' AND expires > UNIX_TIMESTAMP(NOW(6))")
        row = cur.fetchone()
    return row[0] if row else None


def _wait(what, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := what():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")


@pytest.fixture
def two_serves(tmp_path, target):
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    with Sandbox(binlog=True, binlog_format="ROW") as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE club")
            cur.execute("CREATE TABLE club.a (id INT PRIMARY KEY)")
            cur.execute("CREATE TABLE club.b (id INT PRIMARY KEY)")
        config = tmp_path / "restore-bot.toml"
        config.write_text(f'[slack]\nchannel = "{CHANNEL}"\n[watch]\nsource = {json.dumps(src.url)}\n'
                          f'databases = ["club"]\n[oncall]\nrotation = ["UKIM"]\nrotation_start = "2026-01-05"\n'
                          f'[store]\nurl = "{target.url}/{DB}"\n')
        try:
            with serving(config, tmp_path) as (fake, bots):
                yield src, fake, bots
        finally:
            with target.connect() as conn, conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {DB}")


def test_kill_9_of_the_watching_instance_the_other_alerts_what_came_meanwhile_once(two_serves, target):
    src, fake, bots = two_serves
    holder = _wait(lambda: _holder(target), 30, "an instance to hold the watch lease")
    by_pid = {str(b.proc.pid): b for b in bots}
    watching = by_pid[holder.rsplit(":", 1)[1]]
    survivor = next(b for b in bots if b is not watching)
    time.sleep(2.0)   # the holder's watcher child has started and taken its starting position

    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE club.a")
    try:
        first = fake.wait_for(lambda calls: _alerts(calls, "club.a"), timeout=30, what="the first alert")
    except AssertionError:
        raise AssertionError(watching.log_tail()) from None
    time.sleep(0.5)   # its position saved after it

    killed_at = time.monotonic()
    watching.kill9()
    with src.connect() as conn, conn.cursor() as cur:   # nobody watches now
        cur.execute("DROP TABLE club.b")
    fake.wait_for(lambda calls: _alerts(calls, "DROP TABLE club.b"), timeout=60,
                  what="the survivor's alert of the DROP TABLE")
    failover = time.monotonic() - killed_at
    assert _holder(target).rsplit(":", 1)[1] == str(survivor.proc.pid)

    time.sleep(3.0)   # a second alert of either would come by now
    calls = fake.snapshot()
    assert len(_alerts(calls, "DROP TABLE club.b")) == 1, [c.text for c in _alerts(calls, "club")]
    assert len(_alerts(calls, "club.a")) == 1 and first[0].text == _alerts(calls, "club.a")[0].text
    print(f"failover: kill -9 of the watching instance to the survivor's alert posted: {failover:.2f}s")
