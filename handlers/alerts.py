"""Destructive-event alerts: who is on call, posting within a second, escalation, and memory.

The alert path owns its own Slack client and thread: it never waits behind job cards, a
running replay, or retries of other messages. Alerts are remembered by their binlog position
in the job store's database, so a watcher that restarts and re-reads an event never pings twice,
nor does another serve instance on the same store that takes the watch over.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import queue
import re
import socket
import sqlite3
import threading
import time
from datetime import date, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
import sqlalchemy as sa
from slack_sdk.errors import SlackApiError

from handlers.store import Store, open_store
from handlers.store_schema import DEFAULT_CLUSTER, alerts, oncall_override, watch_position
from restore.live.watcher import Alert

log = logging.getLogger("restore-handlers.alerts")
_RETRY_DELAYS = (1, 2, 5, 10, 30, 60)   # seconds before each repeated attempt to post an alert
KEEP_WARM_SECONDS = 30.0  # how often an idle alert client touches Slack, so its connection stays open


ALERT_CLAIM_SECONDS = 30.0   # an alert claimed by another instance and not posted after this is claimed again


def default_instance_id() -> str:
    """Who claims alerts when the caller names nobody: the host, so a restarted process on the same
    host carries on with its predecessor's unposted alerts at once, while another host waits
    ALERT_CLAIM_SECONDS for them."""
    return socket.gethostname()


class AlertStore:
    """Watch positions, sent alerts and the on-call override, beside the jobs (the tables are in
    handlers/store_schema.py; a SQLite path or a database URL, as handlers/store.py opens)."""

    def __init__(self, path: str | Store, source: str, *, instance_id: str | None = None,
                 cluster: str | None = None) -> None:
        self.source = source
        self.cluster = cluster or DEFAULT_CLUSTER   # the watched cluster: in its alerts' keys
        self.instance_id = instance_id or default_instance_id()
        # No fsync per alert: a lost record is re-read from the binlog (its position is lost with it).
        self.store = open_store(path, durable=False)
        self.path = self.store.where

    def _db(self) -> sqlite3.Connection:
        """A DB-API connection to a SQLite store, for a test that reads a table as it is stored."""
        if self.store.path is None:
            raise TypeError(f"store {self.store.where} is a database server, not a SQLite file")
        return sqlite3.connect(self.store.path)

    # PositionStore for restore.live.watcher.Watcher
    @property
    def _position_key(self) -> str:
        # Two clusters may watch one server (different databases on it): each reads at its own pace.
        return self.source if self.cluster == DEFAULT_CLUSTER else f"{self.cluster}/{self.source}"

    def load(self) -> tuple[str, int] | None:
        w = watch_position.c
        with self.store.read() as db:
            for key in dict.fromkeys((self._position_key, self.source)):   # a position saved before it was per cluster
                row = db.execute(sa.select(w.file, w.pos).where(w.source == key)).first()
                if row:
                    return row[0], int(row[1])
        return None

    def save(self, file: str, pos: int) -> None:
        with self.store.read() as db:
            self.store.upsert(db, watch_position, {"source": self._position_key, "file": file, "pos": pos}, "source")

    def scoped(self, alert: Alert) -> Alert:
        """The alert with its cluster in its key: two clusters whose servers share a server_id (and
        the same binlog file:pos and second) never take each other's alert for theirs. The
        `default` cluster's keys stay as they were (a store written before clusters had names)."""
        if self.cluster == DEFAULT_CLUSTER or alert.key.startswith(f"{self.cluster}/"):
            return alert
        return dataclasses.replace(alert, key=f"{self.cluster}/{alert.key}")

    def claim(self, alert: Alert, oncall: str | None) -> bool:
        """Record an alert; False if this event was alerted before (a re-read after a restart, or by
        another instance: the alert's key is unique in the store, the insert decides). One recorded
        but never posted (Slack failed, or its poster died in between) is claimed again by the
        instance that claimed it, or by any once ALERT_CLAIM_SECONDS have passed."""
        alert = self.scoped(alert)
        # The whole alert (values masked), so that one Slack never took can be posted after a restart.
        body = json.dumps({**dataclasses.asdict(alert), "statement": mask_literals(alert.statement)}, ensure_ascii=False)
        if self.store.insert_new(alerts, {
                "key": alert.key, "source": self.source, "cluster": self.cluster, "reason": alert.reason, "oncall": oncall,
                "created": time.time(), "body": body, "severity": alert.severity, "escalations": 0,
                "claimed_by": self.instance_id, "claimed_at": self.store.now()}):
            return True
        a = alerts.c
        with self.store.read() as db:
            cur = db.execute(alerts.update().where(
                a.key == alert.key, a.ts.is_(None),
                sa.or_(a.claimed_by.is_(None), a.claimed_by == self.instance_id,
                       a.claimed_at < self.store.now() - ALERT_CLAIM_SECONDS))
                .values(claimed_by=self.instance_id, claimed_at=self.store.now()))
        return cur.rowcount == 1

    def claimed_elsewhere(self, key: str) -> bool:
        """Another instance claimed this alert and may be posting it now: ask again later."""
        a = alerts.c
        with self.store.read() as db:
            return db.execute(sa.select(a.key).where(
                a.key == key, a.ts.is_(None), a.claimed_by != self.instance_id,
                a.claimed_at >= self.store.now() - ALERT_CLAIM_SECONDS)).first() is not None

    def posted(self, key: str, channel: str, ts: str) -> None:
        with self.store.read() as db:
            db.execute(alerts.update().where(alerts.c.key == key).values(channel=channel, ts=ts))

    def unposted(self, since: float) -> list[Alert]:
        """Alerts recorded after `since` that never reached Slack (it refused, and we stopped before a retry)."""
        a = alerts.c
        with self.store.read() as db:
            rows = db.execute(sa.select(a.body).where(a.source == self.source, a.ts.is_(None), a.created > since)
                              .order_by(a.created)).all()
        out = []
        for (body,) in rows:
            try:
                out.append(Alert(**json.loads(body)))
            except (TypeError, ValueError):  # recorded by an older version: the statement alone
                log.warning("an alert recorded before this version was never posted and cannot be rebuilt: %.80s", body)
        return out

    def unacknowledged(self, since: float) -> list[str]:
        """Keys of alerts posted after `since` that nobody acknowledged and that still escalate."""
        a = alerts.c
        with self.store.read() as db:
            return list(db.execute(sa.select(a.key).where(
                a.source == self.source, a.ts.is_not(None), a.acked_by.is_(None), a.severity != "suspect",
                a.escalations < 3, a.created > since).order_by(a.created)).scalars())

    def ack(self, key: str, user: str) -> bool:
        with self.store.read() as db:
            cur = db.execute(alerts.update().where(alerts.c.key == key, alerts.c.acked_by.is_(None))
                             .values(acked_by=user))
        return cur.rowcount == 1

    def mark(self, key: str, what: str, user: str) -> bool:
        """An operator says what the event was ("expected" or "incident"); it counts as acknowledged
        (escalation stops). False if it was marked so before."""
        a = alerts.c
        with self.store.read() as db:
            cur = db.execute(alerts.update().where(a.key == key, sa.or_(a.marked.is_(None), a.marked != what))
                             .values(marked=what, marked_by=user, acked_by=sa.func.coalesce(a.acked_by, user)))
        return cur.rowcount == 1

    _FIELDS = ("key", "reason", "oncall", "ts", "channel", "acked_by", "escalations", "severity", "marked",
               "marked_by", "cluster", "body")

    def get(self, key: str) -> dict | None:
        """The alert as recorded; "event" is what the watcher reported (values masked), when known."""
        with self.store.read() as db:
            row = db.execute(sa.select(*(alerts.c[f] for f in self._FIELDS)).where(alerts.c.key == key)).first()
        if not row:
            return None
        info = dict(zip(self._FIELDS, row))
        try:
            info["event"] = json.loads(info.pop("body") or "null")
        except ValueError:
            info["event"] = None
        return info

    def escalated(self, key: str) -> int:
        with self.store.read() as db:
            db.execute(alerts.update().where(alerts.c.key == key).values(escalations=alerts.c.escalations + 1))
        return self.get(key)["escalations"]

    def set_oncall(self, user: str) -> None:
        with self.store.read() as db:
            self.store.upsert(db, oncall_override, {"id": 1, "user": user, "since": time.time()}, "id")

    def oncall_override(self) -> str | None:
        with self.store.read() as db:
            row = db.execute(sa.select(oncall_override.c.user).where(oncall_override.c.id == 1)).first()
        return row[0] if row else None


