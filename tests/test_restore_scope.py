"""Scope and stop: what is restored, what is left out, and where `auto` stops.

- `other` (a database on the same server without a snapshot) is left out, also when its writes
  ran with a restored database as the default one;
- the plan's per-table row counts match what the workload did (ROW format);
- `--skip <the DROP> --stop-before end` restores everything except the disaster;
- each kind of destructive event (statement or row form, with or without USE) is found by `auto`.
"""
from __future__ import annotations

import pytest

from tests.support.db import assert_restored, checksums, databases, format_id, plan_args, restore_args
from tests.support.incident_factory import In, IncidentSpec


def test_other_left_out_and_row_counts_in_plan(incidents, cli):
    inc = incidents("ROW", "MINIMAL")
    res = cli(*plan_args(inc))
    assert res.code == 0, res
    plan = res.plan
    assert set(plan["databases"]) == {"homepage", "wiki"}, plan["databases"]
    assert not [t for t in plan["tables"] if t.startswith("other.")], plan["tables"]
    assert plan["left_out_events"] > 0, "the writes to `other` must be counted as left out"

    # tables changed only by row events: counts are exact and predict the pre-disaster row count
    for table, expected in inc.counts.items():
        got = plan["tables"][table]
        assert {k: got[k] for k in ("inserted", "updated", "deleted")} == expected, (table, got)
        assert got["predicted_rows"] == inc.before[table][0], (table, got)


@pytest.mark.parametrize("combo", [("ROW", "MINIMAL"), ("STATEMENT", None)], ids=format_id)
def test_skip_the_drop_and_replay_to_the_end(combo, incidents, target, cli):
    """Everything except the disaster: the application's writes after it are applied too."""
    inc = incidents(*combo)
    res = cli(*restore_args(inc, target, "--skip", inc.disaster_gtid, "--stop-before", "end"))
    assert res.code == 0, res
    assert res.plan["stop"] is None, res.plan["stop"]
    skipped = res.plan["skips"]
    assert [(s["tx_file"], s["tx_pos"]) for s in skipped] == [(inc.disaster_file, inc.disaster_pos)], skipped
    assert "DROP DATABASE" in skipped[0]["statement"].upper(), skipped

    with target.connect() as conn:
        assert "other" not in databases(conn)
        got = checksums(conn, ["homepage", "wiki"])
        assert sorted(got) == sorted(inc.before), "restored table set differs"
        # homepage as before the disaster, except attendance which gained the app's rows
        for name, value in inc.before.items():
            if name.startswith("homepage.") and name != "homepage.attendance":
                assert got[name] == value, name
        assert got["wiki.pages"] == inc.after_wiki["wiki.pages"]
        assert got["wiki.page_log"] == inc.after_wiki["wiki.page_log"]
        assert got["homepage.attendance"][0] == inc.before["homepage.attendance"][0] + len(inc.after_attendance_ids)
        with conn.cursor() as cur:
            cur.execute("SELECT id, member_id, CAST(day AS CHAR) FROM homepage.attendance WHERE id >= 1001 ORDER BY id")
            assert cur.fetchall() == ((1001, 1, "2099-01-01"), (1002, 2, "2099-01-01"), (1003, 3, "2099-01-02"))


# -- each destructive event, on a small database of its own ---------------------------------------

DISASTERS = [
    # id, binlog format, default db of the session (None: no USE), the statement, reason must say
    ("delete-without-where-stmt", "MIXED", "shop", "DELETE FROM events", "DELETE"),
    ("delete-without-where-row", "ROW", None, "DELETE FROM shop.events", "DELETE"),
    ("delete-all-with-where-row", "ROW", "shop", "DELETE FROM events WHERE id > 0", "DELETE"),
    ("update-all-stmt", "STATEMENT", None, "UPDATE shop.events SET payload = 'x'", "UPDATE"),
    ("truncate", "MIXED", None, "TRUNCATE TABLE shop.events", "TRUNCATE"),
    ("truncate-row-use", "ROW", "shop", "TRUNCATE events", "TRUNCATE"),
    ("drop-table", "STATEMENT", "shop", "DROP TABLE events", "DROP TABLE"),
    ("drop-table-other-db", "ROW", "other", "DROP TABLE shop.events", "DROP TABLE"),
]


def _small_incident(disaster: tuple) -> IncidentSpec:
    _id, _fmt, use, statement, _word = disaster
    return IncidentSpec(
        databases=("shop",),
        schema=["CREATE DATABASE shop", "CREATE DATABASE other",
                "CREATE TABLE shop.events (id INT AUTO_INCREMENT PRIMARY KEY, kind VARCHAR(20), "
                "payload VARCHAR(100), at DATETIME DEFAULT CURRENT_TIMESTAMP)",
                "CREATE TABLE shop.keep (k INT PRIMARY KEY, v VARCHAR(20))",
                "CREATE TABLE other.t (x INT)",
                "INSERT INTO shop.events (kind, payload) VALUES " + ", ".join(
                    f"('seed', '주문 {i}')" for i in range(40)),
                "INSERT INTO shop.keep VALUES (1, 'a'), (2, 'b')"],
        traffic=["INSERT INTO shop.events (kind, payload) VALUES " + ", ".join(
                     f"('live', '이벤트 {i}')" for i in range(20)),
                 "UPDATE shop.events SET payload = CONCAT(payload, ' ✓') WHERE id % 3 = 0",
                 "DELETE FROM shop.events WHERE id IN (5, 6)",            # a small delete: not a disaster
                 "UPDATE shop.keep SET v = 'changed' WHERE k = 1",
                 "INSERT INTO other.t VALUES " + ", ".join(f"({i})" for i in range(20)),
                 "DELETE FROM other.t"],                                  # another db's mass delete
        disaster=[In(use, statement)],
        after=["INSERT INTO shop.keep VALUES (3, 'after')"])


@pytest.mark.parametrize("disaster", DISASTERS, ids=[d[0] for d in DISASTERS])
def test_auto_finds_the_destructive_event(disaster, source_factory, target, tmp_path, cli):
    source = source_factory(disaster[1], "MINIMAL" if disaster[1] == "ROW" else None)
    inc = _small_incident(disaster).build(source, tmp_path)

    res = cli(*restore_args(inc, target))
    assert res.code == 0, res
    stop = res.plan["stop"]
    assert stop is not None, res
    assert (stop["tx_file"], stop["tx_pos"]) == (inc.disaster_file, inc.disaster_pos), stop
    assert disaster[4] in stop["reason"].upper(), stop
    assert "events" in stop["reason"] + " " + stop["statement"], stop
    assert_restored(target, inc.before, dbs=("shop",), absent=("other",))
