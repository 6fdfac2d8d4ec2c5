"""The platform-neutral `/restore` handler behind the dispatcher: access, the prod gate, approvals, audit."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from handlers.alerts import AlertStore, Oncall
from handlers.alerts import alert_buttons
from handlers.commands import (
    ALERT_ACK,
    ALERT_EXPECTED,
    ALERT_INCIDENT,
    REJECT_ACTION,
    SKIP_ACTION,
    STOP_ACTION,
    UNDO_APPROVE_ACTION,
    CommandError,
    parse,
)
from handlers.dispatcher import Dispatcher
from handlers.jobstore import JobStore
from handlers.oncall import OncallHandler
from handlers.restore import APPROVAL_MINUTES, RestoreHandler
from restore.live.watcher import Alert
from tests.support.handler_doubles import Access, Recorder


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(tmp_path):
    clock = Clock()
    store = JobStore(tmp_path / "jobs.sqlite3", clock=clock)
    alerts = AlertStore(str(tmp_path / "jobs.sqlite3"), "mysql://src")
    settings = SimpleNamespace(oncall=SimpleNamespace(rotation=("UKIM", "ULEE"), rotation_start=None, fallback=None))
    app = Dispatcher(store, Access(), [RestoreHandler(store, Access(), channel="CINC", has_prod=True,
                                                      undo_targets={"stage": False, "prod": True}),
                                       OncallHandler(Oncall(settings, alerts), alerts, store)])

    def answered(rec: Recorder):
        return (store.get(rec.job.id) if rec.job else None), rec

    def run(text: str, user: str = "UOPS1"):
        """`text` as typed by `user`: (the job it started or was about, as it is now, and the answers)."""
        rec = Recorder()
        app.text(text, user, "slack", rec)
        return answered(rec)

    def click(action_id: str, value: str, user: str = "UOPS1"):
        """A click on a button with this action id and value, like `run`."""
        rec = Recorder()
        app.action(action_id, value, user, "slack", rec)
        return answered(rec)

    run.click, run.alerts = click, alerts
    return store, run, clock


def _stage_succeeded(store: JobStore, job_id: str, plan_id: str = "p1") -> None:
    store.transition(job_id, ("queued",), "running")
    store.transition(job_id, ("running",), "succeeded", plan_id=plan_id, result={"summary": "ok"})


def test_help_and_usage():
    assert parse("", "U").name == "help"
    assert parse("/restore stage --stop-before 0-1-5", "U").stop_before == "0-1-5"
    with pytest.raises(CommandError):
        parse("frobnicate", "U")
    with pytest.raises(CommandError) as err:
        parse("plan --stop-before tomorrowish", "U")
    assert "SPEC" in str(err.value)
    with pytest.raises(CommandError):
        parse("plan --bogus", "U")


def test_stranger_is_refused_and_audited(env):
    store, run, _ = env
    job, rec = run("stage", user="USTRANGER")
    assert job is None and "not on restore-bot's operator list" in rec.private[0]
    assert store.jobs() == []
    actions = [e["action"] for e in store.audit_log()]
    assert "refused stage" in actions


def test_stage_queues_a_job_and_acknowledges_with_its_id(env):
    store, run, _ = env
    job, rec = run("stage --stop-before end")
    assert job.state == "queued" and job.args == {"stop_before": "end", "skips": []}
    assert job.id in rec.private[0]
    again, rec2 = run("stage")
    assert again is None and "busy" in rec2.private[0]


def test_prod_needs_a_verified_stage_of_the_same_plan(env):
    store, run, _ = env
    job, rec = run("prod")
    assert job is None and "stage" in rec.private[0].lower()
    stage, _ = run("stage --stop-before end")
    _stage_succeeded(store, stage.id)
    job, rec = run("prod")  # different args (auto) than the staged plan (end)
    assert job is None
    job, rec = run("prod --stop-before end")
    assert job.state == "awaiting_approval" and job.stage_job == stage.id and job.plan_id == "p1"
    assert rec.approvals and rec.approvals[0][0] == job.id


def test_stage_restart_is_passed_on_and_prod_still_finds_that_stage(env):
    """`/restore stage --restart` (what a failed resume's hint names) verifies the same plan."""
    store, run, _ = env
    with pytest.raises(CommandError):
        parse("prod --restart", "U")   # prod always rebuilds from scratch in a sandbox
    stage, _ = run("stage --restart")
    assert stage.args == {"stop_before": "auto", "skips": [], "restart": True}
    assert any("--restart" in e["detail"] for e in store.audit_log() if e.get("detail")), store.audit_log()
    _stage_succeeded(store, stage.id)
    job, _ = run("prod")
    assert job is not None and job.stage_job == stage.id


def test_self_approval_refused_and_second_approver_accepted(env):
    store, run, _ = env
    stage, _ = run("stage")
    _stage_succeeded(store, stage.id)
    prod, _ = run("prod", user="UOPS2")
    _, rec = run(f"approve {prod.id}", user="UOPS2")
    assert "different" in rec.private[0] and store.get(prod.id).state == "awaiting_approval"
    _, rec = run(f"approve {prod.id}", user="UOPS1")  # an operator, not an approver
    assert "only approvers" in rec.private[0]
    job, rec = run(f"approve {prod.id}", user="UAPP1")
    assert job.state == "queued" and job.approver == "UAPP1" and "Approved" in rec.public[0]
    actions = [e["action"] for e in store.audit_log()]
    assert {"refused approve", "approved prod", "requested prod"} <= set(actions)


def _previewed(store: JobStore, job_id: str) -> None:
    """What the worker does with an undo job's dry run: its preview on the card, waiting for approval."""
    store.transition(job_id, ("queued",), "running")
    store.transition(job_id, ("running",), "awaiting_approval", result={"undo": {"preview_id": "p9"}})


def test_undo_on_stage_is_approved_by_any_operator_on_prod_by_a_second_approver(env):
    store, run, clock = env
    job, rec = run("undo 0-1-5")
    assert (job.kind, job.target, job.state, job.args) == ("undo", "stage", "queued", {"event": "0-1-5", "guarded": False})
    assert job.id in rec.private[0]
    busy, rec = run("undo 0-1-6")
    assert busy is None and "busy" in rec.private[0]
    _previewed(store, job.id)
    approved, rec = run.click(UNDO_APPROVE_ACTION, job.id, "UOPS1")   # its requester, an operator: stage needs no second
    assert approved.state == "queued" and approved.approver == "UOPS1" and "applies preview `p9`" in rec.public[0]

    prod, _ = run("undo 0-1-7 prod", user="UOPS2")
    assert prod.args == {"event": "0-1-7", "guarded": True}
    _previewed(store, prod.id)
    _, rec = run.click(UNDO_APPROVE_ACTION, prod.id, "UOPS2")
    assert "different" in rec.private[0]
    _, rec = run(f"undo approve {prod.id}", user="UOPS1")      # an operator, not an approver
    assert "only approvers may approve an undo" in rec.private[0] and store.get(prod.id).state == "awaiting_approval"
    clock.now += APPROVAL_MINUTES * 60 + 1
    _, rec = run.click(UNDO_APPROVE_ACTION, prod.id, "UAPP1")
    assert "expired" in rec.private[0] and store.get(prod.id).state == "expired"

    again, _ = run("undo 0-1-7 prod", user="UOPS2")
    _previewed(store, again.id)
    job, rec = run.click(UNDO_APPROVE_ACTION, again.id, "UAPP1")
    assert job.state == "queued" and job.approver == "UAPP1"
    actions = [(e["actor"], e["action"]) for e in store.audit_log(50)]
    assert {("UOPS2", "refused approve"), ("UOPS1", "refused approve"), ("UAPP1", "approved undo"),
            ("UOPS1", "queued undo")} <= set(actions)


def test_an_undo_approval_window_starts_when_its_preview_is_ready(env):
    store, run, clock = env
    job, _ = run("undo 0-1-5")
    store.transition(job.id, ("queued",), "running")
    clock.now += APPROVAL_MINUTES * 60   # a long preview
    store.transition(job.id, ("running",), "awaiting_approval",
                     result={"undo": {"preview_id": "p9"}, "waiting_since": clock.now})
    clock.now += APPROVAL_MINUTES * 60 - 1
    approved, _ = run.click(UNDO_APPROVE_ACTION, job.id, "UOPS1")
    assert approved.state == "queued"


def test_undo_reject_and_what_cannot_be_undone_from_chat(env):
    store, run, _ = env
    job, _ = run("undo binlog.000002:4711 prod")
    _previewed(store, job.id)
    _, rec = run.click(REJECT_ACTION, job.id, "UAPP1")
    assert store.get(job.id).state == "rejected" and "writes nothing" in rec.public[0]
    assert any("Rejected by <@UAPP1>" in e for e in store.events(job.id))
    _, rec = run(f"undo approve {job.id}", user="UAPP1")
    assert "not waiting for approval" in rec.private[0]
    for text, says in (("undo DROP", "undo takes the transaction's GTID"), ("undo 0-1-5 dev", "stage or prod"),
                       ("undo end", "does not take end"), ("undo 0-1-5 prod", "operator list")):
        _, rec = run(text, user="USTRANGER" if "operator" in says else "UOPS1")
        assert says in rec.private[0], (text, rec.private)


def test_undo_this_is_on_certain_row_event_dml_alerts_only():
    def alert(reason: str, severity: str = "certain") -> Alert:
        return Alert(key="k", reason=reason, statement="", database="s", table="t", rows=12, file="b.000001",
                     pos=400, tx_file="b.000001", tx_pos=300, gtid=None, server_time=0, thread_id=None,
                     detected_at=0.0, severity=severity)
    undo = {b["action_id"]: b["value"] for b in alert_buttons(alert("mass DELETE on s.t: 12 of about 12 rows"))}
    assert undo["alert_undo"] == "b.000001:300"
    for no in (alert("mass UPDATE on s.t: 12 of about 12 rows", "suspect"), alert("DELETE without WHERE on s.t: every row"),
               alert("DROP TABLE s.t")):
        assert "alert_undo" not in {b["action_id"] for b in alert_buttons(no)}, no.reason


def test_approval_expires_after_fifteen_minutes(env):
    store, run, clock = env
    stage, _ = run("stage")
    _stage_succeeded(store, stage.id)
    prod, _ = run("prod")
    clock.now += APPROVAL_MINUTES * 60 + 1
    job, rec = run(f"approve {prod.id}", user="UAPP1")
    assert job is None and "expired" in rec.private[0]
    assert store.get(prod.id).state == "expired"


def test_abort_and_history(env):
    store, run, _ = env
    stage, _ = run("stage")
    job, rec = run("abort")
    assert job.state == "aborted" and "Abort requested" in rec.public[0]
    store.create("stage", "stage", "UOPS1", state="running")
    running, _ = run("abort")
    assert running.abort_requested and running.state == "running"
    _, rec = run("history")
    assert "abort" in rec.private[0] and "UOPS1" in rec.private[0]


def test_saved_choice_and_expected_events_decide_what_commands_do_not_type(env):
    """Issue 10: a plan card's button or an alert's *This is the incident* saves the operators'
    choice; plan, stage and prod that type no stop or skip use it (and say so); typed ones are
    decided by what they type; events marked Expected go with every job; the prod gate compares all of it."""
    store, run, _ = env
    click, alerts = run.click, run.alerts
    card = store.create("plan", "-", "UOPS1", args={"stop_before": "auto", "skips": []})

    def value(job, spec: str, where: str = "", chosen: bool = False) -> str:   # as the card's buttons carry it
        return json.dumps({"job": job.id, "spec": spec, "where": where, "chosen": chosen})
    job, rec = click(STOP_ACTION, value(card, "0-1-40"), "USTRANGER")
    assert job is None and store.choice() is None and "operator list" in rec.private[0]
    chosen, rec = click(STOP_ACTION, value(card, "0-1-40", "binlog.000001:900"))
    assert chosen.args == {"stop_before": "0-1-40", "skips": []} and chosen.id != card.id
    assert "chose: stop before binlog.000001:900" in rec.public[0] and "`0-1-40`" in rec.public[0]
    assert f"job *{chosen.id}* queued" in rec.private[0]
    skipped, _ = click(SKIP_ACTION, value(chosen, "0-1-7"), "UOPS2")
    assert skipped.args == {"stop_before": "0-1-40", "skips": ["0-1-7"]}
    assert click(SKIP_ACTION, value(skipped, "0-1-40", chosen=True), "UOPS2")[0].args == \
        {"stop_before": "auto", "skips": ["0-1-7", "0-1-40"]}   # skipping the stop: the bot finds the next
    click(STOP_ACTION, value(skipped, "0-1-7"), "UOPS2")   # stopping at a skipped one: no longer skipped
    assert store.choice()["stop"] == "0-1-7" and store.choice()["skips"] == []
    assert "no job R99" in click(STOP_ACTION, json.dumps({"job": "R99", "spec": "0-1-7"}))[1].private[0]
    assert "unreadable value" in click(SKIP_ACTION, "{not json")[1].private[0]

    incident = _posted_alert(alerts, 4751, "binlog.000002", None, "DROP TABLE club.posts")
    expected = _posted_alert(alerts, 340, "binlog.000001", "0-1-3", "UPDATE without WHERE")
    _, rec = click(ALERT_INCIDENT, incident.key)
    assert rec.threads == [(("CINC", "1.4751"), rec.public[0])] and "`binlog.000002:4711`" in rec.public[0]
    assert store.choice()["stop"] == "binlog.000002:4711" and alerts.get(incident.key)["marked"] == "incident"
    _, rec = click(ALERT_EXPECTED, expected.key, "USTRANGER")   # not an operator: nothing recorded
    assert "operator list" in rec.private[0] and store.expected() == [] and not rec.public
    _, rec = click(ALERT_EXPECTED, expected.key)
    assert rec.threads[0][0] == ("CINC", "1.340") and "marked this *expected*" in rec.public[0]
    _, rec = click(ALERT_ACK, expected.key, "UOPS2")             # marked already counts as acknowledged
    assert rec.public == []
    assert "no record of that alert" in click(ALERT_INCIDENT, "binlog.000009:1")[1].private[0]
    assert store.expected() == ["0-1-3", "binlog.000001:300"]
    stage, rec = run("stage")
    assert stage.args == {"stop_before": "binlog.000002:4711", "skips": [], "expected": ["0-1-3", "binlog.000001:300"]}
    assert any("Using the choice <@UOPS1> made (this is the incident: DROP TABLE club.posts)" in t for t in rec.private)
    _stage_succeeded(store, stage.id)
    job, _ = run("prod stop=auto")   # typed: not the plan stage verified
    assert job is None
    job, _ = run("prod")
    assert job.stage_job == stage.id and job.args == stage.args
    typed, _ = run("plan stop=end skip=0-1-9")
    assert typed.args == {"stop_before": "end", "skips": ["0-1-9"], "expected": ["0-1-3", "binlog.000001:300"]}
    _, rec = run("choice")
    assert "binlog.000002:4711" in rec.private[0] and "0-1-3" in rec.private[0], rec.private
    _, rec = run("choice clear")
    assert "cleared" in rec.public[0] and store.choice() is None
    assert run("plan")[0].args["stop_before"] == "auto"
    actions = [e["action"] for e in store.audit_log()]
    assert {"chose", "marked incident", "marked expected", "cleared choice"} <= set(actions)


def _posted_alert(alerts: AlertStore, pos: int, file: str, gtid: str | None, reason: str) -> Alert:
    """An alert the watcher reported (its transaction starting 40 bytes before `pos`) and the bot posted."""
    alert = Alert(key=f"{file}:{pos}", reason=reason, statement=reason, database="club", table="posts", rows=None,
                  file=file, pos=pos, tx_file=file, tx_pos=pos - 40, gtid=gtid, server_time=int(time.time()),
                  thread_id=7, detected_at=time.time())
    assert alerts.claim(alert, "UKIM")
    alerts.posted(alert.key, "CINC", f"1.{pos}")
    return alert


def test_oncall_show_and_set(env):
    store, run, _ = env
    _, rec = run("oncall")
    assert rec.private == ["On call now: <@UKIM>. Weekly rotation: <@UKIM>, <@ULEE>."]
    _, rec = run("/oncall set <@ULEE|lee>", user="USTRANGER")
    assert "operator list" in rec.private[0] and "change who is on call" in rec.private[0]
    _, rec = run("oncall set @ULEE")
    assert rec.public == ["<@ULEE> is on call now (set by <@UOPS1>)."]
    assert "On call now: <@ULEE>" in run("oncall")[1].private[0]
    _, rec = run("oncall ULEE")
    assert "invalid choice" in rec.private[0] and "`/oncall set @user`" in rec.private[0]
    assert {"refused oncall set", "oncall set", "request oncall"} <= {e["action"] for e in store.audit_log()}


def test_every_command_is_routed_and_counted(env):
    """Each Command name a parser or button makes has a handler; the dispatcher counts each request."""
    from prometheus_client import REGISTRY

    from handlers.app import application
    from handlers.commands import ACTIONS, from_action
    store, run, _ = env
    settings = SimpleNamespace(store_path=store.path, watch=None, targets={}, keep=SimpleNamespace(backup_dir=None),
                               oncall=SimpleNamespace(rotation=(), rotation_start=None, fallback=None))
    app = application(settings, store, Access(), channel=None)
    typed = ["", "plan", "stage", "prod", "status", "abort", "history", "approve R1", "reject R1", "drill", "choice",
             "choice clear", "backup now", "backup list", "oncall", "oncall set U1"]
    names = {parse(t, "U").name for t in typed}
    names |= {from_action(a, '{"job": "R1", "spec": "0-1-2"}' if a.startswith("candidate") else "0-1-2", "U").name
              for a in ACTIONS}
    assert names <= set(app.routes), names - set(app.routes)
    from handlers import messages
    from handlers.dispatcher import APPROVER_ONLY, OPERATOR_ONLY
    assert OPERATOR_ONLY | APPROVER_ONLY <= names   # the access table names real commands
    assert OPERATOR_ONLY <= set(messages.OPERATORS_ONLY)   # and a refusal says what could not be done
    before = REGISTRY.get_sample_value("restore_bot_requests_total", {"command": "history"}) or 0
    run("history")
    assert REGISTRY.get_sample_value("restore_bot_requests_total", {"command": "history"}) == before + 1