class _ClaimedElsewhere(RuntimeError):
    """Another instance claimed the alert and has not posted it yet: post() retries with backoff."""


class Oncall:
    """Who is on call: `/oncall set` override, else the weekly rotation, else RESTORE_BOT_ONCALL."""

    def __init__(self, settings, store: AlertStore) -> None:
        self.cfg = settings.oncall
        self.store = store

    def current(self, today: date | None = None) -> str | None:
        return self.store.oncall_override() or self._rotation(today or date.today(), 0) or self.cfg.fallback

    def next_after(self, user: str | None, today: date | None = None) -> str | None:
        rotation = list(self.cfg.rotation)
        if user in rotation:
            return rotation[(rotation.index(user) + 1) % len(rotation)]
        return self._rotation(today or date.today(), 1)

    def _rotation(self, today: date, offset: int) -> str | None:
        rotation = list(self.cfg.rotation)
        if not rotation:
            return None
        start = self.cfg.rotation_start or date(2024, 1, 1)
        monday = start - timedelta(days=start.weekday())
        weeks = (today - monday).days // 7
        return rotation[(weeks + offset) % len(rotation)]


def mention(user: str | None) -> str:
    if not user:
        return "(nobody is on call: set one with `/oncall set @user`)"
    return f"<!subteam^{user}>" if user.startswith("S") else f"<@{user}>"


