"""The real bot (`restore-bot serve`) over HTTP, against a local fake Slack Web API.

One bot process (HTTP app + reporter + worker child), one fake Slack and one small real incident
are shared by the whole module: a source server whose `club` database was dumped, written to
(100 000 small transactions, replayed in small batches so a stage replay lasts several seconds),
checksummed, then dropped — the disaster — and written to again; a production server the
application kept writing to after the disaster, which the bot reaches with a password. Requests
reach the bot signed exactly as Slack signs them; everything the bot says goes to the fake, and
the scenarios assert on that record and on the real data.

The scenarios run in file order and build on each other where the product does (prod needs a
verified stage run), but each one makes what it needs itself when run alone (`-k`).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from urllib.parse import quote

import pymysql
import pytest

from restore.mysql.leftovers import OwnedDir
from restore.mysql.procs import alive
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, databases
from tests.support.fake_slack import FakeSlack, SlackSigner, sign
from tests.support.incident_factory import IncidentSpec
from tests.support.slack_bot import (
    ACK_SECONDS,
    APP1,
    CHANNEL,
    JOB_TIMEOUT,
    NOBODY,
    OPS1,
    OPS2,
    Bot,
    World,
    http_get,
    shut_down,
    up,
)

DB = "club"
TXNS = 100_000          # small transactions after the dump
# [targets.stage] batch: about 5,000 commits instead of 110, a stage replay of seconds rather than
# about 1.5 s, that an abort (or a stop) interrupts within 20 transactions
STAGE_BATCH = 20
CARD_INTERVAL = 2.5     # bot.reporter's interval between two posts of one card (serve's default)

pytestmark = [pytest.mark.mysql, pytest.mark.timeout(300)]   # every test here starts a MariaDB server


# -- the incident --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def incident(tmp_path_factory):
    inc = IncidentSpec(
        databases=(DB,),
        schema=[f"CREATE DATABASE {DB}",
                f"CREATE TABLE {DB}.members (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40), "
                "visits INT NOT NULL DEFAULT 0)",
                f"CREATE TABLE {DB}.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE, "
                "note VARCHAR(40))",
                f"INSERT INTO {DB}.members (name) VALUES ('김키퍼'), ('이해커'), ('박보안')",
                f"CREATE PROCEDURE {DB}.work(n INT) BEGIN DECLARE i INT DEFAULT 0; WHILE i < n DO "
                f"INSERT INTO {DB}.attendance (member, day, note) "
                "VALUES (1 + i % 3, DATE_ADD('2023-08-01', INTERVAL i % 30 DAY), CONCAT('visit ', i)); "
                f"IF i % 10 = 0 THEN UPDATE {DB}.members SET visits = visits + 1 WHERE id = 1 + i % 3; END IF; "
                "SET i = i + 1; END WHILE; END"],
        traffic=[f"CALL {DB}.work({TXNS})",
                 f"UPDATE {DB}.members SET name = CONCAT(name, ' 🎉') WHERE id = 2"],
        disaster=[f"DROP DATABASE {DB}"],
        after=[f"CREATE DATABASE {DB}",                          # the application carries on
               f"CREATE TABLE {DB}.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE)",
               f"INSERT INTO {DB}.attendance (member, day) VALUES (1, '2023-08-31'), (2, '2023-08-31')"],
    ).build_on_new_source(tmp_path_factory.mktemp("slack-incident"),
                          extra_args=["--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0"])
    assert inc.before[f"{DB}.attendance"][0] == TXNS
    return {"snapshot": inc.snapshot, "binlogs": inc.binlog_dir, "before": inc.before}


@pytest.fixture(scope="module")
def prod():
    """Production: the application recreated its table after the disaster and kept writing."""
    with Sandbox() as server:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DB}")
            cur.execute(f"CREATE TABLE {DB}.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member INT, day DATE)")
            cur.execute(f"INSERT INTO {DB}.attendance (member, day) VALUES (1, '2023-08-31'), (2, '2023-08-31'), "
                        "(3, '2023-09-01')")
        yield server


def _toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


@pytest.fixture(scope="module")
def world(incident, prod, tmp_path_factory):
    work = tmp_path_factory.mktemp("slack-bot")
    owned = OwnedDir("rbt")   # rbt-<pid>-<hex>, short: sandbox sockets live under it
    tmpdir = str(owned.path)
    store = work / "jobs.sqlite3"
    config = work / "restore-bot.toml"
    config.write_text(f"""
