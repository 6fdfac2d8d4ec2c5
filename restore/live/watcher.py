"""Follows a live binlog and reports destructive events the moment they are committed.

Same rules as the planner's `--stop-before auto` (DestructiveRules): DROP DATABASE/TABLE,
TRUNCATE, DELETE/UPDATE without WHERE, and row events that delete or rewrite (nearly) all of
a table. Each alert has a severity, as the plan's candidates do: a mass UPDATE whose row images
show that it keeps information (a backfill, `SET n = n + 1`) is `suspect` (the bot posts a notice
that pages nobody); everything else is `certain`. A statement-form UPDATE without WHERE carries
no row images and cannot be judged live: certain. A statement-form DELETE/UPDATE with a WHERE
(its effect unknown) is not reported at all: on a busy server that would be noise. Table sizes for the mass rule come from the source's own row estimates, read only
when a statement already hit `min_rows` rows, so ordinary traffic costs no query. With a list
of watched databases, the row events of statements touching none of them are left out before
the Walker decodes anything (`watched_statements`): on a busy server that is most of the stream.

The position is saved through the caller's `PositionStore` (after each alert and about once a
second); after a restart or a dropped connection the stream resumes there. Alerts carry a key made
of the event's file:pos, server id and timestamp, so the caller can refuse to send one twice. If
the saved position's file is gone from the server (purged, or the binlog reset), the watcher says
what it could not watch and goes on from the oldest file the server still has.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pymysql
from tenacity import Retrying, stop_after_attempt

from restore.binlog import events as be
from restore.binlog.events import UPDATE_ROWS, WRITE_ROWS
from restore.binlog.gtid_continuity import GtidGap
from restore.binlog.row_images import judge_update
from restore.binlog.server import BinlogGone, ServerBinlogs
from restore.binlog.walker import FormatStep, QueryStep, RowsStep, TxBegin, TxEnd, Walker
from restore.errors import RestoreError
from restore.live.follow import Follower
from restore.mysql.dsn import Dsn
from restore.mysql.flavor import Flavor
from restore.plan.candidates import CERTAIN, SUSPECT, StatementUpdates
from restore.plan.destructive import DestructiveRules, Finding
from restore.plan.plan import TableStats


@dataclass(frozen=True)
class Alert:
    key: str                 # file:pos:server_id:timestamp of the destructive event: unique per alert, also
                             # after RESET MASTER or a failover brings the same file:pos back
    reason: str
    statement: str
    database: str | None
    table: str | None
    rows: int | None
    file: str
    pos: int
    tx_file: str
    tx_pos: int
    gtid: str | None
    server_time: int         # the event's timestamp (the statement's start on the source)
    thread_id: int | None    # the source connection, when the transaction logged a statement (row-only: None)
    detected_at: float       # time.time() when we saw it
    severity: str = CERTAIN  # "certain": pages the on-call person; "suspect": a notice, pages nobody

    @property
    def plan_spec(self) -> str:
        """What `/restore plan --stop-before` needs to stop right before this event."""
        return self.gtid or f"{self.tx_file}:{self.tx_pos}"


class PositionStore(Protocol):
    def load(self) -> tuple[str, int] | None: ...
    def save(self, file: str, pos: int) -> None: ...


class Watcher(Follower):
    name = "watch"

    def __init__(self, dsn: Dsn, positions: PositionStore, on_alert: Callable[[Alert], None], *,
                 databases: tuple[str, ...] = (), rules: DestructiveRules | None = None,
                 on_trouble: Callable[[str], None] | None = None, save_every: float = 1.0) -> None:
        super().__init__(on_trouble)
        self.dsn = dsn
        self.positions = positions
        self.on_alert = on_alert
        self.databases = set(databases)
        self.rules = rules or DestructiveRules()
        self.save_every = save_every
        self._format_checked = False
        # The newest position this watcher saved. The store can lag behind it (a watcher process
        # sends positions to its parent over a pipe): resuming from the store could repeat a skip.
        self._position: tuple[str, int] | None = None
        self._gaps_told: set[tuple[str, int]] = set()  # a stream read again after an outage finds them again

    def watched(self, db: str | None) -> bool:
        return bool(db) and (not self.databases or db in self.databases)

    def start_position(self) -> tuple[str, int]:
        saved = self._position or self.positions.load()
        if saved:
            return saved
        conn = self.dsn.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(Flavor.detect(conn).master_status_sql())
                row = cur.fetchone()
        finally:
            conn.close()
        if not row:
            raise RestoreError(f"{self.dsn.redacted()} has no binary log", hint="enable log_bin on the source")
        self._save(row[0], int(row[1]))
        return row[0], int(row[1])

    def _save(self, file: str, pos: int) -> None:
        self.positions.save(file, pos)
        self._position = (file, pos)

    def check_format(self) -> None:
        """Once: say that a source not logging ROW hides the size of mass DELETE/UPDATEs with a WHERE."""
        conn = self.dsn.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@global.binlog_format")
                fmt = str(cur.fetchone()[0]).upper()
        except pymysql.err.MySQLError as exc:  # a RestoreError is an outage to retry, not a crash
            raise RestoreError(f"cannot read binlog_format from {self.dsn.redacted()}: {exc}",
                               hint="check that the source server is up") from None
        finally:
            conn.close()
        self._format_checked = True
        if fmt != "ROW":
            self.on_trouble(f"{self.dsn.redacted()} logs binlog_format={fmt}, not ROW: a DELETE/UPDATE with a WHERE "
                            f"clause logged as a statement carries no row count, so a mass one cannot be "
                            f"recognised; only row-logged changes are counted (DROP, TRUNCATE and DELETE/UPDATE "
                            f"without WHERE are caught in any format) — set binlog_format=ROW on the source")

    def follow_once(self) -> None:
        if not self._format_checked:
            self.check_format()
        try:
            self._follow()
        except BinlogGone as exc:
            self._skip_gone(exc)

    def _skip_gone(self, exc: BinlogGone) -> None:
        """Go on from where the server's binlog still is: retrying the same position never works."""
        logs = [name for name, _ in ServerBinlogs(self.dsn).binary_logs()]
        if not logs:
            raise exc
        if exc.past_end and exc.file in logs:
            # Rewritten from the start (RESET MASTER) or cut short by a crash: read it again from its
            # start. Events seen before keep their alert keys, so none is posted twice.
            self.on_trouble(f"the saved position {exc.file}:{exc.pos} is past the end of {exc.file} on "
                            f"{self.dsn.redacted()} (the binlog was reset, or a crash lost its end): watching "
                            f"goes on from {exc.file}:4; alerts already sent are not repeated")
            self._save(exc.file, 4)
            return
        oldest = logs[0]
        self.on_trouble(f"the saved position {exc.file}:{exc.pos} is gone from {self.dsn.redacted()} (purged, or the "
                        f"binlog was reset): events between it and {oldest}, the oldest binlog the server has, "
                        f"were NOT watched; watching goes on from {oldest}:4 — check them by other means "
                        f"(the archive, if one was kept)")
        self._save(oldest, 4)

    def _follow(self) -> None:
        file, pos = self.start_position()
        source = self.open_source(self.dsn, blocking=True)
        source.on_gap = self._gtid_gap
        sizes = _TableSizes(self.dsn)
        sizes.open()
        events = source.events(file, pos)
        if self.databases:
            events = watched_statements(events, {db.encode() for db in self.databases})
        tx: TxBegin | None = None
        stmt_rows: dict[str, list[int]] = {}
        tx_rows: dict[str, list[int]] = {}
        updates = StatementUpdates()   # the statement's UPDATE row events: a mass UPDATE is judged by its images
        fde = None
        alerted_tx = False
        noticed_tx = False             # a suspect was reported in this transaction (a certain one still alerts)
        tx_thread: int | None = None  # from the transaction's statements: row events carry no thread id
        last_watched: RowsStep | None = None
        last_save = time.monotonic()
        watched = self.watched
        try:
            for step in Walker(events, count=lambda tmap: watched(tmap.db)).steps():
                kind = type(step)
                if kind is RowsStep:
                    if watched(step.tmap.db):
                        name = step.tmap.full_name
                        col = 0 if step.event.type in WRITE_ROWS else 1 if step.event.type in UPDATE_ROWS else 2
                        stmt_rows.setdefault(name, [0, 0, 0])[col] += step.rows
                        tx_rows.setdefault(name, [0, 0, 0])[col] += step.rows
                        if col == 1:
                            updates.add(step.event, step.tmap)
                        last_watched = step
                    # The statement may end in an unwatched database (a trigger writing an audit
                    # row elsewhere): judge what it did to the watched tables all the same.
                    if step.statement_end:
                        if stmt_rows and not alerted_tx:
                            finding = self._mass(stmt_rows, tx_rows, sizes)
                            severity = CERTAIN
                            if finding and finding.reason.startswith("mass UPDATE"):
                                finding, severity = self._judge(finding, updates, fde, sizes)
                            if finding and (severity == CERTAIN or not noticed_tx):
                                alerted_tx = alerted_tx or severity == CERTAIN
                                noticed_tx = True
                                self._alert(last_watched, tx, finding, step.annotation or "", tx_thread, severity)
                        stmt_rows = {}
                        updates.clear()
                elif kind is FormatStep:
                    fde = step.fde
                elif kind is TxBegin:
                    tx, stmt_rows, tx_rows, alerted_tx, noticed_tx, tx_thread = step, {}, {}, False, False, None
                    updates.clear()
                elif kind is TxEnd:
                    if self.stopping.is_set():
                        return
                    if time.monotonic() - last_save >= self.save_every:
                        self._save(step.file, step.pos)
                        last_save = time.monotonic()
                elif kind is QueryStep:
                    tx_thread = step.query.thread_id
                    if alerted_tx or not any(watched(d) for d in step.info.databases):
                        continue
                    finding = self.rules.query_finding(step.info)
                    if finding:
                        alerted_tx = True
                        self._alert(step, tx, finding, step.query.query, step.query.thread_id)
        finally:
            sizes.close()

    def _gtid_gap(self, gap: GtidGap) -> None:
        """The server's own binlog lacks transactions (a file it ended early at a commit): they were
        never in the stream, so never watched, and no restore from these binlogs can replay them."""
        if (gap.file, gap.end) in self._gaps_told:
            return
        self._gaps_told.add((gap.file, gap.end))
        self.on_trouble(f"binlog gap: {gap.describe(self.dsn.redacted())}; they were NOT watched, and a "
                        f"restore from these binlogs cannot replay them — take a new base snapshot now "
                        f"(/backup now); watching goes on")

    def _mass(self, stmt_rows, tx_rows, sizes: "_TableSizes") -> Finding | None:
        big = {n: r for n, r in stmt_rows.items() if max(r[1], r[2]) >= self.rules.min_rows}
        if not big:
            return None
        # The source has already applied the statement: size before = what is left + what it hit.
        tables = {}
        for name, (ins, upd, dele) in big.items():
            left = sizes.rows(name)
            tables[name] = TableStats(snapshot_rows=left + dele - ins)
        return self.rules.rows_finding(big, tables, big)

    @staticmethod
    def _judge(finding: Finding, updates: StatementUpdates, fde, sizes: "_TableSizes") -> tuple[Finding, str]:
        """A mass UPDATE, judged from its row images as the planner judges a candidate: does it
        destroy information (certain) or keep it (suspect)?"""
        name = f"{finding.database}.{finding.table}"
        mine = [(e, fde.post_header(e.type) if fde else 10, t) for e, t in updates.events if t.full_name == name]
        if not mine:
            return finding, CERTAIN
        verdict = judge_update(mine, sizes.columns(name))
        return Finding(f"{finding.reason}; {verdict.detail}", finding.database, finding.table, finding.rows), \
            (SUSPECT if verdict.severity == SUSPECT else CERTAIN)

    def _alert(self, step, tx: TxBegin | None, finding: Finding, statement: str, thread_id: int | None,
               severity: str = CERTAIN) -> None:
        ev = step.event
        # file:pos alone repeats after RESET MASTER or a failover: the server id and time tell those apart.
        alert = Alert(key=f"{ev.file}:{ev.pos}:{ev.server_id}:{ev.timestamp}", reason=finding.reason,
                      statement=statement[:1000],
                      database=finding.database, table=finding.table, rows=finding.rows, file=ev.file, pos=ev.pos,
                      tx_file=tx.file if tx else ev.file, tx_pos=tx.pos if tx else ev.pos,
                      gtid=str(tx.gtid) if tx and tx.gtid else None, server_time=ev.timestamp,
                      thread_id=thread_id, detected_at=time.time(), severity=severity)
        self.on_alert(alert)
        self._save(alert.tx_file, alert.tx_pos)


