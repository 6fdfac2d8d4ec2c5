"""Foreign keys with cascades (issue 10 §3), against real servers.

The server executes ON DELETE CASCADE / SET NULL itself and logs only the parent's rows. Before:
the plan predicted the children's counts from the binlog (wrong), called them exact, and a correct
restore exited 3; a DELETE that emptied a child through its parent was no candidate.
"""
from __future__ import annotations

import pytest

from tests.support.db import checksums, plan_args, restore_args
from tests.support.incident_factory import IncidentSpec, many

CASCADE_NOTE = "cascaded changes are not logged"


def _schema(cur, parents: int, per_parent: int) -> None:
    cur.execute("CREATE DATABASE shop")
    cur.execute("CREATE TABLE shop.parent (id INT PRIMARY KEY, name VARCHAR(20))")
    cur.execute("CREATE TABLE shop.child (id INT PRIMARY KEY, pid INT NOT NULL, "
                "CONSTRAINT fk_child FOREIGN KEY (pid) REFERENCES parent (id) ON DELETE CASCADE) ENGINE=InnoDB")
    cur.execute("CREATE TABLE shop.grandchild (id INT PRIMARY KEY, cid INT NOT NULL, "
                "FOREIGN KEY (cid) REFERENCES shop.child (id) ON DELETE CASCADE ON UPDATE CASCADE)")
    cur.execute("CREATE TABLE shop.nulled (id INT PRIMARY KEY, pid INT NULL, "
                "FOREIGN KEY (pid) REFERENCES parent (id) ON DELETE SET NULL)")
    cur.execute("CREATE TABLE shop.plain (id INT PRIMARY KEY, v INT)")
    cur.executemany("INSERT INTO shop.parent VALUES (%s, %s)", [(i, f"p{i}") for i in range(1, parents + 1)])
    kids = [(p * 100 + k, p) for p in range(1, parents + 1) for k in range(per_parent)]
    cur.executemany("INSERT INTO shop.child VALUES (%s, %s)", kids)
    cur.executemany("INSERT INTO shop.grandchild VALUES (%s, %s)", [(c, c) for c, _ in kids])
    cur.executemany("INSERT INTO shop.nulled VALUES (%s, %s)", [(i, i) for i in range(1, parents + 1)])
    cur.executemany("INSERT INTO shop.plain VALUES (%s, %s)", [(i, i) for i in range(1, 31)])


@pytest.fixture(scope="module", params=["ROW", "MIXED"])
def some_parents(request, tmp_path_factory):
    """20 parents with 3 children each (and a grandchild each), a SET NULL child; after the dump a
    table created with a cascading key, one given one by ALTER TABLE, then a DELETE of 6 parents
    (below the mass threshold), more writes, and DROP DATABASE."""
    fmt = request.param
    inc = IncidentSpec(
        databases=("shop",),
        schema=[lambda cur: _schema(cur, 20, 3)],
        traffic=["CREATE TABLE shop.notes (id INT PRIMARY KEY, pid INT, "
                 "FOREIGN KEY (pid) REFERENCES parent (id) ON DELETE CASCADE)",
                 "CREATE TABLE shop.tags (id INT PRIMARY KEY, pid INT)",
                 "ALTER TABLE shop.tags ADD CONSTRAINT fk_tags FOREIGN KEY (pid) REFERENCES shop.parent (id) "
                 "ON DELETE CASCADE",
                 many("INSERT INTO shop.notes VALUES (%s, %s)", [(i, i) for i in range(1, 21)]),
                 many("INSERT INTO shop.tags VALUES (%s, %s)", [(i, i % 20 + 1) for i in range(1, 41)]),
                 "DELETE FROM shop.parent WHERE id <= 6",
                 "INSERT INTO shop.child VALUES (9001, 20)",
                 "UPDATE shop.plain SET v = v + 1 WHERE id = 3"],
        disaster=["DROP DATABASE shop"],
    ).build_on_new_source(tmp_path_factory.mktemp(f"fk-{fmt}"), fmt)
    return {"fmt": fmt, "inc": inc}