def _literal_pattern(backslash_escapes: bool) -> re.Pattern:
    """Names (kept), comments and values (masked), in one pass so a quote inside a name or a
    comment does not pair up with a real one."""
    esc = r"|\\." if backslash_escapes else ""
    single, double = rf"'(?:[^'\\]|''{esc})*(?:'|\Z)", rf'"(?:[^"\\]|""{esc})*(?:"|\Z)'
    if not backslash_escapes:  # NO_BACKSLASH_ESCAPES: a backslash is an ordinary character
        single, double = r"'(?:[^']|'')*(?:'|\Z)", r'"(?:[^"]|"")*(?:"|\Z)'
    return re.compile(rf"(?P<name>`(?:[^`]|``)*(?:`|\Z))"
                      rf"|(?P<secret>{single}|{double}|/\*.*?(?:\*/|\Z)|(?:--[ \t]|#)[^\n]*|\b0[xX][0-9a-fA-F]+)",
                      re.S)


# With and without backslash escapes: a server's sql_mode decides, and it is not in the binlog.
_LITERALS = (_literal_pattern(True), _literal_pattern(False))
_MASKED = {"'": "'…'", '"': '"…"', "/": "/*…*/", "-": "-- …", "#": "# …", "0": "0x…"}


def mask_literals(statement: str) -> str:
    """The statement with every value, quoted or hex, and every comment replaced by '…'. An alert
    goes to a whole channel and into the store; `UPDATE users SET password = 'hunter2'` must not
    take the value along. Names and plain numbers stay: they say what was hit. What either
    reading of backslashes takes for a value is masked, so neither sql_mode leaks one."""
    spans = sorted((m.start(), m.end()) for pattern in _LITERALS for m in pattern.finditer(statement)
                   if m.lastgroup == "secret")
    out, done = [], 0
    for start, end in spans:
        if start < done:  # overlaps the span before: widen it
            if end > done:
                out[-1] = (out[-1][0], end)
                done = end
            continue
        out.append((start, end))
        done = end
    pieces, at = [], 0
    for start, end in out:
        pieces += [statement[at:start], _MASKED[statement[start]]]
        at = end
    return "".join(pieces) + statement[at:]


NOTICE_HEAD = "🔎 Notice (suspect: nobody is paged)"


