"""`restore-bot watch` without Slack: each alert goes to the log, naming the on-call person, the
table and how long after the statement it was seen."""
from __future__ import annotations

import logging
import time
from types import SimpleNamespace

from bot.watch import ConsoleAlerts
from handlers.alerts import AlertStore, Oncall
from restore.live.watcher import Alert


def test_an_alert_is_logged_with_who_is_on_call_and_how_late(tmp_path, caplog):
    store = AlertStore(str(tmp_path / "s.sqlite3"), "mysql://src")
    settings = SimpleNamespace(oncall=SimpleNamespace(rotation=("UKIM",), rotation_start=None, fallback=None))
    alerts = ConsoleAlerts(store, Oncall(settings, store), "mysql://src")
    now = time.time()
    alert = Alert(key="binlog.000001:500", reason="DROP TABLE", statement="DROP TABLE club.log", database="club",
                  table="log", rows=None, file="binlog.000001", pos=500, tx_file="binlog.000001", tx_pos=460,
                  gtid=None, server_time=int(now) - 2, thread_id=7, detected_at=now)
    with caplog.at_level(logging.INFO, logger="restore-bot.watch"):
        alerts(alert)
    said = [r for r in caplog.records if r.name == "restore-bot.watch"]
    assert len(said) == 1 and said[0].levelno == logging.WARNING, said
    text = said[0].getMessage()
    assert "DROP TABLE" in text and "UKIM" in text and "club.log" in text.replace("`", ""), text
    assert "(seen 2." in text and "s after the statement started)" in text, text
    # Recorded as said: neither another instance nor a restart claims it to say it again.
    assert store.unposted(now - 60) == [] and not store.claim(alert, "UKIM")
    alerts(alert)
    assert len([r for r in caplog.records if r.name == "restore-bot.watch"]) == 1
