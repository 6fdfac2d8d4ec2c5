"""Operators choose, the watcher learns (issue 10 §2): the real bot (`restore-bot serve`) over HTTP,
against the fake Slack Web API, with requests signed as Slack signs them.

One incident on a live source that the bot both watches and plans from (`[source] binlogs` is the
server itself): after the dump, a whole-table backfill logged as a statement (`judged at replay`;
the watcher cannot judge it live: a page), a counter bumped over every row logged as rows (its
images keep the information: `suspect`, a notice that pages nobody), the real disaster `DROP
DATABASE` (certain). The scenarios: the plan card lists the candidates with *Stop before this
one* / *Skip only this one*; stage reports its verdict on the backfill and prod's rebuild uses it;
a button's choice goes through stage and the prod gate (same plan id); the typed `stop=`/`skip=`
forms; the alerts' *Expected* and *This is the incident* change later plans.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time

import pytest

from restore.mysql.leftovers import OwnedDir
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, dump
from tests.support.fake_slack import FakeSlack, SlackSigner
from tests.support.slack_bot import APP1, CHANNEL, NOBODY, OPS1, OPS2, Bot, World, shut_down, up

DB = "club"
ONCALL = "UKIM"
BACKFILL = f"UPDATE {DB}.members SET display_name = name, updated_at = '2024-05-01 00:00:00'"
BUMP = f"UPDATE {DB}.members SET n = n + 1"

pytestmark = [pytest.mark.mysql, pytest.mark.timeout(300)]   # every test here starts a MariaDB server


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("slack-candidates")
    owned = OwnedDir("rbc")   # short: sandbox sockets live under it
    tmpdir = str(owned.path)
    store = work / "jobs.sqlite3"
    with Sandbox(binlog=True, binlog_format="ROW") as src, Sandbox() as prod:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DB}")
            cur.execute(f"CREATE TABLE {DB}.members (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
                        "display_name VARCHAR(40) NULL, updated_at DATETIME NOT NULL DEFAULT '2020-01-01 00:00:00', "
                        "n INT NOT NULL DEFAULT 0)")
            cur.execute(f"CREATE TABLE {DB}.posts (id INT AUTO_INCREMENT PRIMARY KEY, member INT, body TEXT)")
            cur.executemany(f"INSERT INTO {DB}.members (id, name) VALUES (%s, %s)",
                            [(i, f"member {i:03d}") for i in range(1, 61)])
        snapshot = dump(src, work / "club.sql", [DB])
        live = f"mysql://root@127.0.0.1:{src.port}?unix_socket={src.socket}"
        config = work / "restore-bot.toml"
        config.write_text(f"""