[source]
snapshots = {_toml_list([incident["snapshot"]])}
binlogs = {json.dumps(str(incident["binlogs"]))}

[targets.stage]
dsn = "sandbox"
batch = {STAGE_BATCH}

[targets.prod]
dsn = "mysql://restore:${{PROD_DB_PASSWORD}}@127.0.0.1:{prod.port}?unix_socket={prod.socket}"
fence = "refuse"

[slack]
channel = "{CHANNEL}"

[access]
operators = {_toml_list([OPS1, OPS2])}
approvers = {_toml_list([APP1, OPS2])}

[store]
path = {json.dumps(str(store))}
""")
    secret = secrets.token_hex(16)
    token = "xoxb-test-" + secrets.token_hex(8)
    db_password = f"Pw:{secrets.token_hex(8)}/@#?"   # with characters a DSN must percent-encode
    with prod.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER 'restore'@'localhost' IDENTIFIED BY %s", (db_password,))
        cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'restore'@'localhost'")
    fake = FakeSlack().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RESTORE_BOT_"))}
    env.update(SLACK_BOT_TOKEN=token, SLACK_SIGNING_SECRET=secret, SLACK_API_URL=fake.api_url,
               PROD_DB_PASSWORD=db_password, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", TMPDIR=tmpdir)
    bot = Bot(config, env, work / "serve.log", tmpdir)
    try:
        bot.start()
        yield World(bot, fake, SlackSigner(bot.url, secret, fake), secret, token, store, incident, prod,
                    db_password)
    finally:
        shut_down(bot, fake, work, owned)


@pytest.fixture
def w(world):
    return up(world)


# -- requests Slack would never have signed --------------------------------------------------------

def test_bad_signature_and_stale_timestamp_get_401(w):
    mark = w.fake.mark()
    audit_before = len(w.store().audit_log(1000))
    jobs_before = [j.id for j in w.store().jobs(limit=100)]
    body, key = w.signer.command_body("stage", OPS1, CHANNEL)
    forged = w.signer.post(body, signature="v0=" + "0" * 64)
    assert forged.status == 401, forged
    wrong_key = w.signer.post(body, secret="not-the-signing-secret")
    assert wrong_key.status == 401, wrong_key
    stale = w.signer.post(body, timestamp=int(time.time()) - 6 * 60)   # correctly signed, 6 minutes old
    assert stale.status == 401, stale
    tampered = w.signer.post(body.replace("stage", "history"), signature=sign(w.secret, int(time.time()), body))
    assert tampered.status == 401, tampered                               # signature of another body
    time.sleep(1.0)
    assert w.fake.find(since=mark) == [], FakeSlack.describe(w.fake.find(since=mark))
    assert len(w.store().audit_log(1000)) == audit_before, "a request with a bad signature reached the handler"
    assert [j.id for j in w.store().jobs(limit=100)] == jobs_before
    # the same body, signed properly and on time, is accepted (the 401s were about the signature)
    body, key = w.signer.command_body("help", OPS1, CHANNEL)
    assert w.signer.post(body).status == 200
    assert "/restore plan" in w.response(key).text


def test_healthz_and_metrics(w):
    status, body = http_get(w.bot.url + "/healthz")
    assert status == 200 and json.loads(body) == {"ok": True}
    status, body = http_get(w.bot.url + "/metrics")
    assert status == 200
    assert "restore_bot_ack_seconds" in body and "restore_bot_jobs" in body


# -- help, bad input, strangers -------------------------------------------------------------------

def test_help_is_ephemeral_and_fast(w):
    for text in ("help", ""):
        answer, key = w.command(text)
        assert answer.seconds < ACK_SECONDS, f"/restore {text} acknowledged after {answer.seconds:.2f}s"
        reply = w.response(key)
        assert reply.body.get("response_type") == "ephemeral"
        assert "/restore plan" in reply.text and "/restore prod" in reply.text and "/restore abort" in reply.text


def test_oncall_and_backup_are_answered_by_the_same_dispatcher(w):
    """/oncall and /backup reach the one dispatcher serve wires up: answered, counted, audited."""
    answers = {}
    for command, text in (("/oncall", ""), ("/backup", "list"), ("/backup", "frob")):
        answer, key = w.signer.command(text, OPS1, CHANNEL, command=command)
        assert answer.status == 200 and answer.seconds < ACK_SECONDS, (command, answer)
        answers[command, text] = answer.json().get("text") or w.response(key).text
    assert answers["/oncall", ""].startswith("On call now:"), answers
    assert "Backups are not configured" in answers["/backup", "list"], answers
    assert "invalid choice: 'frob'" in answers["/backup", "frob"] and "`/backup list`" in answers["/backup", "frob"]
    actions = [(e["actor"], e["action"]) for e in w.store().audit_log(50)]
    assert (OPS1, "request oncall") in actions and (OPS1, "request backup list") in actions, actions
    _status, metrics = http_get(w.bot.url + "/metrics")
    assert 'restore_bot_requests_total{command="backup list"}' in metrics


def test_malformed_input_gets_usage_and_starts_nothing(w):
    jobs_before = [j.id for j in w.store().jobs(limit=100)]
    mark = w.fake.mark()
    for text, says in (("frobnicate", "frobnicate"), ("stage --stop-before", "--stop-before"),
                       ('plan --skip "unclosed', "cannot read")):
        answer, key = w.command(text)
        assert answer.seconds < ACK_SECONDS, f"/restore {text} acknowledged after {answer.seconds:.2f}s"
        doc = answer.json()
        assert doc.get("response_type") == "ephemeral", doc
        assert says in doc["text"] and "/restore plan" in doc["text"], doc["text"]
    time.sleep(1.5)   # long enough for a queued job to show up as a card
    assert [j.id for j in w.store().jobs(limit=100)] == jobs_before
    assert not [c for c in w.fake.find(since=mark) if c.method.startswith("chat.")], \
        FakeSlack.describe(w.fake.find(since=mark))


def test_unauthorized_user_is_refused_politely_and_audited(w):
    jobs_before = [j.id for j in w.store().jobs(limit=100)]
    for text in ("stage", "prod", "abort"):
        _answer, key = w.command(text, user=NOBODY)
        reply = w.response(key)
        assert reply.body.get("response_type") == "ephemeral"
        assert reply.text.startswith("Sorry") and f"<@{NOBODY}>" in reply.text and "logged" in reply.text, reply.text
    time.sleep(1.0)
    assert [j.id for j in w.store().jobs(limit=100)] == jobs_before
    _answer, key = w.command("history", user=OPS1)
    history = w.response(key).text
    for what in ("stage", "prod", "abort"):
        assert re.search(rf"{NOBODY}\s+refused {what}\b.*not an operator", history), history


# -- plan --------------------------------------------------------------------------------------------

def test_plan_posts_a_card_updates_it_and_threads_the_steps(w):
    mark = w.fake.mark()
    answer, key = w.command("plan")
    assert answer.seconds < ACK_SECONDS, f"/restore plan acknowledged after {answer.seconds:.2f}s"
    reply = w.response(key)
    m = re.search(r"job \*(R\d+)\* queued", reply.text)
    assert m and reply.body.get("response_type") == "ephemeral", reply.text
    job = m.group(1)
    final = w.wait_outcome(job, "succeeded", timeout=60)
    calls = w.fake.snapshot()[mark:]
    cards = w.cards(job, calls)
    assert len(cards) == 1 and cards[0].channel == CHANNEL, FakeSlack.describe(cards)
    versions = w.card_versions(job, calls)
    assert len(versions) >= 2 and versions[-1].method == "chat.update"
    assert all(v.channel == CHANNEL for v in versions)
    assert final.body.get("ts") == cards[0].ts
    text = final.text
    assert "succeeded" in text and job in text
    assert f"DROP DATABASE {DB}" in text, text                     # the stop, in words
    assert "stops before" in text and "transactions into club" in text, text
    thread = w.thread(job, calls)
    assert len(thread) >= 2 and all(c.channel == CHANNEL for c in thread)
    assert any("plan started" in c.text for c in thread)
    assert any(c.text.startswith("✔") and "succeeded" in c.text and f"DROP DATABASE {DB}" in c.text for c in thread)
    # the card is posted, then updated, at most every CARD_INTERVAL s: the reporter counts from when
    # the last one went out, so this holds at the fake too (0.05 s: its wall clock against the bot's)
    gaps = [round(b.at - a.at, 3) for a, b in zip(versions, versions[1:])]
    assert all(gap >= CARD_INTERVAL - 0.05 for gap in gaps), gaps


def test_slack_answering_429_is_retried_after_retry_after(w):
    w.fake.rate_limit("chat.update", 3)
    mark = w.fake.mark()
    job = w.start_job("plan")
    final = w.wait_outcome(job, "succeeded", timeout=90)
    assert w.fake.pending_limits("chat.update") == 0
    calls = w.fake.snapshot()[mark:]
    card = w.cards(job, calls)[0]
    updates = [c for c in calls if c.method == "chat.update" and c.body.get("ts") == card.ts]
    limited = [i for i, c in enumerate(updates) if c.status == 429]
    assert len(limited) == 3, FakeSlack.describe(updates)
    for i in limited:   # each retry waited for Retry-After (1 s)
        assert i + 1 < len(updates), "the bot gave up after a 429"
        assert updates[i + 1].at - updates[i].at >= 0.9, (updates[i].at, updates[i + 1].at)
        assert updates[i + 1].body.get("text") is not None
    assert updates[-1].status == 200 and "succeeded" in final.text
    assert len(w.cards(job, calls)) == 1


# -- stage -------------------------------------------------------------------------------------------

def test_stage_restores_verifies_and_says_succeeded(w):
    mark = w.fake.mark()
    job = w.start_job("stage")
    final = w.wait_outcome(job, "succeeded")
    calls = w.fake.snapshot()[mark:]
    assert len(w.cards(job, calls)) == 1
    text = final.text
    assert "Verified 2 tables" in text, text
    for name, (rows, checksum) in w.incident["before"].items():
        assert f"{name} {rows} rows (checksum {checksum})" in text, (name, text)
    thread = [c.text for c in w.thread(job, calls)]
    for phase in ("load", "replay", "verify"):
        assert any(t.startswith(f"▶ {phase} started") for t in thread), thread
        assert any(t.startswith(f"✓ {phase} finished") for t in thread), thread
    assert w.job(job).state == "succeeded"
    replay = next(p for p in w.job(job).result["restore"]["phases"] if p["phase"] == "replay")
    assert replay["commits"] >= replay["transactions"] // STAGE_BATCH, replay   # [targets.stage] batch took effect
    w.wait_no_sandbox("the stage sandbox was left running")


# -- prod --------------------------------------------------------------------------------------------

def test_prod_needs_a_second_approver_then_swaps_and_keeps_the_app_writes(w):
    stage = w.stage_job_ok()
    with w.prod.connect() as conn:
        live_before = checksums(conn, [DB])
    assert live_before[f"{DB}.attendance"][0] == 3
    job = w.request_prod(OPS1)
    assert w.job(job).state == "awaiting_approval" and w.job(job).stage_job == stage

    # the requester cannot approve it (UOPS1 is not even an approver)
    mark = w.fake.mark()
    w.click("approve_prod", job, OPS1)
    refusal = w.ephemeral_to(OPS1, mark, "Sorry")
    assert "only approvers" in refusal.text and refusal.channel == CHANNEL
    # nor can a stranger
    w.click("approve_prod", job, NOBODY)
    w.ephemeral_to(NOBODY, mark, "only approvers")
    time.sleep(0.5)
    assert w.job(job).state == "awaiting_approval"
    assert not w.cards(job), "a card appeared before anyone approved"

    # a different approver approves: it runs
    mark = w.fake.mark()
    w.click("approve_prod", job, APP1)
    approved = w.fake.wait_for(lambda calls: [c for c in calls[mark:] if c.method == "chat.postMessage"
                                              and f"Approved by <@{APP1}>" in c.text], 10, "the approval notice")[0]
    assert job in approved.text and approved.channel == CHANNEL
    final = w.wait_outcome(job, "succeeded", timeout=JOB_TIMEOUT)
    aside = f"{DB}__before_{job.lower()}"
    assert "Swapped 2 verified tables into production" in final.text and aside in final.text, final.text
    j = w.job(job)
    assert j.approver == APP1 and j.requester == OPS1

    with w.prod.connect() as conn:
        assert checksums(conn, [DB]) == w.incident["before"]               # the pre-disaster state
        kept = checksums(conn, [aside])
        assert {k.replace(aside + ".", DB + ".", 1): v for k, v in kept.items()} == live_before
        leftovers = {d for d in databases(conn) if "__shadow_" in d}
        assert not leftovers, leftovers

    # approving again does nothing
    mark = w.fake.mark()
    w.click("approve_prod", job, OPS2)
    w.ephemeral_to(OPS2, mark, "not waiting for approval")

    _answer, key = w.command("history")
    history = w.response(key).text
    assert re.search(rf"{OPS1}\s+requested prod {job}", history), history
    assert re.search(rf"{OPS1}\s+refused approve {job}", history), history
    assert re.search(rf"{APP1}\s+approved prod {job}", history), history


def test_prod_refused_while_a_writer_is_connected(w):
    w.stage_job_ok()
    with w.prod.connect() as conn:
        live_before = checksums(conn, [DB])
        dbs_before = databases(conn)
    app = pymysql.connect(unix_socket=str(w.prod.socket), user="root", database=DB)
    try:
        with app.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            session = cur.fetchone()[0]
        job = w.request_prod(OPS2, channel="D0OPS2")   # typed in a DM: the request still goes to the team

        # self-approval by someone who is an approver
        mark = w.fake.mark()
        w.click("approve_prod", job, OPS2)
        self_refusal = w.ephemeral_to(OPS2, mark, "different")
        assert f"requested {job} yourself" in self_refusal.text
        time.sleep(0.3)
        assert w.job(job).state == "awaiting_approval"

        w.click("approve_prod", job, APP1)
        final = w.wait_outcome(job, "failed", timeout=JOB_TIMEOUT)
        text = final.text + "\n" + "\n".join(c.text for c in w.thread(job))
        assert f"connection {session}" in text and f"database {DB}" in text, text
        assert "stop the application" in text and "Next:" in text, text
    finally:
        app.close()
    with w.prod.connect() as conn:
        assert checksums(conn, [DB]) == live_before      # the live data is untouched
        assert databases(conn) == dbs_before             # no shadow, nothing moved aside


# -- abort, restart --------------------------------------------------------------------------------

# The replay is held mid-way (a lock on the stage target's checkpoint table: it waits at its next
# commit) while the test acts, so the abort and the kill land mid-replay however fast it runs.
HOLD_BEFORE = TXNS - 10 * STAGE_BATCH   # held with at least ten batches to go


def test_abort_mid_replay(w):
    mark = w.fake.mark()
    job, hold = w.stage_held_mid_replay(HOLD_BEFORE)
    try:
        _answer, key = w.command(f"abort {job}", channel="D0OPS1")   # from a DM: the notice goes to the channel
        requested = w.fake.wait_for(lambda calls: [c for c in calls[mark:] if c.method == "chat.postMessage"
                                                   and "Abort requested" in c.text], 10, "the abort notice")[0]
    finally:
        hold.close()   # the replay goes on to its next commit, where it reads the abort
    assert job in requested.text and requested.channel == CHANNEL
    final = w.wait_outcome(job, "aborted", timeout=60)
    assert "aborted" in final.text and "succeeded" not in final.text
    thread = [c.text for c in w.thread(job)]
    assert any(t.startswith("■ aborted") for t in thread), thread
    assert not any(t.startswith("✔") for t in thread), thread
    assert not any(t.startswith("✓ replay finished") for t in thread), f"the replay ran to its end: {thread}"
    assert w.job(job).state == "aborted"
    w.wait_no_sandbox("the aborted job's sandbox is left")
    _answer, key = w.command("history")
    assert re.search(rf"{OPS1}\s+abort {job}", w.response(key).text)


def test_bot_restart_mid_job_resumes_and_updates_the_same_card(w):
    mark = w.fake.mark()
    job, hold = w.stage_held_mid_replay(HOLD_BEFORE)
    try:
        w.fake.wait_for(lambda calls: w.cards(job, calls), 10, "the card")
        old_workers = w.bot.worker_pids()
        assert old_workers, "serve has no worker child"
        w.bot.kill9()
    finally:
        hold.close()   # the orphaned worker stops at the replay's next commit
    deadline = time.monotonic() + 30
    while any(alive(p) for p in old_workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in old_workers if alive(p)]
    assert not survivors, f"the worker {survivors} outlived its serve process"
    w.wait_no_sandbox("the killed worker's sandbox server is still running")

    w.bot.start()
    final = w.wait_outcome(job, "succeeded")
    calls = w.fake.snapshot()[mark:]
    assert len(w.cards(job, calls)) == 1, FakeSlack.describe(w.cards(job, calls))
    assert final.method == "chat.update" and final.body["ts"] == w.cards(job, calls)[0].ts
    thread = [c.text for c in w.thread(job, calls)]
    assert any("restarted" in t for t in thread), thread
    assert sum(t.startswith("✔") for t in thread) == 1
    for name, (rows, checksum) in w.incident["before"].items():
        assert f"{name} {rows} rows (checksum {checksum})" in final.text


def test_sigterm_stops_serve_and_its_worker(w):
    workers = w.bot.worker_pids()
    assert workers
    t0 = time.monotonic()
    code = w.bot.stop()
    assert code == 0, f"serve exited with {code} on SIGTERM:\n{w.bot.log_tail()}"
    assert time.monotonic() - t0 < 30
    assert not [p for p in workers if alive(p)]
    assert "worker stopped" in w.bot.log_tail(2000)
    w.bot.start()
    status, _body = http_get(w.bot.url + "/healthz")
    assert status == 200


# -- secrets -----------------------------------------------------------------------------------------

def test_secrets_never_reach_slack_or_the_log(w):
    """The signing secret, the bot token and the prod DSN's password appear in no Slack call and not
    in serve's log, after a stage run and a prod run that connected to prod with that password (made
    here, so the test holds alone as well as after the others)."""
    w.stage_job_ok()
    with pymysql.connect(unix_socket=str(w.prod.socket), user="root", database=DB):   # a writer: refused
        job = w.request_prod(OPS1)
        w.click("approve_prod", job, APP1)
        final = w.wait_outcome(job, "failed", timeout=JOB_TIMEOUT)
    assert "stop the application" in final.text + "\n".join(c.text for c in w.thread(job)), final.text
    assert w.db_password
    hidden = {"signing secret": w.secret, "bot token": w.token, "prod DSN password": w.db_password,
              "prod DSN password, percent-encoded": quote(w.db_password, safe=""),
              "prod DSN password's random part": w.db_password[3:19]}   # Pw:<16 hex digits>/@#?
    calls = w.fake.snapshot()
    assert w.cards(job, calls) and w.thread(job, calls), "the prod run's card and thread are not in the record"
    for c in calls:
        seen = json.dumps(c.body, ensure_ascii=False) + json.dumps(c.answer, ensure_ascii=False)
        headers = json.dumps({k: v for k, v in c.headers.items() if k.lower() != "authorization"})
        for what, value in hidden.items():
            assert value not in seen and value not in headers, (what, c.method, seen[:500])
    api = [c for c in calls if c.path.startswith("/api/")]
    assert all(c.headers.get("Authorization") == f"Bearer {w.token}" for c in api)   # the token is only used
    log = w.bot.log_text()
    assert log.strip(), "serve wrote nothing at all"
    for what, value in hidden.items():
        assert value not in log, f"the {what} is in serve's log"
