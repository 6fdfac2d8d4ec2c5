"""The configured clusters as the handlers see them, which one a command is for, and `/restore clusters`.

A file without [clusters.NAME] sections is one cluster, "default": its jobs carry no cluster name
(so they read as before). With [clusters], every job's args name its cluster, and a command that
names none is refused when there are several to choose from.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers import messages
from handlers.commands import CLUSTER_COMMANDS, Command, CommandError
from handlers.dispatcher import Reply
from handlers.jobstore import Job, JobKind, JobStore
from restore.errors import RestoreError
from restore.live.backups import list_backups
from restore.mysql.flavor import Flavor

__all__ = ["CLUSTER_COMMANDS", "Cluster", "Clusters", "ClustersHandler", "undo_targets"]


@dataclass(frozen=True)
class Cluster:
    name: str
    has_prod: bool
    undo_targets: dict[str, bool]   # kept targets an undo may write into -> whether it is production
    channel: str | None             # where its job cards go (None: the transport's answer only)
    settings: Any                   # bot.config.Settings as this cluster sees it (source, targets, watch, keep)


def undo_targets(targets: dict) -> dict[str, bool]:
    """The kept targets an undo may write into (not a sandbox), each with whether it is production:
    the prod entry, or a target with the prod entry's DSN."""
    prod = targets.get("prod")
    return {name: name == "prod" or (prod is not None and t.dsn == prod.dsn)
            for name, t in targets.items() if t.dsn != "sandbox"}


def views(settings) -> dict:
    """Each cluster's name and its settings as it sees them (bot.config.Settings.cluster); settings
    that know no clusters (a test's stand-in) are the one cluster "default"."""
    if not hasattr(settings, "cluster_names"):
        return {"default": settings}
    return {name: settings.cluster(name) for name in settings.cluster_names}


class Clusters:
    """Every configured cluster; `named`: the config has [clusters] (jobs then carry the name)."""

    def __init__(self, settings, *, channel: str | None) -> None:
        self.named = bool(getattr(settings, "clusters", None))
        self.by_name: dict[str, Cluster] = {}
        for name, view in views(settings).items():
            own = view.slack.channel if channel else None   # its [clusters.NAME] channel, else the global one
            self.by_name[name] = Cluster(name, "prod" in view.targets, undo_targets(view.targets), own, view)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.by_name)

    def resolve(self, typed: str | None) -> Cluster:
        """The cluster a command names; None with only one configured is that one."""
        if typed is None and len(self.by_name) == 1:
            return next(iter(self.by_name.values()))
        if typed is None:
            raise CommandError(messages.CLUSTER_MISSING.format(choices=self.choices()))
        if typed.lower() not in self.by_name:
            raise CommandError(messages.CLUSTER_UNKNOWN.format(name=typed, choices=self.choices()))
        return self.by_name[typed.lower()]

    def choices(self) -> str:
        return ", ".join(f"`{n}`" for n in self.by_name)

    def of(self, job: Job) -> Cluster:
        """The cluster a job is for (a job from before [clusters]: the only one, or the first)."""
        name = (job.args or {}).get("cluster")
        return self.by_name.get(name) or next(iter(self.by_name.values()))

    def tag(self, cluster: Cluster) -> dict:
        """What a job's args carry to name its cluster."""
        return {"cluster": cluster.name} if self.named else {}

    def same(self, job: Job, cluster: Cluster) -> bool:
        return not self.named or (job.args or {}).get("cluster", next(iter(self.by_name))) == cluster.name


