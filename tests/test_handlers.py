"""The platform-neutral `/restore` handler: access, the prod gate, approvals, audit."""
from __future__ import annotations

import pytest

from handlers.commands import CommandError, parse
from handlers.jobstore import JobStore
from handlers.restore import APPROVAL_MINUTES, RestoreHandler


class Access:
    operators = {"UOPS1", "UOPS2"}
    approvers = {"UAPP1", "UOPS2"}

    def can_operate(self, user: str) -> bool:
        return user in self.operators

    def can_approve(self, user: str) -> bool:
        return user in self.approvers


class Recorder:
    def __init__(self) -> None:
        self.private: list[str] = []
        self.public: list[str] = []
        self.approvals: list[tuple[str, str]] = []

    def ephemeral(self, text: str) -> None:
        self.private.append(text)

    def say(self, text: str) -> None:
        self.public.append(text)

    def approval_request(self, job, text: str) -> None:
        self.approvals.append((job.id, text))


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(tmp_path):
    clock = Clock()
    store = JobStore(tmp_path / "jobs.sqlite3", clock=clock)
    handler = RestoreHandler(store, Access(), channel="CINC", has_prod=True)

    def run(text: str, user: str = "UOPS1"):
        rec = Recorder()
        job = handler.handle(parse(text, user, "slack"), rec)
        return job, rec

    return store, run, clock


def _stage_succeeded(store: JobStore, job_id: str, plan_id: str = "p1") -> None:
    store.transition(job_id, ("queued",), "succeeded", plan_id=plan_id, result={"summary": "ok"})


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
    rec = Recorder()
    handler = RestoreHandler(store, Access(), channel="CINC", has_prod=True)
    card = store.create("plan", "-", "UOPS1", args={"stop_before": "auto", "skips": []})
    assert handler.choose("USTRANGER", card.id, "stop", "0-1-40", rec) is None and store.choice() is None
    chosen = handler.choose("UOPS1", card.id, "stop", "0-1-40", rec, where="binlog.000001:900")
    assert chosen.args == {"stop_before": "0-1-40", "skips": []}
    assert "chose: stop before binlog.000001:900" in rec.public[0] and "`0-1-40`" in rec.public[0]
    skipped = handler.choose("UOPS2", chosen.id, "skip", "0-1-7", rec)
    assert skipped.args == {"stop_before": "0-1-40", "skips": ["0-1-7"]}
    assert handler.choose("UOPS2", skipped.id, "skip", "0-1-40", rec, chosen=True).args == \
        {"stop_before": "auto", "skips": ["0-1-7", "0-1-40"]}   # skipping the stop: the bot finds the next
    handler.choose("UOPS2", skipped.id, "stop", "0-1-7", rec)   # stopping at a skipped one: no longer skipped
    assert store.choice()["stop"] == "0-1-7" and store.choice()["skips"] == []

    assert handler.mark_incident("UOPS1", {"tx_file": "binlog.000002", "tx_pos": 4711, "gtid": None},
                                 "DROP TABLE club.posts", rec) == "binlog.000002:4711"
    assert handler.mark_expected("UOPS1", {"tx_file": "binlog.000001", "tx_pos": 300, "gtid": "0-1-3"},
                                 "UPDATE without WHERE", rec)
    assert not handler.mark_expected("USTRANGER", {"tx_file": "b", "tx_pos": 4, "gtid": None}, "x", rec)
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
