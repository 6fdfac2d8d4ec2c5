"""Two dumps at different positions, dumps without coordinates, and what is already on the target.

The incident's homepage and wiki dumps were taken at different moments with writes to both
databases (also one transaction touching both) in between: each database must start at its own
dump's coordinates.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.db import assert_restored, checksums, databases, dump_coordinates, plan_args, restore_args
from tests.support.incident_factory import IncidentSpec, Mark

FORMAT = ("ROW", "MINIMAL")


def test_each_database_starts_at_its_own_dump(incidents, target, cli):
    inc = incidents(*FORMAT)
    home = dump_coordinates(inc.homepage_dump)
    wiki = dump_coordinates(inc.wiki_dump)
    assert home[:2] == inc.homepage_coords[:2] and wiki[:2] == inc.wiki_coords[:2]
    assert home[:2] != wiki[:2]

    res = cli(*plan_args(inc))
    assert res.code == 0, res
    starts = res.plan["databases"]
    assert (starts["homepage"]["file"], starts["homepage"]["pos"]) == home[:2], starts
    assert (starts["wiki"]["file"], starts["wiki"]["pos"]) == wiki[:2], starts
    for db, coords in (("homepage", home), ("wiki", wiki)):
        if starts[db].get("gtid"):
            assert starts[db]["gtid"] == coords[2], (db, starts[db], coords)
        assert starts[db]["source"], starts[db]

    res = cli(*restore_args(inc, target))
    assert res.code == 0, res
    assert_restored(target, inc.before, inc.before_schema)


def test_dump_without_coordinates_needs_start(incidents, target, cli):
    inc = incidents(*FORMAT)
    snaps = [inc.homepage_nocoord_dump, inc.wiki_dump]

    res = cli(*plan_args(inc, snapshots=snaps))
    assert res.code == 2, res
    assert res.doc["ok"] is False
    err = res.error
    text = " ".join(str(err.get(k, "")) for k in ("message", "where", "hint"))
    assert Path(inc.homepage_nocoord_dump).name in text, err
    assert "--start" in text, err

    res = cli(*restore_args(inc, target, snapshots=snaps))
    assert res.code == 2, res
    with target.connect() as conn:
        assert "homepage" not in databases(conn), "nothing may be written without a start"

    file, pos, _ = inc.homepage_coords
    res = cli(*restore_args(inc, target, "--start", f"{file}:{pos}", snapshots=snaps))
    assert res.code == 0, res
    starts = res.plan["databases"]
    assert (starts["homepage"]["file"], starts["homepage"]["pos"]) == (file, pos), starts
    assert (starts["wiki"]["file"], starts["wiki"]["pos"]) == inc.wiki_coords[:2], starts
    assert_restored(target, inc.before, inc.before_schema)


def _occupy(target) -> dict:
    """Put an older `homepage` on the target, as a production server would have."""
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE homepage")
        cur.execute("CREATE TABLE homepage.attendance (id INT PRIMARY KEY, member_id INT, day DATE)")
        cur.execute("INSERT INTO homepage.attendance VALUES (1, 7, '2023-08-19'), (2, 8, '2023-08-19')")
        return checksums(conn, ["homepage"])


def test_target_holding_the_database_is_refused(incidents, target, cli):
    inc = incidents(*FORMAT)
    old = _occupy(target)
    res = cli(*restore_args(inc, target))
    assert res.code != 0, res
    assert res.doc["ok"] is False
    assert "homepage" in res.error.get("message", ""), res.error
    assert "--existing" in res.error.get("hint", ""), res.error
    with target.connect() as conn:
        assert checksums(conn, ["homepage"]) == old, "a refused restore must not touch the target"
        assert "wiki" not in databases(conn)


def test_existing_keep_aside_keeps_the_old_data(incidents, target, cli):
    inc = incidents(*FORMAT)
    old = _occupy(target)
    res = cli(*restore_args(inc, target, "--existing", "keep-aside"))
    assert res.code == 0, res
    assert_restored(target, inc.before, inc.before_schema)
    with target.connect() as conn:
        aside = sorted(db for db in databases(conn) if db.startswith("homepage_before_restore_"))
        assert len(aside) == 1, databases(conn)
        moved = checksums(conn, aside)
    assert moved == {f"{aside[0]}.attendance": old["homepage.attendance"]}
    assert res.doc["restore"]["kept_aside"] == {"homepage": aside[0]}, res.doc["restore"]


def test_target_sandbox(incidents, cli):
    inc = incidents(*FORMAT)
    res = cli(*restore_args(inc, "sandbox"))
    assert res.code == 0, res
    assert res.doc["ok"] is True
    verified = res.doc["restore"]["verification"]["tables"]
    assert {n: (t["rows"], t["checksum"]) for n, t in verified.items()} == inc.before


@pytest.mark.parametrize("fmt", ["ROW", "STATEMENT"])
def test_start_older_than_the_dump_names_the_conflict(fmt, source_factory, target, tmp_path, cli):
    """A start position older than the dump's data: the duplicate is named with table, key and
    the binlog position of the event that collided, whatever the binlog format."""
    inc = IncidentSpec(
        databases=("shop",),
        schema=["CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY, v INT)",
                "INSERT INTO shop.t VALUES (1, 1)", Mark("start"),
                "INSERT INTO shop.t VALUES (2, 2)", Mark("end"),     # already in the dump taken below
                "INSERT INTO shop.t VALUES (3, 3)"],
        coordinates=False,
    ).build(source_factory(fmt), tmp_path)
    (file, start), (_, end) = inc.marks["start"], inc.marks["end"]

    res = cli(*restore_args(inc, target, "--start", f"{file}:{start}", "--stop-before", "end"))
    assert res.code == 2, res
    err = res.error
    assert "shop.t" in err["message"], err
    assert "PRIMARY" in err["message"] and "2" in err["message"], err
    where_file, _, where_pos = err["where"].partition(":")
    assert where_file == file and start <= int(where_pos) < end, err
    assert "--existing" in err["hint"] or "coordinates" in err["hint"], err