[source]
snapshots = [{json.dumps(str(snapshot))}]
binlogs = {json.dumps(live)}
[targets.stage]
dsn = "sandbox"
[targets.prod]
dsn = "mysql://root@127.0.0.1:{prod.port}?unix_socket={prod.socket}"
[slack]
channel = "{CHANNEL}"
[access]
operators = ["{OPS1}", "{OPS2}"]
approvers = ["{APP1}", "{OPS2}"]
[watch]
source = {json.dumps(live)}
databases = ["{DB}"]
[oncall]
rotation = ["{ONCALL}"]
rotation_start = "2026-01-05"
[store]
path = {json.dumps(str(store))}
""")
        secret, token = secrets.token_hex(16), "xoxb-test-" + secrets.token_hex(8)
        fake = FakeSlack().start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RESTORE_BOT_"))}
        env.update(SLACK_BOT_TOKEN=token, SLACK_SIGNING_SECRET=secret, SLACK_API_URL=fake.api_url,
                   PYTHONUNBUFFERED="1", TMPDIR=tmpdir)
        bot = Bot(config, env, work / "serve.log", tmpdir)
        try:
            bot.start()
            _wait(lambda: store.exists() and _watching(store), 30, "the watcher's starting position")
            with src.connect() as conn, conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {DB}.members (id, name) VALUES (%s, %s)",
                                [(i, f"member {i:03d}") for i in range(61, 81)])
                cur.execute("SET SESSION binlog_format = 'STATEMENT'")
                cur.execute(BACKFILL)                       # routine work, logged as a statement
                cur.execute("SET SESSION binlog_format = 'ROW'")
                cur.execute(BUMP)                           # rows: its images keep the information
                for i in range(1, 30):
                    cur.execute(f"INSERT INTO {DB}.posts (member, body) VALUES (%s, %s)", (i, f"post {i}"))
                before = checksums(conn, [DB])
                cur.execute(f"DROP DATABASE {DB}")          # the disaster
            w = World(bot, fake, SlackSigner(bot.url, secret, fake), secret, token, store,
                      {"snapshot": snapshot, "before": before}, prod)
            w.alert_posts = fake.wait_for(lambda calls: len(a := _alerts(calls)) >= 3 and a, 30, "three alerts")
            yield w
        finally:
            shut_down(bot, fake, work, owned)


@pytest.fixture
def w(world):
    return up(world)


# -- helpers -----------------------------------------------------------------------------------------

def _wait(what, timeout: float, desc: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := what():
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {desc}")


def _watching(store) -> bool:
    try:
        with sqlite3.connect(store) as db:
            return bool(db.execute("SELECT COUNT(*) FROM watch_position").fetchone()[0])
    except sqlite3.Error:
        return False


def _alerts(calls):
    """Alerts and notices (not their threads)."""
    return [c for c in calls if c.method == "chat.postMessage" and not c.thread_ts and c.status == 200
            and ("🚨" in c.text or "🔎" in c.text)]


def _alert(w, needle: str):
    found = [c for c in w.alert_posts if needle in c.text]
    assert len(found) == 1, (needle, FakeSlack.describe(w.alert_posts))
    return found[0]


def _blocks(call) -> list[dict]:
    blocks = call.body.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def _buttons(call) -> dict[str, list[dict]]:
    """action_id -> the buttons with it, in order."""
    out: dict[str, list[dict]] = {}
    for b in _blocks(call):
        for e in b.get("elements", []) if b["type"] == "actions" else []:
            out.setdefault(e["action_id"], []).append(e)
    return out


def _plan(w, text: str = "plan", user: str = OPS1):
    """A plan job through `/restore TEXT`: (job, its final card)."""
    job = w.start_job(text, user)
    card = w.wait_outcome(job, "succeeded", timeout=90)
    return w.job(job), card


def _candidate(plan: dict, needle: str) -> dict:
    found = [c for c in plan["candidates"] if needle in (c["statement"] or "") or needle in c["reason"]]
    assert len(found) == 1, (needle, plan["candidates"])
    return found[0]


def _click(w, action: str, value: str, user: str = OPS1):
    answer, _ = w.signer.click(action, value, user, CHANNEL)
    assert answer.status == 200, answer


def _clear_choice(w) -> None:
    """`/restore choice clear`: the team reads it in the channel when there was one, the clicker only if not."""
    mark = w.fake.mark()
    _answer, key = w.command("choice clear")
    w.fake.wait_for(lambda calls: [c for c in calls[mark:] if c.path == f"/response_url/{key}"
                                   or "cleared the saved choice" in c.text], 10, "the choice cleared")


# -- alerts: a page for the certain, a notice for the suspect ---------------------------------------

def test_certain_events_page_the_suspect_one_is_a_notice(w):
    backfill, bump, drop = (_alert(w, "display_name"), _alert(w, "n = n + 1"), _alert(w, f"DROP DATABASE {DB}"))
    for page in (backfill, drop):   # a statement UPDATE without WHERE cannot be judged live: a page
        assert page.text.startswith(f"🚨 <@{ONCALL}>"), page.text
        assert [b["text"]["text"] for bs in _buttons(page).values() for b in bs] == \
            ["Acknowledge", "Expected", "This is the incident", "Plan restore"]
    assert bump.text.startswith("🔎 Notice") and "<@" not in bump.text and "<!subteam" not in bump.text, bump.text
    assert "held one or two values before" in bump.text, bump.text
    assert set(_buttons(bump)) == {"alert_expected", "alert_incident", "alert_plan"}   # nothing to acknowledge
    with sqlite3.connect(w.store_path) as db:
        rows = dict(db.execute("SELECT key, severity FROM alerts").fetchall())
    assert sorted(rows.values()) == ["certain", "certain", "suspect"], rows


# -- the plan card ------------------------------------------------------------------------------------

def test_plan_card_lists_the_candidates_with_buttons(w):
    _clear_choice(w)
    job, card = _plan(w)
    plan = job.result["plan"]
    fill, bump, drop = (_candidate(plan, "display_name"), _candidate(plan, "n = n + 1"),
                        _candidate(plan, f"DROP DATABASE {DB}"))
    assert (fill["severity"], bump["severity"], drop["severity"]) == ("judged at replay", "suspect", "certain")
    assert fill["chosen"] and not drop["chosen"]
    text = card.text
    for cand in (fill, bump, drop):
        assert f"{cand['file']}:{cand['pos']}" in text and cand["gtid"] in text, (cand, text)
    assert "← *the stop*" in text and "*judged at replay*" in text and "*suspect*" in text and "*certain*" in text
    assert f"judges that stop not destructive, it goes on and stops before `{drop['tx_file']}:{drop['tx_pos']}`" \
        in text, text
    buttons = _buttons(card)
    stops = [json.loads(b["value"]) for b in buttons["candidate_stop"]]
    assert [s["spec"] for s in stops] == [c["gtid"] for c in plan["candidates"]], stops
    assert all(s["job"] == job.id for s in stops)
    assert {b["text"]["text"] for b in buttons["candidate_stop"]} == {"Stop before this one"}
    assert {b["text"]["text"] for b in buttons["candidate_skip"]} == {"Skip only this one"}
    # only what the plan replays (up to its stop) can be skipped: not the DROP after it
    assert [json.loads(b["value"])["spec"] for b in buttons["candidate_skip"]] == [fill["gtid"]], buttons


def test_stage_reports_its_verdict_and_prod_uses_it(w):
    """Auto stops at the backfill, judged at replay: stage judges it (suspect) and goes on to the
    DROP; the stage card says so; prod's rebuild applies stage's verdict instead of judging again."""
    _clear_choice(w)
    stage = w.start_job("stage")
    card = w.wait_outcome(stage, "succeeded", timeout=120)
    verdicts = w.job(stage).result["restore"]["verdicts"]
    assert [v["severity"] for v in verdicts] == ["suspect"], verdicts
    assert "Judged on the stage server at replay (1)" in card.text and "⚖ *suspect*" in card.text, card.text
    assert any(c.text.startswith("⚖ *suspect*") for c in w.thread(stage)), "the verdict is not in the thread"
    for name, (rows, checksum) in w.incident["before"].items():
        assert f"{name} {rows} rows (checksum {checksum})" in card.text, card.text
    prod = w.request_prod(OPS1)
    w.click("approve_prod", prod, APP1)
    w.wait_outcome(prod, "succeeded", timeout=180)
    assert w.job(prod).plan_id == w.job(stage).plan_id
    assert any("applies stage" in c.text and stage in c.text for c in w.thread(prod)), \
        FakeSlack.describe(w.thread(prod))
    with w.prod.connect() as conn:
        assert checksums(conn, [DB]) == w.incident["before"]


def test_stop_before_this_one_flows_into_stage_and_the_prod_gate(w):
    _clear_choice(w)
    first, card = _plan(w)
    plan = w.job(first.id).result["plan"]
    drop = _candidate(plan, f"DROP DATABASE {DB}")
    value = next(b["value"] for b in _buttons(card)["candidate_stop"] if json.loads(b["value"])["spec"] == drop["gtid"])
    mark = w.fake.mark()
    _click(w, "candidate_stop", value)
    said = w.fake.wait_for(lambda calls: [c for c in calls[mark:] if c.method == "chat.postMessage"
                                          and "chose: stop before" in c.text], 15, "the choice, in the channel")[0]
    assert said.channel == CHANNEL and f"<@{OPS1}>" in said.text and drop["gtid"] in said.text
    chosen = _wait(lambda: (j := w.store().jobs(kind="plan", limit=1)) and j[0].id != first.id and j[0], 15,
                   "the new plan")
    assert chosen.args["stop_before"] == drop["gtid"] and chosen.requester == OPS1
    w.wait_outcome(chosen.id, "succeeded", timeout=90)
    new_plan = w.job(chosen.id).result["plan"]
    assert _candidate(new_plan, f"DROP DATABASE {DB}")["chosen"], new_plan["candidates"]
    assert new_plan["stop"]["gtid"] == drop["gtid"] and not new_plan["if_judged_not_destructive"]

    # `/restore stage` names no stop: it runs the operators' choice, and says so
    stage = w.start_job("stage")
    assert w.job(stage).args["stop_before"] == drop["gtid"]
    w.wait_outcome(stage, "succeeded", timeout=120)
    assert w.job(stage).plan_id == new_plan["plan_id"]
    # `/restore prod` names none either: the gate finds that stage run, and the plan id is the same
    prod = w.request_prod(OPS2)
    assert w.job(prod).stage_job == stage and w.job(prod).plan_id == new_plan["plan_id"]
    w.click("approve_prod", prod, APP1)
    w.wait_outcome(prod, "succeeded", timeout=180)
    assert w.job(prod).result["plan_id"] == new_plan["plan_id"]
    with w.prod.connect() as conn:
        assert checksums(conn, [DB]) == w.incident["before"]
    # a prod that names another stop is not that plan: refused
    answer, key = w.command("prod stop=end")
    assert "no stage run that verified OK" in w.response(key).text


def test_skip_only_this_one(w):
    """Skipping the backfill (the auto plan's stop): the plan replays around it and stops at the DROP."""
    _clear_choice(w)
    first, card = _plan(w)
    plan = w.job(first.id).result["plan"]
    fill = _candidate(plan, "display_name")
    value = _buttons(card)["candidate_skip"][0]["value"]
    assert json.loads(value)["spec"] == fill["gtid"]
    _click(w, "candidate_skip", value)
    chosen = _wait(lambda: (j := w.store().jobs(kind="plan", limit=1)) and j[0].id != first.id and j[0], 15,
                   "the new plan")
    assert chosen.args["skips"] == [fill["gtid"]] and chosen.args["stop_before"] == "auto"
    card = w.wait_outcome(chosen.id, "succeeded", timeout=90)
    new_plan = w.job(chosen.id).result["plan"]
    assert [s["gtid"] for s in new_plan["skips"]] == [fill["gtid"]], new_plan["skips"]
    assert _candidate(new_plan, "display_name")["skipped"] and _candidate(new_plan, f"DROP DATABASE {DB}")["chosen"]
    assert "(skipped)" in card.text
    # a stranger's click changes nothing
    mark = w.fake.mark()
    _click(w, "candidate_stop", value, user=NOBODY)
    w.ephemeral_to(NOBODY, mark, "not on restore-bot's operator list")
    assert w.store().jobs(kind="plan", limit=1)[0].id == chosen.id
    _answer, key = w.command("choice")
    shown = w.response(key).text
    assert f"skip {fill['gtid']}" in shown.replace("`", "") and f"<@{OPS1}>" in shown, shown


def test_typed_stop_and_skip_in_slack(w):
    """`stop=`/`skip=` typed (GTID or file:pos) do what the buttons do, for that command only."""
    job, _card = _plan(w, "plan")   # the saved choice of an earlier scenario may apply here: not below
    plan = w.job(job.id).result["plan"]
    fill, drop = _candidate(plan, "display_name"), _candidate(plan, f"DROP DATABASE {DB}")
    typed, card = _plan(w, f"plan stop={drop['tx_file']}:{drop['tx_pos']} skip={fill['gtid']}")
    typed = w.job(typed.id)
    assert typed.args["stop_before"] == f"{drop['tx_file']}:{drop['tx_pos']}" and typed.args["skips"] == [fill["gtid"]]
    doc = typed.result["plan"]
    assert doc["stop"]["tx_pos"] == drop["tx_pos"] and [s["gtid"] for s in doc["skips"]] == [fill["gtid"]]
    long_form, _ = _plan(w, f"plan --stop-before {drop['gtid']}")   # the long forms still work
    assert w.job(long_form.id).result["plan"]["stop"]["gtid"] == drop["gtid"]


# -- the alerts' buttons change later plans -------------------------------------------------------------

def test_expected_and_this_is_the_incident_change_later_plans(w):
    _clear_choice(w)
    backfill, bump = _alert(w, "display_name"), _alert(w, "n = n + 1")
    key = _buttons(backfill)["alert_expected"][0]["value"]

    mark = w.fake.mark()
    _click(w, "alert_expected", key, user=NOBODY)   # not an operator: refused, nothing recorded
    w.ephemeral_to(NOBODY, mark, "not on restore-bot's operator list")
    _click(w, "alert_expected", key)
    said = w.fake.wait_for(lambda calls: [c for c in calls[mark:] if "marked this *expected*" in c.text], 15,
                           "the Expected note")[0]
    assert said.thread_ts == backfill.ts
    job, card = _plan(w)
    assert w.job(job.id).args["expected"], w.job(job.id).args
    plan = w.job(job.id).result["plan"]
    assert _candidate(plan, "display_name")["severity"] == "expected"
    assert plan["stop"]["statement"].startswith(f"DROP DATABASE {DB}") and not plan["if_judged_not_destructive"]
    assert "*expected*" in card.text

    mark = w.fake.mark()
    _click(w, "alert_incident", _buttons(bump)["alert_incident"][0]["value"])
    said = w.fake.wait_for(lambda calls: [c for c in calls[mark:] if "marked this *the incident*" in c.text], 15,
                           "the incident note")[0]
    assert said.thread_ts == bump.ts
    gtid = _buttons(bump)["alert_plan"][0]["value"]
    job, _card = _plan(w)   # no stop typed: it stops where the operator said the incident is
    assert w.job(job.id).args["stop_before"] == gtid
    plan = w.job(job.id).result["plan"]
    assert plan["stop"]["gtid"] == gtid and _candidate(plan, "n = n + 1")["chosen"], plan["stop"]
    with sqlite3.connect(w.store_path) as db:
        marks = db.execute("SELECT marked, marked_by, acked_by FROM alerts WHERE marked IS NOT NULL "
                           "ORDER BY marked").fetchall()
    assert marks == [("expected", OPS1, OPS1), ("incident", OPS1, OPS1)], marks
    _answer, key = w.command("history")
    history = w.response(key).text
    assert "marked expected" in history and "marked incident" in history, history
