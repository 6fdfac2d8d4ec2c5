"""`restore-bot watch`: the watcher and its alert path, alone or inside `serve`."""
from __future__ import annotations

import signal
import sys
import time

from restore.destructive import DestructiveRules
from restore.dsn import Dsn
from restore.watcher import Alert, Watcher

from .alerts import AlertPoster, AlertStore, Oncall, alert_text


class ConsoleAlerts:
    """Without Slack: alerts on stderr, with how long after the commit they were seen."""

    def __init__(self, store: AlertStore, oncall: Oncall, source: str) -> None:
        self.store, self.oncall, self.source = store, oncall, source

    def __call__(self, alert: Alert) -> None:
        person = self.oncall.current()
        if self.store.claim(alert, person):
            lag = max(0.0, alert.detected_at - alert.server_time)
            print(alert_text(alert, person, self.source) + f"\n(seen {lag:.3f} s after the statement started)",
                  file=sys.stderr, flush=True)


def build_watcher(settings, source: Dsn, *, client=None, on_posted=None,
                  on_trouble=None) -> tuple[Watcher, AlertPoster | None]:
    store = AlertStore(str(settings.store_path), source.redacted())
    oncall = Oncall(settings, store)
    watch = settings.watch
    rules = DestructiveRules(fraction=watch.mass_fraction, min_rows=watch.mass_min_rows) if watch else DestructiveRules()
    poster = None
    if client is not None and settings.slack.channel:
        poster = AlertPoster(client, settings.slack.channel, store, oncall, source.redacted(),
                             escalate_after=settings.oncall.escalate_after_minutes * 60,
                             usergroup=settings.oncall.usergroup, on_posted=on_posted).start()
        on_alert = poster
    else:
        on_alert = ConsoleAlerts(store, oncall, source.redacted())
    watcher = Watcher(source, store, on_alert, databases=watch.databases if watch else (), rules=rules,
                      on_trouble=on_trouble or (lambda text: print(f"watch: {text}", file=sys.stderr, flush=True)))
    return watcher, poster


def run_watch(settings, source_text: str | None) -> int:
    if source_text:
        source = Dsn.parse(source_text, what="--source")
    elif settings.watch is not None:
        source = settings.watch.source
    else:
        print("restore-bot watch: pass --source mysql://user:pass@host:port or set [watch] source", file=sys.stderr)
        return 2
    client = None
    if settings.slack.bot_token and settings.slack.channel:
        from .slack_app import web_client
        client = web_client(settings.slack.bot_token.reveal(), settings.slack.api_url)
    watcher, poster = build_watcher(settings, source, client=client)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    print(f"watching {source.redacted()} for destructive events", file=sys.stderr, flush=True)
    try:
        watcher.run_forever()
    except KeyboardInterrupt:
        watcher.stop()
    finally:
        if poster:
            poster.stop()
        time.sleep(0.1)
    return 0