class ClustersHandler:
    """`/restore clusters`: per cluster, what would restore it and how fresh that is."""

    commands = ("clusters",)

    def __init__(self, store: JobStore, clusters: Clusters, *, watch_state: Callable[[str], str] | None = None,
                 alerts_for: Callable[[Any], Any] | None = None, clock: Callable[[], float] = time.time) -> None:
        """`watch_state(name)`: the watcher's state as the process running it knows it (serve);
        `alerts_for(settings)`: the cluster's AlertStore (its saved position and alerts)."""
        self.store, self.clusters, self.clock = store, clusters, clock
        self.watch_state, self.alerts_for = watch_state, alerts_for

    def handle(self, cmd: Command, reply: Reply) -> None:
        reply.ephemeral("\n\n".join(self.describe(c) for c in self.clusters.by_name.values()))

    def describe(self, c: Cluster) -> str:
        s = c.settings
        return "\n".join([f"*{c.name}*" + (f" · <#{c.channel}>" if c.channel else ""),
                          "• snapshot: " + self._snapshot(s), "• binlogs: " + self._binlogs(s),
                          "• watch: " + self._watch(c), "• drill: " + self._drill(c)])

    def _age(self, ts: float) -> str:
        return _ago(self.clock() - ts)

    def _snapshot(self, s) -> str:
        if s.keep.backup_dir:
            try:
                listed = list_backups(s.keep.backup_dir)
            except (OSError, RestoreError) as exc:
                return f"cannot list {s.keep.backup_dir}: {exc}"
            if listed:
                b = listed[0]
                return f"{b.path.name}, {self._age(b.taken.timestamp())} old" + ("" if b.readable else " (UNREADABLE)")
        files = [Path(f.partition("=")[2] or f) if "=" in f and not Path(f).exists() else Path(f)
                 for f in s.source.snapshots]
        found = [(p.stat().st_mtime, p) for p in files if p.exists()]
        if not found:
            return "none" + (f" ({len(files)} configured, none readable)" if files else "")
        mtime, newest = max(found)
        return f"{newest.name}, {self._age(mtime)} old"

    def _binlogs(self, s) -> str:
        archive = s.keep.archive_dir or (s.source.binlog_source if isinstance(s.source.binlog_source, Path) else None)
        if archive is None:
            live = s.source.binlog_source
            return f"read live from {live.redacted()}" if live is not None else "not configured"
        try:
            files = sorted((p for p in Path(archive).iterdir() if p.suffix[1:].isdigit()),
                           key=lambda p: int(p.suffix[1:]))
        except OSError as exc:
            return f"cannot read {archive}: {exc.strerror}"
        if not files:
            return f"none in {archive}"
        newest = files[-1].stat()
        head = f"{files[-1].name}:{newest.st_size}, last written {self._age(newest.st_mtime)} ago"
        # How far behind: only an archive of the watched server compares with that server's binlog.
        live = s.watch.source if s.watch and s.keep.archive_dir else None
        return head + _lag(live, files[-1].name, newest.st_size)

    def _watch(self, c: Cluster) -> str:
        s = c.settings
        if s.watch is None:
            return "not watched"
        state = self.watch_state(c.name) if self.watch_state else "configured"
        alerts = self.alerts_for(s) if self.alerts_for else None
        pos = alerts.load() if alerts is not None else None
        text = f"{state}" + (f", read up to {pos[0]}:{pos[1]}" if pos else ", nothing read yet")
        last = getattr(alerts, "last_alert", None)   # wanted: AlertStore.last_alert() (the store's owner adds it)
        if last is not None and (info := last()):
            text += f"; last alert {info['reason']} {self._age(info['created'])} ago"
        elif alerts is not None and (keys := alerts.unacknowledged(self.clock() - 86400)):
            info = alerts.get(keys[-1]) or {}
            when = f", posted {self._age(float(info['ts']))} ago" if info.get("ts") else ""
            text += (f"; last alert not acknowledged: {info.get('reason', '?')}{when} "
                     f"({len(keys)} unacknowledged in 24 h)")
        elif alerts is not None:
            text += "; no unacknowledged alert in 24 h"
        return text

    def _drill(self, c: Cluster) -> str:
        drills = [j for j in self.store.jobs(kind=JobKind.DRILL, limit=50) if self.clusters.same(j, c)]
        done = next((j for j in drills if j.finished), None)
        if done is None:
            return "never run" + (" (one is running)" if drills else "")
        verdict = "PASSED" if done.state == "succeeded" else str(done.state).upper()
        return f"{verdict} {self._age(done.updated)} ago ({done.id})"


def _lag(source, file: str, size: int) -> str:
    """How far the archive's newest file is behind the watched server's binlog (asked live, briefly)."""
    if source is None:
        return ""
    try:
        with source.connect(connect_timeout=2, read_timeout=2) as conn, conn.cursor() as cur:
            cur.execute(Flavor.detect(conn).master_status_sql())   # MySQL 8.4 has no SHOW MASTER STATUS
            row = cur.fetchone()
    except Exception as exc:   # a down source is a state to show, not an error of the command
        return f"; source unreachable ({type(exc).__name__})"
    if not row:
        return "; the source logs no binlog"
    if row[0] == file:
        return f"; {row[1] - size} bytes behind {row[0]}:{row[1]}" if row[1] > size else "; up to date"
    return f"; behind: the source writes {row[0]}:{row[1]}"


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h" if s < 172800 else f"{s // 86400} d"