def alert_text(alert: Alert, oncall: str | None, source: str) -> str:
    """A certain event mentions the on-call person; a suspect one is a notice that mentions nobody."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alert.server_time))
    where = f"{alert.database}.{alert.table}" if alert.table else (alert.database or "?")
    rows = f" · {alert.rows} rows" if alert.rows else ""
    thread = f" · thread {alert.thread_id}" if alert.thread_id else ""
    head = NOTICE_HEAD if alert.severity == "suspect" else f"🚨 {mention(oncall)}"
    return (f"{head} *{alert.reason}* on `{source}`\n"
            f"{where}{rows}{thread} · binlog {alert.file}:{alert.pos}"
            f"{' · GTID ' + alert.gtid if alert.gtid else ''} · server time {when}\n"
            f"```{mask_literals(alert.statement)[:500] or '(row events)'}```")


# The reason restore.plan.destructive gives a DELETE/UPDATE found in row events: "mass DELETE on …".
# ("DELETE without WHERE on …" is a statement-format one: its rows are not in the binlog, no undo.)
_ROWS_REASON = re.compile(r"^mass (DELETE|UPDATE)\b")


def undoable(alert: Alert) -> bool:
    """A certain DML disaster logged as row events, which an undo can put back in place."""
    return alert.severity != "suspect" and bool(_ROWS_REASON.match(alert.reason))


def alert_buttons(alert: Alert, cluster: str | None = None) -> list[dict]:
    """*Acknowledge* (a page only: a notice does not escalate), *Expected* (later plans do not stop
    there), *This is the incident* (later plans stop there), *Plan restore* (a plan stopping there now),
    and on a certain DELETE/UPDATE *Undo this* (the undo preview card of its transaction).
    `cluster` (not `default`): Plan restore and Undo this act on that cluster (`SPEC@cluster`)."""
    spec = alert.plan_spec + (f"@{cluster}" if cluster and cluster != "default" else "")   # the unnamed one
    def button(action: str, value: str, label: str, **extra) -> dict:
        return {"type": "button", "action_id": action, "value": value,
                "text": {"type": "plain_text", "text": label}, **extra}
    out = [] if alert.severity == "suspect" else [button("alert_ack", alert.key, "Acknowledge", style="primary")]
    out += [button("alert_expected", alert.key, "Expected"),
            button("alert_incident", alert.key, "This is the incident", style="danger"),
            button("alert_plan", spec, "Plan restore")]
    return out + ([button("alert_undo", spec, "Undo this")] if undoable(alert) else [])


class AlertPoster:
    """Posts alerts from a queue on its own thread with its own client; escalates unacknowledged ones."""

    def __init__(self, client, channel: str, store: AlertStore, oncall: Oncall, source: str, *,
                 escalate_after: float = 300.0, usergroup: str | None = None, on_posted=None,
                 keep_warm: float = KEEP_WARM_SECONDS, cluster: str | None = None) -> None:
        self.client, self.channel, self.store, self.oncall, self.source = client, channel, store, oncall, source
        self.cluster = cluster   # the buttons' plan and undo act on it
        self.escalate_after = escalate_after
        self.keep_warm = keep_warm
        self.usergroup = usergroup
        self.on_posted = on_posted or (lambda alert, seconds: None)
        self.queue: queue.Queue[Alert | None] = queue.Queue()
        # A retry or an escalation that starts late (Slack slow, the pool's threads busy) must still
        # run: APScheduler's default would drop a job more than 1 s late as "missed".
        self.scheduler = BackgroundScheduler(daemon=True, job_defaults={"misfire_grace_time": None, "coalesce": True})
        self._lock = threading.Lock()
        self._posting: set[str] = set()   # keys being posted now (the loop and a retry must not both)
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)

    def start(self) -> "AlertPoster":
        if self.keep_warm > 0 and hasattr(self.client, "keep_warm"):  # AlertSlackClient: open it now, keep it open
            self.scheduler.add_job(self.client.keep_warm, "interval", seconds=self.keep_warm, id="keep-warm",
                                   next_run_time=datetime.now())
        # Timers live in memory. After a restart, alerts of the last day that Slack never took are
        # posted (the watcher will not read them again: its position is past them), and those nobody
        # acknowledged go on escalating (the next round one interval from now).
        day_ago = time.time() - 86400
        for alert in self.store.unposted(day_ago):
            self.scheduler.add_job(self.post, "date", run_date=datetime.now(), args=[alert],
                                   id=f"repost-{alert.key}", replace_existing=True)
        for key in self.store.unacknowledged(day_ago) if self.escalate_after > 0 else ():
            self._schedule_escalation(key)
        self.scheduler.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Safe to call more than once."""
        self.queue.put(None)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def __call__(self, alert: Alert) -> None:  # an in-process watcher's on_alert: posted on our thread
        self.queue.put(alert)

    def post(self, alert: Alert, attempt: int = 0) -> None:
        """Post on the calling thread: for a caller that is itself only the alert path's thread (the
        thread reading a watcher process's pipe), one hand-over less between statement and Slack.
        A failed post is retried with backoff (on the scheduler's thread) until Slack takes it."""
        alert = self.store.scoped(alert)   # its key, in the store and on its buttons, names the cluster
        with self._lock:
            if alert.key in self._posting:
                return
            self._posting.add(alert.key)
        try:
            self._post(alert)
        except Exception as exc:
            delay = max(_RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)], getattr(exc, "retry_after", 0))
            # The class and Slack's error code only: an exception's text may quote the request.
            code = exc.response.get("error", "") if isinstance(exc, SlackApiError) else ""
            log.warning("posting alert %s failed (%s %s); retrying in %s s", alert.key, type(exc).__name__, code, delay)
            if self.scheduler.running:
                self.scheduler.add_job(self.post, "date", run_date=datetime.now() + timedelta(seconds=delay),
                                       args=[alert, attempt + 1], id=f"repost-{alert.key}", replace_existing=True)
        finally:
            with self._lock:
                self._posting.discard(alert.key)

    def _loop(self) -> None:
        while (alert := self.queue.get()) is not None:
            self.post(alert)

    def _post(self, alert: Alert) -> None:
        suspect = alert.severity == "suspect"
        person = None if suspect else self.oncall.current()   # a notice pages nobody
        if not self.store.claim(alert, person):
            if self.store.claimed_elsewhere(alert.key):   # its poster may have died: retried, then ours
                raise _ClaimedElsewhere(f"alert {alert.key} is being posted by another instance")
            return
        text = alert_text(alert, person, self.source)
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                  {"type": "actions", "elements": alert_buttons(alert, self.cluster)}]
        resp = self.client.chat_postMessage(channel=self.channel, text=text, blocks=blocks)
        self.store.posted(alert.key, self.channel, resp["ts"])
        self.on_posted(alert, time.time() - alert.detected_at)
        if self.escalate_after > 0 and not suspect:
            self._schedule_escalation(alert.key)

    def _schedule_escalation(self, key: str) -> None:
        self.scheduler.add_job(self._escalate, "interval", seconds=self.escalate_after, args=[key],
                               id=f"escalate-{key}", replace_existing=True)

    def _escalate(self, key: str) -> None:
        info = self.store.get(key)
        if info is None or info["acked_by"] or info["escalations"] >= 3:
            self._stop_escalating(key)
            return
        round_ = info["escalations"] + 1
        if round_ == 1:
            who = info["oncall"]
            text = f"⏰ {mention(who)} the alert about *{info['reason']}* is not acknowledged yet."
        else:
            who = self.oncall.next_after(info["oncall"]) if round_ == 2 else (self.usergroup or self.oncall.next_after(info["oncall"]))
            text = f"⏰ Escalating to {mention(who)}: *{info['reason']}* is still not acknowledged."
        # Counted once posted: a round Slack refused is tried again at the next interval, not skipped.
        self.client.chat_postMessage(channel=info["channel"] or self.channel, thread_ts=info["ts"], text=text)
        if self.store.escalated(key) >= 3:
            self._stop_escalating(key)

    def _stop_escalating(self, key: str) -> None:
        try:
            self.scheduler.remove_job(f"escalate-{key}")
        except JobLookupError:  # a run already under way when it was removed
            pass
