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

    def __init__(self, store: JobStore, keep, *, channel: str | None) -> None:
        """`keep`: the [keep] settings (backup_dir is where dumps go and are listed from)."""
        self.store, self.keep, self.channel = store, keep, channel

    def handle(self, cmd: Command, reply: Reply) -> None:
        if not self.keep.backup_dir:
            reply.ephemeral(messages.NO_KEEP)
        elif cmd.name == "backup list":
            reply.ephemeral(backups(list_backups(self.keep.backup_dir)[:LISTED]))
        else:
            job = self.store.create(JobKind.BACKUP, "backup", cmd.user, origin=cmd.origin, channel=self.channel)
            self.store.audit(cmd.user, "queued backup", job.id)
            reply.queued(job)
