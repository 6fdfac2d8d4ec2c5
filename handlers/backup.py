"""`/backup now` and `/backup list`. Platform neutral; the dump itself runs in the worker."""
from __future__ import annotations

from handlers import messages
from handlers.commands import Command
from handlers.dispatcher import Reply
from handlers.jobstore import JobKind, JobStore
from handlers.presenter.answers import backups
from restore.live.backups import list_backups

LISTED = 20   # the newest dumps `/backup list` shows


class BackupHandler:
    commands = ("backup now", "backup list")

    def __init__(self, store: JobStore, keep, *, channel: str | None, clusters=None) -> None:
        """`keep`: the [keep] settings (backup_dir is where dumps go and are listed from);
        `clusters` (handlers.clusters.Clusters): each cluster's own [keep] and channel instead."""
        self.store, self.keep, self.channel, self.clusters = store, keep, channel, clusters

    def handle(self, cmd: Command, reply: Reply) -> None:
        keep, channel = self.keep, self.channel
        if self.clusters is not None:
            cluster = self.clusters.resolve(cmd.cluster)
            keep, channel = cluster.settings.keep, cluster.channel
        on = {"cluster": cmd.cluster} if cmd.cluster else {}
        if not keep.backup_dir:
            reply.ephemeral(messages.NO_KEEP)
        elif cmd.name == "backup list":
            reply.ephemeral(backups(list_backups(keep.backup_dir)[:LISTED]))
        else:
            job = self.store.create(JobKind.BACKUP, "backup", cmd.user, args=on, origin=cmd.origin, channel=channel)
            self.store.audit(cmd.user, "queued backup", job.id, f"cluster={cmd.cluster}" if cmd.cluster else "")
            reply.queued(job)
