"""The application as one `Dispatcher`: every handler, over one job store and one alert store.

What `restore-bot serve` and `restore-bot console` (and the tests) hand their transports.
"""
from __future__ import annotations

from handlers.alerts import AlertStore, Oncall
from handlers.backup import BackupHandler
from handlers.clusters import Clusters, ClustersHandler
from handlers.clusters import undo_targets as undo_targets
from handlers.dispatcher import Access, Dispatcher
from handlers.jobstore import JobStore
from handlers.oncall import OncallHandler
from handlers.restore import RestoreHandler


def alert_store(settings, store=None, *, instance_id: str | None = None) -> AlertStore:
    """The alert store beside the jobs (`store`: the job store's own Store, else the configured one),
    for the [watch] source (if any)."""
    named = tuple(getattr(settings, "clusters", None) or ())   # one cluster's view names it (Settings.cluster)
    return AlertStore(store or settings.store, settings.watch.source.redacted() if settings.watch else "-",
                      instance_id=instance_id, cluster=named[0] if len(named) == 1 else None)


def application(settings, store: JobStore, access: Access, *, channel: str | None,
                alerts: AlertStore | None = None, watch_state=None) -> Dispatcher:
    """`channel`: where job cards go (Slack's incident channel; None on the console and KakaoTalk-only
    bots); a cluster's own channel takes its place for its jobs. `alerts`: the process's alert store
    (default: one opened beside the jobs). `watch_state(cluster)`: its watcher's state, for
    `/restore clusters` (serve knows it)."""
    alerts = alerts or alert_store(settings, store.store)
    clusters = Clusters(settings, channel=channel)
    only = next(iter(clusters.by_name.values())).settings   # with one cluster, its settings as before
    return Dispatcher(store, access, [
        RestoreHandler(store, access, channel=channel, has_prod="prod" in only.targets,
                       undo_targets=undo_targets(only.targets), clusters=clusters),
        BackupHandler(store, only.keep, channel=channel, clusters=clusters),
        OncallHandler(Oncall(only, alerts), alerts, store,
                      per_cluster={n: Oncall(c.settings, alerts) for n, c in clusters.by_name.items()}),
        ClustersHandler(store, clusters, watch_state=watch_state,
                        alerts_for=alert_store if clusters.named else lambda _s: alerts),
    ], clusters=clusters)
