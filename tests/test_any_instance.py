"""Behind a load balancer, Slack's requests reach any `restore-bot serve` instance: two instances on
one MariaDB store, `/restore stage` sent to one, `/restore prod` to the other, and the second
approver's *Approve* click to the first again. The prod job runs once, exact; its approval request,
card and outcome are each posted once, whichever instance took which request."""
from __future__ import annotations

import secrets
import time

import pytest

from handlers.jobstore import JobState, JobStore
from tests.support.db import checksums, target_url
from tests.support.fake_slack import SlackSigner
from tests.support.serves import serving
from tests.test_prod_takeover import APP_WRITES, SHOP
from tests.test_worker_ha import _finished, _wait

pytestmark = pytest.mark.mysql
CHANNEL = "CHA"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return SHOP.build_on_new_source(tmp_path_factory.mktemp("any_instance"))


@pytest.fixture
def fleet(shop, target, tmp_path):
    db = f"rb_any_instance_{secrets.token_hex(3)}"
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
        for sql in APP_WRITES:
            cur.execute(sql)
    config = tmp_path / "restore-bot.toml"
    config.write_text(f'[slack]\nchannel = "{CHANNEL}"\n'
                      '[access]\noperators = ["UOPS1", "UOPS2"]\napprovers = ["UOPS2"]\n'
                      f'[source]\nsnapshots = ["{shop.snapshot}"]\nbinlogs = "{shop.binlog_dir}"\n'
                      f'[targets.stage]\ndsn = "sandbox"\n[targets.prod]\ndsn = "{target_url(target)}"\n'
                      f'[store]\nurl = "{target.url}/{db}"\n')
    jobs = JobStore(f"{target.url}/{db}")
    try:
        with serving(config, tmp_path) as (fake, bots):
            yield jobs, fake, [SlackSigner(b.url, b.env["SLACK_SIGNING_SECRET"], fake) for b in bots], bots
    finally:
        jobs.store.dispose()
        with target.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
            cur.execute("DROP DATABASE IF EXISTS shop")
            cur.execute("SHOW DATABASES LIKE 'shop\\_\\_before\\_%'")
            for (aside,) in cur.fetchall():
                cur.execute(f"DROP DATABASE `{aside}`")


def _ok(answer) -> None:
    assert answer.status == 200, (answer.status, answer.body)


def test_each_request_may_reach_either_instance(fleet, shop, target):
    jobs, fake, (to_a, to_b), bots = fleet
    _ok(to_a.command("stage", "UOPS1", CHANNEL)[0])
    stage = _wait(lambda: next(iter(jobs.jobs(kind="stage", limit=5)), None), 30, 0.1)
    stage = _finished(jobs, stage.id, 120)
    assert stage.state == JobState.SUCCEEDED, (stage.error, [b.log_tail() for b in bots])

    mark = fake.mark()
    _ok(to_b.command("prod", "UOPS1", CHANNEL)[0])

    def approval_requests(calls):
        return [c for c in calls[mark:] if c.method == "chat.postMessage" and "approve_prod" in c.text]
    request = fake.wait_for(approval_requests, 20, "the prod approval request")
    prod = _wait(lambda: next(iter(jobs.jobs(kind="prod", limit=5)), None), 10, 0.1)
    assert prod.state == JobState.AWAITING_APPROVAL, prod
    _ok(to_a.click("approve_prod", prod.id, "UOPS2", CHANNEL, block_id=f"approval-{prod.id}")[0])
    done = _finished(jobs, prod.id, 180)
    assert done.state == JobState.SUCCEEDED, (done.error, jobs.events(prod.id), [b.log_tail() for b in bots])

    with target.connect() as conn, conn.cursor() as cur:
        assert checksums(conn, ["shop"]) == shop.before
        cur.execute(f"SELECT COUNT(*) FROM shop__before_{prod.id.lower()}.items")
        assert cur.fetchone()[0] == 2
    time.sleep(3)   # any second post of the request, the card or the outcome would come by now
    calls = fake.snapshot()
    assert len(approval_requests(calls)) == len(request) == 1, [c.text[:80] for c in approval_requests(calls)]
    cards = [c for c in calls if c.method == "chat.postMessage" and not c.thread_ts and f"`{prod.id}`" in c.text]
    assert len(cards) == 1, [c.text[:80] for c in cards]
    outcome = [c for c in calls if c.method == "chat.postMessage" and c.thread_ts == cards[0].ts
               and c.text.startswith("✔")]
    assert len(outcome) == 1, [c.text[:80] for c in outcome]
    approved = [a for a in jobs.audit_log(50) if a["job"] == prod.id and "approv" in a["action"]]
    assert approved and all(a["actor"] == "UOPS2" for a in approved if a["action"].startswith("approved")), approved
