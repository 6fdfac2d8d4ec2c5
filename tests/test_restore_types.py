"""The full incident restored exactly, in every binlog format and row-metadata setting.

Each restore is checked table by table with CHECKSUM TABLE against the state taken just before
the disaster; the table set must be identical and `other` must not exist on the target.
"""
from __future__ import annotations

import pytest

from tests.support.db import FORMATS, assert_restored, format_id, plan_args, restore_args


@pytest.mark.parametrize("combo", FORMATS, ids=format_id)
def test_incident_restored_exactly(combo, incidents, target, cli):
    inc = incidents(*combo)
    res = cli(*restore_args(inc, target))
    assert res.code == 0, res
    assert res.doc["ok"] is True, res

    stop = res.plan["stop"]
    assert stop is not None, res
    assert "DROP DATABASE" in stop["reason"].upper() or "DROP DATABASE" in stop["statement"].upper(), stop
    assert "homepage" in (stop["reason"] + " " + stop["statement"]), stop
    assert (stop["tx_file"], stop["tx_pos"]) == (inc.disaster_file, inc.disaster_pos), stop
    assert (stop["file"], stop["pos"]) == (inc.disaster_file, inc.disaster_event_pos), stop
    assert stop["gtid"] == inc.disaster_gtid, stop

    assert_restored(target, inc.before, inc.before_schema)

    # what the CLI reports having verified is what the target holds
    verified = res.doc["restore"]["verification"]["tables"]
    assert set(verified) == set(inc.before), verified
    for name, (rows, checksum) in inc.before.items():
        assert verified[name]["rows"] == rows, (name, verified[name])
        assert verified[name]["checksum"] == checksum, (name, verified[name])


@pytest.mark.parametrize("combo", [("ROW", "NO_LOG"), ("STATEMENT", None)], ids=format_id)
def test_plan_names_the_drop(combo, incidents, cli):
    """`plan` alone (no target) finds the same stop and writes nothing."""
    inc = incidents(*combo)
    res = cli(*plan_args(inc))
    assert res.code == 0, res
    assert res.doc["ok"] is True
    stop = res.plan["stop"]
    assert "DROP DATABASE" in stop["reason"].upper(), stop
    assert (stop["tx_file"], stop["tx_pos"]) == (inc.disaster_file, inc.disaster_pos), stop
    assert stop["gtid"] == inc.disaster_gtid, stop
    assert res.plan["transactions"] > 0
    assert set(res.plan["databases"]) == {"homepage", "wiki"}, res.plan["databases"]


def test_stop_before_explicit_gtid_and_filepos(incidents, target, cli):
    """An explicit stop at the DROP (GTID or FILE:POS) restores the same state as `auto`."""
    inc = incidents("ROW", "MINIMAL")
    res = cli(*restore_args(inc, target, "--stop-before", inc.disaster_gtid))
    assert res.code == 0, res
    assert res.plan["stop"]["tx_pos"] == inc.disaster_pos, res.plan["stop"]
    assert_restored(target, inc.before, inc.before_schema)

    # FILE:POS of the DROP's query event, and of its transaction's first (GTID) event: the
    # position SHOW MASTER STATUS gave just before it and mariadb-binlog prints as `# at N`
    for pos in (inc.disaster_event_pos, inc.disaster_pos):
        res = cli(*plan_args(inc, "--stop-before", f"{inc.disaster_file}:{pos}"))
        assert res.code == 0, (pos, res)
        stop = res.plan["stop"]
        assert (stop["tx_file"], stop["tx_pos"]) == (inc.disaster_file, inc.disaster_pos), stop


@pytest.mark.parametrize("which", ["gtid", "query-event", "tx-start"])
def test_skip_spec_forms(which, incidents, cli):
    """--skip accepts the DROP's GTID, or FILE:POS of any event of its transaction."""
    inc = incidents("ROW", "MINIMAL")
    spec = {"gtid": inc.disaster_gtid,
            "query-event": f"{inc.disaster_file}:{inc.disaster_event_pos}",
            "tx-start": f"{inc.disaster_file}:{inc.disaster_pos}"}[which]
    res = cli(*plan_args(inc, "--skip", spec, "--stop-before", "end"))
    assert res.code == 0, res
    assert res.plan["stop"] is None, res.plan["stop"]
    assert [(s["tx_file"], s["tx_pos"]) for s in res.plan["skips"]] == [(inc.disaster_file, inc.disaster_pos)], res.plan["skips"]
