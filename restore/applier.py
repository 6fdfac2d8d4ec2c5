"""Replays the planned binlog range into the target.

Row events go back to the server as `BINLOG '<base64>'` statements, the way mysqlbinlog
emits them, so the server decodes every column type itself (exact without row metadata).
Unlike `mysqlbinlog | mysql`, many source transactions share one target commit and one round
trip, and the checkpoint UPDATE rides in that same commit. Statements are replayed with the
session context they ran under. DDL cannot share a transaction: it commits alone, bracketed by
a `ddl_pending` mark so a crash in between is recognised on resume.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import pymysql

from . import checkpoint
from .conflicts import explain_failure
from .errors import ApplyError
from .flavor import Flavor
from .hooks import Hooks
from .plan import Plan
from .query_event import session_settings
from .scope import Scope
from .sender import GroupFailed, Sender, SendFailure, run_group
from .spec import coord_key
from .walker import FormatStep, QueryStep, RowsStep, TxBegin, TxEnd, Walker

# mysqld error codes that mean a DDL being re-run after a crash had already taken effect.
_DDL_ALREADY_DONE = {1007, 1008, 1050, 1051, 1060, 1061, 1091, 1146, 1054, 1176}


@dataclass
class Piece:
    sql: bytes
    where: str              # file:pos of the (first) event it carries
    table: str | None = None
    statements: int = 1     # SQL statements in `sql` (a replayed statement brings its SETs)


@dataclass
class ApplyStats:
    transactions: int = 0
    events: int = 0
    commits: int = 0
    seconds: float = 0.0
    resumed_from: str | None = None


class Applier:
    def __init__(self, conn, plan: Plan, scope: Scope, source, flavor: Flavor, hooks: Hooks,
                 *, batch_transactions: int = 1000, batch_bytes: int = 4 << 20,
                 interrupt=None) -> None:
        self.conn = conn
        self.plan = plan
        self.plan_id = plan.plan_id
        self.scope = scope
        self.source = source
        self.flavor = flavor
        self.hooks = hooks
        self.batch_transactions = batch_transactions
        self.batch_bytes = batch_bytes
        self.interrupt = interrupt or (lambda: None)
        self._skips = {(s.tx_file, s.tx_pos) for s in plan.skips}
        self._end = coord_key(*plan.end)
        self.stats = ApplyStats()

    # -- entry ---------------------------------------------------------------------------------
    def run(self, state: checkpoint.State | None) -> ApplyStats:
        start = self.plan.replay_from
        done = 0
        if state and state.file:
            start = (state.file, state.pos)
            done = state.transactions
            self.stats.resumed_from = f"{state.file}:{state.pos}"
            if state.temp_tables_open:
                raise ApplyError(
                    f"the previous run stopped at {state.file}:{state.pos} while replayed temporary tables were "
                    "open; they died with its session, so it cannot be resumed exactly",
                    where=f"{state.file}:{state.pos}",
                    hint="restore again from scratch: rerun with --existing drop")
        # The replay loop must not touch the connection while the sender thread owns it:
        # load what it may look up (collation names for user variables) now.
        self.flavor.collation_name(self.conn, 0)
        t0 = time.monotonic()
        try:
            self._replay(start, done, precise=False, ddl_pending=state.ddl_pending if state else None)
        except _BatchFailed as failed:
            # Which event failed is unknown inside a multi-transaction batch: roll it back and
            # replay from the batch's start one event group at a time, which names the culprit.
            self._rollback()
            self._replay(failed.batch_start, failed.done, precise=True, ddl_pending=failed.ddl_pending)
        self.stats.seconds = time.monotonic() - t0
        return self.stats

    # -- the replay loop -----------------------------------------------------------------------
    def _replay(self, start: tuple[str, int], done: int, *, precise: bool, ddl_pending: str | None) -> None:
        self._begin()
        out = _Batch(self, start, done, precise)
        try:
            self._replay_steps(out, start, ddl_pending)
        finally:
            out.close()

    def _replay_steps(self, out: _Batch, start: tuple[str, int], ddl_pending: str | None) -> None:
        tx: TxBegin | None = None
        skipping = False
        session: dict[str, str] = {}
        current_db: str | None = None
        temp_tables: set[str] = set()
        for step in Walker(self.source.events(*start)).steps():
            if isinstance(step, FormatStep):
                out.format_description(step.event)
            elif isinstance(step, TxBegin):
                if coord_key(step.file, step.pos) >= self._end:
                    break
                tx = step
                skipping = (step.file, step.pos) in self._skips
            elif skipping:
                continue
            elif isinstance(step, RowsStep):
                if self.scope.rows(step.tmap.db, tx):
                    out.rows(step)
                    self.stats.events += 1
            elif isinstance(step, QueryStep):
                if not self.scope.query(step, tx):
                    continue
                info = step.info
                sql, current_db, count = self._statement_sql(step, session, current_db)
                if info.temporary:
                    for t in info.written:
                        name = f"{t.db}.{t.name}"
                        (temp_tables.add if info.verb.startswith("CREATE") else temp_tables.discard)(name)
                if info.kind == "ddl" and not info.temporary:
                    mark = f"{tx.file}:{tx.pos}"
                    out.ddl(Piece(sql, step.event.where, _table_of(step), count), tx, tolerate=ddl_pending == mark)
                    ddl_pending = None
                else:
                    out.statement(Piece(sql, step.event.where, _table_of(step), count))
                self.stats.events += 1
            elif isinstance(step, TxEnd):
                self.stats.transactions += 1
                out.transaction_end(step, tx, temp_open=bool(temp_tables))
        out.finish(self.plan.end)

    # -- statements ----------------------------------------------------------------------------
    def _statement_sql(self, step: QueryStep, session: dict[str, str],
                       current_db: str | None) -> tuple[bytes, str | None, int]:
        q = step.query
        parts: list[bytes] = []
        wanted = self.flavor.filter_session(session_settings(q))
        changed = {k: v for k, v in wanted.items() if session.get(k) != v}
        if changed:
            session.update(changed)
            parts.append(("SET " + ",".join(f"@@session.{k}={v}" for k, v in changed.items())).encode())
        ts = f"{step.event.timestamp}" + (f".{q.microseconds:06d}" if q.microseconds is not None else "")
        parts.append(f"SET TIMESTAMP={ts}".encode())
        for kind, value in step.intvars:
            parts.append(f"SET {'LAST_INSERT_ID' if kind == 1 else 'INSERT_ID'}={value}".encode())
        if step.rand:
            parts.append(f"SET @@RAND_SEED1={step.rand[0]}, @@RAND_SEED2={step.rand[1]}".encode())
        for var in step.user_vars:
            name = "`" + var.name.replace("`", "``") + "`"
            if var.sql_value is None:
                parts.append(f"SET @{name} := NULL".encode())
            elif var.charset is not None:
                coll = self.flavor.collation_name(self.conn, var.charset)
                parts.append(f"SET @{name} := _{coll[1]} {var.sql_value} COLLATE `{coll[0]}`".encode())
            else:
                parts.append(f"SET @{name} := {var.sql_value}".encode())
        # A default database that is not restored does not exist on the target; our own
        # state schema stands in, so unqualified names can never land in a restored database.
        db = q.db if q.db and self.scope.covers(q.db) else checkpoint.SCHEMA
        if db != current_db:
            parts.append(b"USE `" + db.replace("`", "``").encode() + b"`")
            current_db = db
        parts.append(q.query_bytes)
        return b";\n".join(parts[:-1]) + (b";\n" if len(parts) > 1 else b"") + parts[-1], current_db, len(parts)

    # -- talking to the server ------------------------------------------------------------------
    def _begin(self) -> None:
        self.conn.query(b"BEGIN")

    def _rollback(self) -> None:
        try:
            self.conn.query(b"ROLLBACK")
        except pymysql.err.MySQLError:
            pass

class _BatchFailed(Exception):
    def __init__(self, error: ApplyError, batch_start: tuple[str, int], done: int, ddl_pending: str | None) -> None:
        self.error, self.batch_start, self.done, self.ddl_pending = error, batch_start, done, ddl_pending


def _table_of(step: QueryStep) -> str | None:
    w = step.info.written
    return f"{w[0].db}.{w[0].name}" if w and w[0].name else None


class _Batch:
    """The open target transaction: what is queued for it and when to commit it."""

    def __init__(self, applier: Applier, start: tuple[str, int], done: int, precise: bool) -> None:
        self.a = applier
        self.conn = applier.conn
        self.start = start
        self.done = done
        self.precise = precise
        self.pieces: list[Piece] = []
        self.rows_buf: list[bytes] = []
        self.rows_where = ""
        self.rows_table: str | None = None
        self.bytes = 0          # queued since the last commit
        self.unsent = 0         # queued since the last send
        self.txns = 0
        self.last_gtid: str | None = None
        self.temp_open = False
        self.pending_ddl: str | None = None
        self.max_txns = 1 if precise else applier.batch_transactions
        self.max_bytes = applier.batch_bytes
        # The precise retry names the failing event at once: it sends inline.
        self.sender = None if precise else Sender(self.conn)

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()
            self.sender = None

    # -- what the replay loop feeds in ------------------------------------------------------------
    def format_description(self, ev) -> None:
        self._flush_rows()
        self.pieces.append(Piece(b"BINLOG '" + base64.b64encode(ev.data) + b"'", ev.where))

    def rows(self, step: RowsStep) -> None:
        if not self.rows_buf:
            self.rows_where = step.event.where
            self.rows_table = f"{step.tmap.db}.{step.tmap.table}"
        self.rows_buf.append(step.table_map.data)
        self.rows_buf.append(step.event.data)
        size = len(step.table_map.data) + len(step.event.data)
        self.bytes += size
        self.unsent += size
        if self.precise:
            self._flush_rows()
        elif self.unsent > self.max_bytes:
            # A huge transaction: stream it to the server inside the still-open transaction.
            self._flush_rows()
            self._send()

    def statement(self, piece: Piece) -> None:
        self._flush_rows()
        self.pieces.append(piece)
        self.bytes += len(piece.sql)
        self.unsent += len(piece.sql)

    def ddl(self, piece: Piece, tx: TxBegin, *, tolerate: bool) -> None:
        """DDL commits implicitly: close the batch, mark the DDL as pending, run it alone."""
        self._commit(tx.file, tx.pos)
        self.pending_ddl = f"{tx.file}:{tx.pos}"  # a retry from this batch's start must tolerate it
        self.pieces.append(Piece(checkpoint.position_sql(self.a.plan_id, tx.file, tx.pos, self.last_gtid,
                                                         self.done, ddl_pending=f"{tx.file}:{tx.pos}",
                                                         temp_open=self.temp_open), "checkpoint"))
        self.pieces.append(Piece(b"COMMIT", "commit"))
        self._send()
        self.pieces.append(piece)
        self._send(tolerate_ddl=tolerate)
        self.pieces.append(Piece(b"BEGIN", "begin"))

    def transaction_end(self, step: TxEnd, tx: TxBegin | None, *, temp_open: bool) -> None:
        self.done += 1
        self.txns += 1
        self.temp_open = temp_open
        if tx is not None and tx.gtid is not None:
            self.last_gtid = str(tx.gtid)
        full = self.txns >= self.max_txns or self.bytes >= self.max_bytes
        # While replayed temporary tables are open a crash would lose them: don't checkpoint.
        if self.precise or (full and not temp_open):
            self._commit(step.file, step.pos)

    def finish(self, end: tuple[str, int]) -> None:
        self._commit(*end)
        self._drain()
        self.conn.query(b"ROLLBACK")

    # -- sending -------------------------------------------------------------------------------
    def _flush_rows(self) -> None:
        if self.rows_buf:
            payload = base64.b64encode(b"".join(self.rows_buf))
            self.pieces.append(Piece(b"BINLOG '" + payload + b"'", self.rows_where, self.rows_table))
            self.rows_buf = []

    def _commit(self, file: str, pos: int) -> None:
        self._flush_rows()
        self.pieces.append(Piece(checkpoint.position_sql(self.a.plan_id, file, pos, self.last_gtid, self.done,
                                                         temp_open=self.temp_open), "checkpoint"))
        self.pieces.append(Piece(b"COMMIT", "commit"))
        self.pieces.append(Piece(b"BEGIN", "begin"))
        self._send()
        self.pending_ddl = None
        self.a.stats.commits += 1
        self.start, self.txns, self.bytes = (file, pos), 0, 0
        self.a.hooks.progress("replay", self.done, self.a.plan.transactions, f"{file}:{pos}")
        self.a.interrupt()

    def _send(self, tolerate_ddl: bool = False) -> None:
        pieces, self.pieces = self.pieces, []
        self.unsent = 0
        # The server's OK for a BINLOG statement drops the "more results" flag, which would
        # desynchronise a multi-statement query: BINLOG goes alone, the rest is grouped.
        groups: list[list[Piece]] = []
        for piece in pieces:
            if piece.sql.startswith(b"BINLOG ") or not groups or groups[-1][0].sql.startswith(b"BINLOG "):
                groups.append([piece])
            else:
                groups[-1].append(piece)
        for group in groups:
            self._send_group(group, tolerate_ddl)

    def _send_group(self, pieces: list[Piece], tolerate_ddl: bool) -> None:
        # What a failure of this group rolls back to: the start of the open batch.
        context = (self.start, self.done - self.txns, self.pending_ddl)
        sqls = [p.sql for p in pieces]
        if self.sender is not None and not tolerate_ddl:
            try:
                self.sender.submit(sqls, pieces, context)
            except SendFailure as failure:
                self._failed(failure.failed, failure.group, False, failure.context)
            return
        self._drain()
        try:
            run_group(self.conn, sqls)
        except GroupFailed as failed:
            self._failed(failed, pieces, tolerate_ddl, context)

    def _drain(self) -> None:
        """Everything sent so far has run: the connection is ours again."""
        if self.sender is not None:
            try:
                self.sender.drain()
            except SendFailure as failure:
                self._failed(failure.failed, failure.group, False, failure.context)

    def _failed(self, failed: GroupFailed, pieces: list[Piece], tolerate_ddl: bool, context) -> None:
        code = failed.error.args[0] if failed.error.args else 0
        index = failed.index
        piece = pieces[-1]
        for candidate in pieces:  # the index counts statements; a piece may hold several
            if index < candidate.statements:
                piece = candidate
                break
            index -= candidate.statements
        if tolerate_ddl and code in _DDL_ALREADY_DONE:
            self.a.hooks.message(f"the DDL at {piece.where} had already taken effect before the interruption")
            return
        error = explain_failure(failed.error, piece.where, piece.table, self.a.plan)
        if self.precise:
            raise error from None
        batch_start, done, pending_ddl = context
        raise _BatchFailed(error, batch_start, done, pending_ddl) from None
