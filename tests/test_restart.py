"""`restore --restart`: start a plan over from the dumps instead of resuming its checkpoint.

Running the same command again resumes (the crash contract, tests/test_crash.py); a run that failed
because the target diverged would fail the same way on every resume, so the hints name --restart.
"""
from __future__ import annotations

import pytest

from restore import api
from restore.errors import ApplyError
from restore.hooks import NullHooks
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, databases, target_url
from tests.support.incident_factory import IncidentSpec, Mark, each

# shop.items: rows 1-2 in the dump, rows 3..6 in the binlog, then DROP DATABASE; "early" marks the
# binlog position one transaction before the dump's.
SHOP = IncidentSpec(
    databases=("shop",),
    schema=["CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(30))",
            "INSERT INTO shop.items VALUES (1, 'first')", Mark("early"), "INSERT INTO shop.items VALUES (2, 'second')"],
    traffic=[each("INSERT INTO shop.items VALUES (%s, %s)", [(i, f"row {i}") for i in range(3, 7)])],
    disaster=["DROP DATABASE shop"])


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    work = tmp_path_factory.mktemp("restart")
    inc = SHOP.build_on_new_source(work)
    # The same dump with a position one transaction too early: its replay collides with row 2.
    body = inc.snapshot.read_text()
    real = int(body.split("MASTER_LOG_POS=")[1].split(";")[0])
    off = work / "shop-off.sql"
    off.write_text(body.replace(f"MASTER_LOG_POS={real}", f"MASTER_LOG_POS={inc.marks['early'][1]}"))
    return {"snap": inc.snapshot, "off": off, "binlogs": inc.binlog_dir, "before": inc.before}


def _args(shop, target, *extra, snap=None):
    return ["restore", "--snapshot", snap or shop["snap"], "--binlogs", shop["binlogs"],
            "--target", target_url(target), "--yes", *extra]


class _AppWritesDuringReplay(NullHooks):
    """The application, still connected to the target, writes a row the binlog is about to insert."""

    def __init__(self, target: Sandbox) -> None:
        self.target = target

    def phase_started(self, phase: str, total) -> None:
        if phase == "replay":
            with self.target.connect() as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO shop.items VALUES (4, 'the app')")


def test_restart_starts_over_where_resuming_repeats_the_failure(shop, target, cli):
    snapshots = api.read_snapshots([str(shop["snap"])])
    source = api.open_binlogs(str(shop["binlogs"]))
    plan = api.make_plan(snapshots, source)
    with pytest.raises(ApplyError) as err:
        api.restore(plan, snapshots, source, target.dsn, hooks=_AppWritesDuringReplay(target))
    assert "shop.items" in str(err.value) and "'4'" in str(err.value)
    assert "--restart" in err.value.hint and "--existing drop" not in err.value.hint, err.value.hint

    # What the old hint said: --existing drop. It resumes the same plan and fails the same way.
    again = cli(*_args(shop, target, "--existing", "drop"))
    assert again.code == 2 and again.plan["plan_id"] == plan.plan_id, again
    assert "'4'" in again.error["message"] and "--restart" in again.error["hint"], again

    restarted = cli(*_args(shop, target, "--restart"))
    assert restarted.code == 0 and restarted.doc["restore"]["resumed"] is False, restarted
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == shop["before"]
        assert "_restore_bot" in databases(conn)     # the new run's own checkpoint

    resumed = cli(*_args(shop, target))   # the crash contract is unchanged: same command, same result
    assert resumed.code == 0 and resumed.doc["restore"]["resumed"] is True, resumed
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == shop["before"]


def test_restart_abandons_another_plans_unfinished_restore(shop, target, cli):
    failed = cli(*_args(shop, target, snap=shop["off"]))
    assert failed.code == 2 and "duplicate" in failed.error["message"].lower(), failed

    fixed = cli(*_args(shop, target))      # the right dump: another plan
    assert fixed.code == 2 and "unfinished restore of another plan" in fixed.error["message"], fixed
    assert "--restart" in fixed.error["hint"], fixed

    done = cli(*_args(shop, target, "--restart"))
    assert done.code == 0 and done.doc["ok"], done
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == shop["before"]


def test_restart_never_drops_a_finished_restore_behind_existing(shop, target, cli):
    assert cli(*_args(shop, target)).code == 0
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO shop.items VALUES (100, 'written after the restore')")
        after = checksums(conn, ["shop"])
    res = cli(*_args(shop, target, "--restart"))     # --existing refuse (the default) still decides
    assert res.code == 2 and "already holds shop" in res.error["message"], res
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == after
    # --existing drop deletes no row restore-bot did not write: refused, nothing touched.
    res = cli(*_args(shop, target, "--existing", "drop"))
    assert res.code == 2 and "shop (items) hold rows" in res.error["message"], res
    assert "keep-aside" in res.error["hint"], res
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == after
    res = cli(*_args(shop, target, "--existing", "keep-aside"))   # its checkpoint was forgotten: a fresh run
    assert res.code == 0 and res.doc["restore"]["resumed"] is False, res
    aside = res.doc["restore"]["kept_aside"]["shop"]
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == shop["before"]
        assert checksums(conn, [aside]) == {f"{aside}.items": after["shop.items"]}


@pytest.mark.parametrize("jobs", [1, 2])
def test_load_jobs_from_the_command_line_load_the_dump_exactly(shop, target, cli, jobs):
    done = cli(*_args(shop, target, "--restart", "--load-jobs", str(jobs)))
    assert done.code == 0, done
    load = next(p for p in done.doc["restore"]["phases"] if p["phase"] == "load")
    assert load["load_jobs"] == [jobs], load
    with target.connect() as conn:
        assert checksums(conn, ["shop"]) == shop["before"]
