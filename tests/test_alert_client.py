"""The alert path's Slack client: one kept-alive connection, kept warm, reopened when Slack closes it."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from types import SimpleNamespace

import pytest
from slack_sdk.errors import SlackApiError

from bot.alert_client import AlertSlackClient, RateLimited
from handlers.alerts import AlertPoster, AlertStore, Oncall, mask_literals
from tests.support.alert_samples import alert_at
from tests.support.fake_slack import FakeSlack


def _poster(fake: FakeSlack, tmp_path, **kw) -> AlertPoster:
    store = AlertStore(str(tmp_path / "s.sqlite3"), "mysql://src")
    settings = SimpleNamespace(oncall=SimpleNamespace(rotation=("UKIM",), rotation_start=None, fallback=None))
    client = AlertSlackClient("xoxb-test", fake.api_url)
    return AlertPoster(client, "CINC", store, Oncall(settings, store), "mysql://src", escalate_after=0, **kw).start()


def test_alerts_go_out_on_one_connection_kept_warm(tmp_path):
    with FakeSlack() as fake:
        poster = _poster(fake, tmp_path, keep_warm=0.2)
        try:
            fake.wait_for(lambda calls: len([c for c in calls if c.method == "auth.test"]) >= 2, timeout=10,
                          what="two keep-warm calls")
            poster.scheduler.pause_job("keep-warm")  # an alert beside a keep-warm call takes a second connection
            time.sleep(0.1)  # (the last keep-warm call reads its answer)
            for pos in (100, 200, 300):
                poster.post(alert_at(pos))  # on this thread: done when it returns
        finally:
            poster.stop()
        calls = fake.snapshot()
    posts = [c for c in calls if c.method == "chat.postMessage"]
    assert [c.body["text"].count("binlog.000001:") for c in posts] == [1, 1, 1], FakeSlack.describe(posts)
    assert all("<@UKIM>" in c.text and "alert_ack" in c.text and "alert_plan" in c.text for c in posts)
    assert all(c.headers["Authorization"] == "Bearer xoxb-test" for c in calls)
    assert len({c.peer for c in calls}) == 1, "every call should reuse the first connection: " + str(
        [(c.method, c.peer) for c in calls])


def test_connection_closed_by_slack_while_idle_is_reopened_at_once(tmp_path):
    with FakeSlack(idle_timeout=0.3) as fake:
        poster = _poster(fake, tmp_path, keep_warm=0)
        try:
            poster.post(alert_at(100))
            time.sleep(1.0)  # the fake closes the idle connection
            poster.post(alert_at(200))
            posts = fake.find("chat.postMessage")  # right after post() returned: no backoff retry was needed
        finally:
            poster.stop()
    assert len(posts) == 2 and "binlog.000001:200" in posts[1].text, FakeSlack.describe(posts)
    assert posts[0].peer != posts[1].peer


def test_rate_limited_alert_waits_as_long_as_slack_asks(tmp_path):
    with FakeSlack() as fake:
        fake.rate_limit("chat.postMessage", 1, retry_after=3)
        poster = _poster(fake, tmp_path, keep_warm=0)
        try:
            poster.post(alert_at(100))
            fake.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage" and c.status == 200],
                          timeout=15, what="the alert, after the 429")
            time.sleep(1.5)  # no second copy arrives later
        finally:
            poster.stop()
        refused = fake.find("chat.postMessage", status=429)
        posted = fake.find("chat.postMessage")
    assert len(refused) == 1 and len(posted) == 1, FakeSlack.describe(refused + posted)
    assert posted[0].at - refused[0].at >= 2.9  # Retry-After: 3, longer than the poster's own first backoff (1 s)


def test_client_raises_slack_refusals_and_keep_warm_reports_trouble_once(caplog):
    with FakeSlack() as fake:
        client = AlertSlackClient("xoxb-test", fake.api_url)
        fake.fail("chat.postMessage", 1)
        with pytest.raises(SlackApiError) as refused:
            client.chat_postMessage(channel="CINC", text="hello")
        fake.rate_limit("chat.postMessage", 1, retry_after=7)
        with pytest.raises(RateLimited) as limited:
            client.chat_postMessage(channel="CINC", text="hello")
        assert client.chat_postMessage(channel="CINC", text="hello")["ok"]
        fake.fail("auth.test", 2)
        with caplog.at_level(logging.INFO, logger="restore-handlers.alerts"):
            for _ in range(3):
                client.keep_warm()
    assert refused.value.response["error"] == "fatal_error"
    assert limited.value.retry_after == 7
    said = [r.getMessage() for r in caplog.records]
    assert said == ["Slack refused auth.test (fatal_error): alerts may not get through", "Slack answers again"], said
    assert not any("xoxb-test" in text for text in said)


def test_alert_masks_quoted_values_in_the_statement(tmp_path):
    """A mass UPDATE that sets a password posts what was hit, not the value (nor keeps it in the store)."""
    alert = dataclasses.replace(alert_at(100), statement="UPDATE users SET password = 'hunter''2', api_token=\"tok-9f\", "
                                                       "k=0xBEEF WHERE id > 5 /* by 'cut' */")
    with FakeSlack() as fake:
        poster = _poster(fake, tmp_path, keep_warm=0)
        try:
            poster.post(alert)
        finally:
            poster.stop()
        posted = fake.find("chat.postMessage")
    stored = json.loads(poster.store._db().execute("SELECT body FROM alerts").fetchone()[0])["statement"]
    assert len(posted) == 1
    for text in (posted[0].body["text"], posted[0].body["blocks"][0]["text"]["text"], stored):
        assert "UPDATE users SET password = '…', api_token=\"…\", k=0x… WHERE id > 5 /*…*/" in text, text
        assert not any(secret in text for secret in ("hunter", "tok-9f", "BEEF", "cut")), text


@pytest.mark.parametrize("statement", [
    "SET p='C:\\', pw='hunter2'",                     # under NO_BACKSLASH_ESCAPES the first value ends at the \\
    "UPDATE t SET pw='x\\'hunter2' WHERE id > 0",       # ... and with backslash escapes it does not
    "UPDATE `o'brien` SET pw='hunter2'",                # a quote inside a name
    "UPDATE t /* don't */ SET pw='hunter2'",            # a quote inside a comment
    "UPDATE t SET pw='hunter2",                         # cut off
])
def test_no_reading_of_the_quotes_leaks_a_value(statement):
    masked = mask_literals(statement)
    assert "hunter2" not in masked and masked.split()[0] == statement.split()[0], masked


def test_a_named_clusters_alert_buttons_plan_and_undo_on_that_cluster(tmp_path):
    """The buttons' value is the event's spec, then @CLUSTER (the command parser's SPEC@cluster);
    the unnamed cluster ("default", or none) keeps the bare spec."""
    import json

    def values(call) -> dict[str, str]:
        blocks = call.body["blocks"]
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        return {e["action_id"]: e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]}

    for cluster, suffix in (("billing", "@billing"), ("default", ""), (None, "")):
        (tmp_path / str(cluster)).mkdir()
        with FakeSlack() as fake:
            poster = _poster(fake, tmp_path / str(cluster), keep_warm=0, cluster=cluster)
            try:
                poster.post(alert_at(100))
            finally:
                poster.stop()
            post = next(c for c in fake.snapshot() if c.method == "chat.postMessage")
        got = values(post)
        assert got["alert_plan"].endswith(suffix) and got["alert_plan"].count("@") == (1 if suffix else 0), got
        assert got["alert_ack"] == alert_at(100).key
