"""An alert's *This is the incident* and *Expected* buttons decide only their own cluster's plans:
the saved choice and the expected events are kept per cluster in the store (its `cluster`
columns), as are alert keys, so the same-looking event in two clusters is two alerts."""
from __future__ import annotations

import time

import pytest

from bot.config import load_settings
from handlers.alerts import AlertStore
from handlers.app import application
from handlers.commands import ALERT_EXPECTED, ALERT_INCIDENT
from handlers.jobstore import JobStore
from restore.live.watcher import Alert
from tests.test_clusters import TWO, _Everyone, _Rec, _write


def _posted(alerts: AlertStore, gtid: str, reason: str) -> str:
    """An alert at bin.000001:900 (the same file:pos, server_id and second in every cluster), posted;
    its key as the buttons carry it."""
    alert = alerts.scoped(Alert(key="bin.000001:900:1:1700000000", reason=reason, statement=reason, database="club",
                                table="posts", rows=None, file="bin.000001", pos=900, tx_file="bin.000001",
                                tx_pos=860, gtid=gtid, server_time=1700000000, thread_id=7, detected_at=time.time()))
    assert alerts.claim(alert, "UKIM")
    alerts.posted(alert.key, "CINC", "1.900")
    return alert.key


def test_an_alerts_buttons_decide_only_its_own_clusters_plans(tmp_path):
    s = load_settings(str(_write(tmp_path, TWO)), env={})
    store = JobStore(tmp_path / "jobs.sqlite3")
    app = application(s, store, _Everyone(), channel=None)
    billing = AlertStore(store.store, "mysql://billing-db", cluster="billing")
    homepage = AlertStore(store.store, "mysql://home-db", cluster="homepage")
    incident, batch = _posted(billing, "0-2-9", "DROP TABLE"), _posted(homepage, "0-1-9", "UPDATE without WHERE")
    assert incident != batch and incident.startswith("billing/")

    rec = _Rec()
    app.action(ALERT_INCIDENT, incident, "U1", "console", rec)
    app.action(ALERT_EXPECTED, batch, "U1", "console", rec)
    assert store.choice("billing")["stop"] == "0-2-9" and store.choice("homepage") is None
    assert store.expected("homepage") == ["0-1-9", "bin.000001:860"] and store.expected("billing") == []
    plans = {}
    for name in ("billing", "homepage"):
        rec = _Rec()
        app.text(f"plan {name}", "U1", "console", rec)
        plans[name] = rec.job.args
    assert plans["billing"]["stop_before"] == "0-2-9" and "expected" not in plans["billing"], plans
    assert plans["homepage"]["stop_before"] == "auto" and plans["homepage"]["expected"] == ["0-1-9", "bin.000001:860"]
    rec = _Rec()
    app.text("choice", "U1", "console", rec)                  # several clusters: each one's, by name
    assert "*billing*: Saved choice" in rec.private[0] and "*homepage*: No saved choice" in rec.private[0], rec.private
    rec = _Rec()
    app.text("choice clear --cluster billing", "U1", "console", rec)
    assert store.choice("billing") is None and "cleared" in rec.private[0] and store.choice("homepage") is None


def test_choice_takes_the_cluster_as_a_word() -> None:
    from handlers.commands import CommandError, parse
    assert (parse("/restore choice billing", "U1").name, parse("/restore choice billing", "U1").cluster) == ("choice", "billing")
    cmd = parse("/restore choice clear homepage", "U1")
    assert (cmd.name, cmd.cluster) == ("choice clear", "homepage")
    assert (parse("choice clear", "U1").name, parse("choice clear", "U1").cluster) == ("choice clear", None)
    with pytest.raises(CommandError, match="two clusters"):
        parse("choice clear homepage --cluster billing", "U1")
    with pytest.raises(CommandError, match="one cluster"):
        parse("choice clear homepage billing", "U1")