@pytest.mark.mysql
def test_cascaded_children_are_inexact_and_the_delete_is_a_candidate(some_parents, cli):
    res = cli(*plan_args(some_parents["inc"]))
    assert res.code == 0, res
    tables = res.plan["tables"]
    for name in ("shop.child", "shop.grandchild", "shop.notes", "shop.tags"):
        assert tables[name]["exact"] is False and tables[name]["predicted_rows"] is None, (name, tables[name])
        if some_parents["fmt"] == "MIXED" and name == "shop.child":
            # An INSERT logged as a statement after the cascade: the later reason is the one noted.
            assert "statement-format DML" in tables[name]["note"], tables[name]
            continue
        assert CASCADE_NOTE in tables[name]["note"] and "shop.parent" in tables[name]["note"], tables[name]
    # SET NULL keeps the rows: the count stays a prediction, the note says what the binlog lacks.
    assert tables["shop.nulled"]["exact"] is True and tables["shop.nulled"]["predicted_rows"] == 20
    assert CASCADE_NOTE in tables["shop.nulled"]["note"]
    if some_parents["fmt"] == "ROW":
        assert tables["shop.parent"]["predicted_rows"] == 14 and tables["shop.plain"]["predicted_rows"] == 30
    assert all(t["predicted_rows"] is None or t["predicted_rows"] >= 0 for t in tables.values()), tables
    cands = res.plan["candidates"]
    delete = [c for c in cands if c.get("table") == "parent"]
    assert len(delete) == 1 and delete[0]["severity"] == "suspect", cands
    reason = delete[0]["reason"]
    assert "cascades to child tables shop.child, shop.grandchild, shop.notes, shop.tags" in reason, reason
    assert "their deleted rows are not in the binlog" in reason and "shop.nulled" in reason, reason
    chosen = [c for c in cands if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["reason"].startswith("DROP DATABASE"), cands


def test_restore_applies_the_cascades_and_verifies(some_parents, cli, target):
    """The replay sends the parent's deletes with foreign_key_checks on: the target cascades them."""
    res = cli(*restore_args(some_parents["inc"], target))
    assert res.code == 0 and res.doc["ok"], res
    verified = res.doc["restore"]["verification"]
    assert verified["ok"] and not verified["problems"], verified
    assert CASCADE_NOTE in verified["tables"]["shop.grandchild"]["note"], verified["tables"]["shop.grandchild"]
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == some_parents["inc"].before


@pytest.fixture(scope="module")
def cascade_disaster(tmp_path_factory):
    """5 parents with 12 children each: `DELETE FROM parent` removes 5 rows (below the mass
    threshold of 10) and, by cascade, all 60 children, none of them in the binlog."""
    return IncidentSpec(
        databases=("shop",),
        schema=[lambda cur: _schema(cur, 5, 12)],
        traffic=["INSERT INTO shop.parent VALUES (6, 'p6')",
                 "INSERT INTO shop.child VALUES (601, 6)",
                 "DELETE FROM shop.parent WHERE id = 2"],     # routine: 1 of 6 parents
        disaster=["DELETE FROM shop.parent"],
        after=["INSERT INTO shop.plain VALUES (99, 99)"],
    ).build_on_new_source(tmp_path_factory.mktemp("fk-mass"))


def test_mass_delete_by_cascade_is_certain_and_auto_stops_before_it(cascade_disaster, cli, target):
    res = cli(*restore_args(cascade_disaster, target))
    assert res.code == 0 and res.doc["ok"], res
    stop = res.plan["stop"]
    assert stop["reason"].startswith("mass DELETE by cascade: DELETE of 5 of about 5 rows of shop.parent"), stop
    assert "shop.child (about 61 rows)" in stop["reason"] and "shop.grandchild" in stop["reason"], stop
    cands = res.plan["candidates"]
    assert [c["severity"] for c in cands if c.get("table") == "parent"] == ["certain"], cands  # not the routine one
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == cascade_disaster.before
