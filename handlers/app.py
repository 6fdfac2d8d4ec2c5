"""The application as one `Dispatcher`: every handler, over one job store and one alert store.

What `restore-bot serve` and `restore-bot console` (and the tests) hand their transports.
"""
from __future__ import annotations

from handlers.alerts import AlertStore, Oncall
from handlers.backup import BackupHandler
from handlers.dispatcher import Access, Dispatcher
from handlers.jobstore import JobStore
from handlers.oncall import OncallHandler
from handlers.restore import RestoreHandler


def alert_store(settings) -> AlertStore:
    """The alert store beside the jobs, for the [watch] source (if any)."""
    return AlertStore(str(settings.store_path), settings.watch.source.redacted() if settings.watch else "-")


def undo_targets(targets: dict) -> dict[str, bool]:
    """The kept targets an undo may write into (not a sandbox), each with whether it is production:
    the prod entry, or a target with the prod entry's DSN."""
    prod = targets.get("prod")
    return {name: name == "prod" or (prod is not None and t.dsn == prod.dsn)
            for name, t in targets.items() if t.dsn != "sandbox"}


def application(settings, store: JobStore, access: Access, *, channel: str | None,
                alerts: AlertStore | None = None) -> Dispatcher:
    """`channel`: where job cards go (Slack's incident channel; None on the console and KakaoTalk-only
    bots). `alerts`: the process's alert store (default: one opened beside the jobs)."""
    alerts = alerts or alert_store(settings)
    return Dispatcher(store, access, [
        RestoreHandler(store, access, channel=channel, has_prod="prod" in settings.targets,
                       undo_targets=undo_targets(settings.targets)),
        BackupHandler(store, settings.keep, channel=channel),
        OncallHandler(Oncall(settings, alerts), alerts, store),
    ])
