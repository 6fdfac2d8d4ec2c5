"""`/backup now` and `/backup list`. Platform neutral; the dump itself runs in the worker."""
from __future__ import annotations

from bot import messages
from bot.jobstore import JobStore
from restore.backup import list_backups


class BackupHandler:
    def __init__(self, store: JobStore, access, keep, *, channel: str | None) -> None:
        self.store, self.access, self.keep, self.channel = store, access, keep, channel

    def handle(self, text: str, user: str, reply, origin: str = "console"):
        words = text.strip().split()
        if words and words[0].lstrip("/").lower() == "backup":
            words = words[1:]
        what = words[0].lower() if words else "list"
        self.store.audit(user, f"request backup {what}")
        if what not in ("now", "list") or len(words) > 1:
            reply.ephemeral(messages.BACKUP_USAGE)
            return None
        if not self.keep.backup_dir:
            reply.ephemeral(messages.NO_KEEP)
            return None
        if what == "list":
            backups = list_backups(self.keep.backup_dir)
            reply.ephemeral("\n".join(b.describe() for b in backups[:20]) or "No backups yet: `/backup now` takes one.")
            return None
        if not self.access.can_operate(user):
            self.store.audit(user, "refused backup now", None, "not an operator")
            reply.ephemeral(messages.NOT_ALLOWED.format(user=user, what="take a backup"))
            return None
        job = self.store.create("backup", "backup", user, origin=origin, channel=self.channel)
        self.store.audit(user, "queued backup", job.id)
        reply.ephemeral(f"Backup job {job.id} queued.")
        return job
