"""The engine's use cases (restore/api.py) where no server is needed: the typed stage evidence a prod
restore takes, the refusals before anything is touched, the undo's refusal of an event that is not one
transaction, and the CLI's prod gate refusing without a second approver (fast tier)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from handlers.jobstore import JobStore
from restore import api
from restore.errors import PlanError, RestoreError

STAGE_RESULT = {
    "restore": {"verification": {"tables": {"club.posts": {"rows": 26, "checksum": 3983111745},
                                            "club.log": {"rows": 0, "checksum": None}}},
                "verdicts": [{"where": "binlog.000001:900", "severity": "suspect", "detail": "..."}]},
    "plan_id": "p1",
}


def test_stage_evidence_from_a_stage_job_result_new_and_old():
    new = dict(STAGE_RESULT, evidence=api.StageEvidence("p1", {"club.posts": 3983111745}, {"b:4": "certain"}).to_dict())
    got = api.StageEvidence.from_job_result(new, plan_id="p1", stage_job="R3")
    assert got == api.StageEvidence("p1", {"club.posts": 3983111745}, {"b:4": "certain"}, "R3")
    # a stage job a worker stored before the evidence was: read from its restore report
    old = api.StageEvidence.from_job_result(STAGE_RESULT, plan_id="p1", stage_job="R2")
    assert old == api.StageEvidence("p1", {"club.posts": 3983111745, "club.log": None},
                                    {"binlog.000001:900": "suspect"}, "R2")
    assert api.StageEvidence.from_dict(old.to_dict()) == old


def _planned(plan_id: str) -> api.Planned:
    return api.Planned(SimpleNamespace(plan_id=plan_id), [], None)


def test_prod_refuses_evidence_of_another_plan_or_without_tables():
    target = api.ProdTarget(api.Dsn.parse("mysql://root@127.0.0.1:1"))   # nothing listens: never reached
    with pytest.raises(PlanError) as err:
        api.prod(_planned("p2"), api.StageEvidence("p1", {"club.posts": 1}), target, job_tag="r9")
    assert "the plan changed since stage verified it (p1 → p2)" in str(err.value)
    assert "/restore stage" in err.value.hint
    with pytest.raises(PlanError) as err:
        api.prod(_planned("p1"), api.StageEvidence("p1", {}, stage_job="R4"), target, job_tag="r9")
    assert "stage run R4 of plan p1 recorded no verified tables" in str(err.value)


@pytest.mark.parametrize("event, words", [
    ("0-1-5,1-2-3", ["names a set of transactions"]),
    ("yesterday", ["is not a SPEC"]),
])
def test_undo_refuses_an_event_that_is_not_one_transaction_before_connecting(tmp_path, event, words):
    # port 1: nothing listens there, so a refusal naming the event proves it came before any connection
    with pytest.raises(RestoreError) as err:
        api.undo(api.UndoInput(tmp_path, api.Dsn.parse("mysql://root@127.0.0.1:1"), event))
    assert all(w in str(err.value) for w in words), str(err.value)
    assert "cannot connect" not in str(err.value) and err.value.hint


def _config(tmp_path, prod: bool = True) -> str:
    path = tmp_path / "restore-bot.toml"
    path.write_text(f"""
[source]
snapshots = ["{tmp_path / 'club.sql'}"]
binlogs = "{tmp_path / 'binlogs'}"
{'[targets.prod]' if prod else ''}
{'dsn = "mysql://root@127.0.0.1:1"' if prod else ''}
[store]
path = "{tmp_path / 'jobs.sqlite3'}"
""")
    return str(path)


def test_cli_prod_refuses_without_a_second_approver(tmp_path, cli):
    config = _config(tmp_path)
    missing = cli("prod", "--config", config, "--user", "lee")
    assert missing.code == 2 and "--approved-by" in missing.doc["error"]["message"], missing
    assert f"restore-bot prod --config {config} --user lee --approved-by NAME" in missing.doc["error"]["hint"]
    itself = cli("prod", "--config", config, "--user", "lee", "--approved-by", "lee")
    assert itself.code == 2 and "self-approval: lee requested it" in itself.doc["error"]["message"], itself
    store = JobStore(tmp_path / "jobs.sqlite3")
    assert [(e["actor"], e["action"]) for e in store.audit_log(5)] == [("lee", "refused prod")] * 2
    assert store.jobs() == []


def test_cli_prod_refuses_without_a_prod_target(tmp_path, cli):
    config = _config(tmp_path, prod=False)
    res = cli("prod", "--config", config, "--user", "lee", "--approved-by", "kim")
    assert res.code == 2 and "no prod target" in res.doc["error"]["message"], res
    assert "[targets.prod]" in res.doc["error"]["hint"]
    assert JobStore(tmp_path / "jobs.sqlite3").jobs() == []


def test_cli_prod_refuses_while_another_prod_job_is_active(tmp_path, cli):
    config = _config(tmp_path)
    store = JobStore(tmp_path / "jobs.sqlite3")
    waiting = store.create("prod", "prod", "park", state="awaiting_approval", args={"stop_before": "auto", "skips": []})
    res = cli("prod", "--config", config, "--user", "lee", "--approved-by", "kim")
    assert res.code == 2 and "prod was refused" in res.doc["error"]["message"], res
    assert f"is busy with job {waiting.id}" in res.err, res.err   # the handler's answer, as in chat
    assert [j.id for j in store.jobs(kind="prod")] == [waiting.id]
