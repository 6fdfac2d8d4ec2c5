"""`/backup now` and `/backup list`. Platform neutral; the dump itself runs in the worker."""
from __future__ import annotations

from handlers import messages
from handlers.jobstore import JobStore
from restore.live.backups import list_backups


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
            backups = list_backups(self.keep.backup_dir)[:20]
            lines = [b.describe() for b in backups]
            if backups and not backups[0].readable:
                # The drill restores the newest dump, and the archiver keeps every binlog
                # while it cannot read it: this one needs acting on, not just listing.
                lines.append(f"⚠ the newest backup {backups[0].path.name} cannot be restored: take a new one "
                             "with `/backup now`, then move the damaged file out of the backup directory")
            elif any(not b.readable for b in backups):
                lines.append("⚠ the dumps marked UNREADABLE cannot be restored: move them out of the backup directory")
            reply.ephemeral("\n".join(lines) or "No backups yet: `/backup now` takes one.")
            return None
        if not self.access.can_operate(user):
            self.store.audit(user, "refused backup now", None, "not an operator")
            reply.ephemeral(messages.NOT_ALLOWED.format(user=user, what="take a backup"))
            return None
        job = self.store.create("backup", "backup", user, origin=origin, channel=self.channel)
        self.store.audit(user, "queued backup", job.id)
        reply.ephemeral(f"Backup job {job.id} queued.")
        return job