class _TableSizes:
    """Row estimates from the source (information_schema), on a side connection of their own."""

    def __init__(self, dsn: Dsn) -> None:
        self.dsn = dsn
        self.conn = None

    def open(self) -> None:
        """Connect now: on a busy server a new connection costs tens of ms, and the first mass
        change should not wait for it. A failure here is retried at the first lookup."""
        try:
            self.conn = self.dsn.connect()
        except Exception:
            self.conn = None

    def _query(self, sql: str, name: str) -> list[tuple] | None:
        """Rows of `sql` about table `name` ("db.table"); None when the source cannot be asked.
        A connection the server dropped while idle fails once: the query is tried again, at once,
        on a new one."""
        db, _, table = name.partition(".")
        once_more = Retrying(stop=stop_after_attempt(2), after=lambda _: self.close(),
                             retry_error_callback=lambda _: None)
        return once_more(self._ask, sql, (db, table))

    def _ask(self, sql: str, args: tuple[str, str]) -> list[tuple]:
        if self.conn is None:
            self.conn = self.dsn.connect()
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def rows(self, name: str) -> int:
        found = self._query("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                            "AND TABLE_NAME=%s", name)
        # No estimate must not stop the watch: treat the table as emptied (alert rather than miss).
        return int(found[0][0] or 0) if found else 0

    def columns(self, name: str) -> list[str]:
        """The table's column names, to say which columns a mass UPDATE rewrote (only then asked);
        without them the verdict stands, its columns numbered."""
        found = self._query("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s "
                            "AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION", name)
        return [r[0] for r in found or ()]

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


def watched_statements(events: Iterable[be.RawEvent], databases: set[bytes], id_len: int = 6) -> Iterator[be.RawEvent]:
    """The stream without the row events of statements that touch no watched database.

    On a busy server those are nearly all of it, and the watcher would decode each one only to
    pass over it. A statement's row events come right after all its table maps (and its
    annotation, on MariaDB): if no map names a watched database, the annotation, the maps and the
    row events up to its last one (STMT_END_F) are left out. Everything else goes through as it
    came, so the Walker still sees whole statements and whole transactions. A MySQL compressed
    transaction (TRANSACTION_PAYLOAD) is decompressed here and its events filtered the same way.
    `id_len`: table id width (4 before MySQL 5.1.something; then 2 bytes of flags), until a format
    description says.
    """
    held: list[be.RawEvent] = []       # this statement's annotation and table maps, until its first row event
    mapped = hit = False               # held has a table map / one naming a watched database
    keep: bool | None = None           # from the first row event on: the statement's verdict
    rows_events, table_map, annotate = be.ROWS_EVENTS, be.TABLE_MAP, be.ANNOTATE_ROWS
    for ev in events:
        t = ev.type
        data = ev.data
        if t in rows_events:
            if keep is None:
                keep = hit or not mapped  # (no map before it: not ours to judge, the Walker will)
                if keep:
                    yield from held
                held, mapped, hit = [], False, False
            if keep:
                yield ev
            if data[be.HEADER_LEN + id_len] & be.STMT_END_F:
                keep = None
            continue
        if t == table_map:
            keep = None  # (after row events without STMT_END_F: a new statement)
            at = be.HEADER_LEN + id_len + 2
            mapped = True
            if data[at + 1:at + 1 + data[at]] in databases:
                hit = True
            held.append(ev)
            continue
        if held:  # table maps no row event followed: pass them on as they came
            yield from held
            held, mapped, hit = [], False, False
        keep = None
        if t == annotate:
            held.append(ev)  # the next statement's text: goes or stays with it
            continue
        if t == be.FORMAT_DESCRIPTION:
            id_len = 4 if be.parse_format_description(data).post_header(table_map) == 6 else 6
        elif t == be.TRANSACTION_PAYLOAD:   # a whole transaction: its statements start and end inside
            yield from watched_statements(be.payload_events(ev), databases, id_len)
            continue
        yield ev
