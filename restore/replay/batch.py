"""The open target transaction of a replay: what is queued for it, when it commits, and what a
failure inside it means.

Row events are queued raw and sent as one `BINLOG '<base64>'` statement; statements are grouped
into multi-statement round trips; each commit carries the checkpoint UPDATE. Sending happens on
a `Sender` thread unless the batch is precise (one transaction per commit, sent inline, so a
failure names its event at once).
"""
from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Set
from dataclasses import dataclass, field

import pymysql

from restore.binlog import events as be
from restore.binlog.walker import RowsStep, TxBegin, TxEnd
from restore.errors import ApplyError
from restore.replay.conflicts import explain_failure
from restore.replay.sender import GroupFailed, Sender, SendFailure, run_group
from restore.target import checkpoint

# mysqld error codes that mean a DDL being re-run after a crash had already taken effect.
DDL_ALREADY_DONE = {1007, 1008, 1050, 1051, 1060, 1061, 1091, 1146, 1054, 1176}
# The connection is gone: nothing on it can be retried.
CONNECTION_LOST = {2006, 2013, 2055, 0}


@dataclass
class Piece:
    sql: bytes
    where: str              # file:pos of the (first) event it carries
    table: str | None = None
    statements: int = 1     # SQL statements in `sql` (a replayed statement brings its SETs)
    ddl: bool = False


@dataclass(frozen=True)
class BatchLimits:
    """When an open batch commits, and how its row events are grouped into BINLOG statements."""
    transactions: int = 1000    # source transactions per target commit
    bytes: int = 4 << 20        # queued bytes per target commit (and per round trip inside a huge transaction)
    # A binlog-enabled target that annotates row events (restore.target.binlog): one source statement
    # per BINLOG statement, so each annotation holds only that statement.
    statement_per_binlog: bool = False
    # A ROW-format target: SQL around each checkpoint UPDATE that logs it with a minimal row image
    # (restore.target.binlog.checkpoint_row_image), or None.
    checkpoint_image: tuple[bytes, bytes] | None = None


@dataclass(frozen=True)
class FailureContext:
    """Where a retry of a failed group starts: the open batch's start, as it was when sent."""
    batch_start: tuple[str, int]
    done: int
    ddl_pending: str | None
    temp_at_start: frozenset[str] = field(default_factory=frozenset)


class BatchFailed(Exception):
    """The open batch must be replayed again precisely from its start: after `error`, to name
    the failing event, or (error None) because it holds something only a precise replay can do."""

    def __init__(self, error: ApplyError | None, context: FailureContext) -> None:
        super().__init__(error)
        self.error, self.context = error, context


def with_statement_end(data: bytes, post_header_len: int, checksum: bool) -> bytes:
    """The rows event `data` with STMT_END_F set (and its CRC recomputed)."""
    at = be.HEADER_LEN + (4 if post_header_len == 6 else 6)
    out = bytearray(data)
    out[at] |= be.STMT_END_F
    if checksum:
        out[-4:] = zlib.crc32(memoryview(out)[:-4]).to_bytes(4, "little")
    return bytes(out)


class Batch:
    """What it needs of the replay feeding it is passed in: the connection, the plan id its
    checkpoints carry, the temporary tables the replay has open (a live view: read at each
    commit), `on_commit(done, where)` after every commit and `say(text)` for the operator."""

    def __init__(self, conn: pymysql.connections.Connection, plan_id: str, limits: BatchLimits, *, start: tuple[str, int], done: int,
                 precise: bool, open_temp_tables: Set[str], on_commit: Callable[[int, str], None],
                 say: Callable[[str], None]) -> None:
        self.conn = conn
        self.plan_id = plan_id
        self.open_temp_tables = open_temp_tables
        self.on_commit = on_commit
        self.say = say
        self.statement_per_binlog = limits.statement_per_binlog
        self.checkpoint_image = limits.checkpoint_image
        self.start = start
        self.done = done
        self.precise = precise
        self.pieces: list[Piece] = []
        self.rows_buf: list[bytes] = []
        self.rows_where = ""
        self.rows_table: str | None = None
        self.statement_open = False    # the last queued row event did not end its statement
        self.rows_post: dict[int, int] = {}
        self.bytes = 0          # queued since the last commit
        self.unsent = 0         # queued since the last send
        self.txns = 0
        self.last_gtid: str | None = None
        self.temp_open = False
        self.temp_at_start: frozenset[str] = frozenset(open_temp_tables)
        self.pending_ddl: str | None = None
        self.max_txns = 1 if precise else limits.transactions
        self.max_bytes = limits.bytes
        # The precise retry names the failing event at once: it sends inline.
        self.sender = None if precise else Sender(self.conn)

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()
            self.sender = None

    # -- what the replay loop feeds in ------------------------------------------------------------
    def format_description(self, ev) -> None:
        self._flush_rows()
        fde = be.parse_format_description(ev.data)
        self.rows_post = {t: fde.post_header(t) for t in be.ROWS_EVENTS}
        self.pieces.append(Piece(b"BINLOG '" + base64.b64encode(ev.data) + b"'", ev.where))

    def rows(self, step: RowsStep) -> None:
        size = len(step.table_map.data) + len(step.event.data)
        # The newest row event always stays queued, so end_statement() can still mark it.
        if self.rows_buf and (self.precise or self.unsent + size > self.max_bytes):
            self._flush_rows()
            if not self.precise:
                # A huge transaction: stream it to the server inside the still-open transaction.
                self._send()
        if not self.rows_buf:
            self.rows_where = step.event.where
            self.rows_table = step.tmap.full_name
        self.rows_buf.append(step.table_map.data)
        self.rows_buf.append(step.event.data)
        self.statement_open = not step.statement_end
        self.bytes += size
        self.unsent += size
        if step.statement_end and self.statement_per_binlog:
            self._flush_rows()

    def end_statement(self, step: RowsStep) -> None:
        """The statement's last row event is left out (it changes a database we do not restore):
        the server must still learn that the statement ended, or it ignores what follows."""
        if not self.statement_open:
            return
        if not self.rows_buf:
            raise ApplyError(f"the statement ending at {step.event.where} cannot be closed: its row events were "
                             "already sent", where=step.event.where,
                             hint="report this; as a workaround restore the other database too")
        last = self.rows_buf[-1]
        self.rows_buf[-1] = with_statement_end(last, self.rows_post[last[4]], step.event.checksum)
        self.statement_open = False
        if self.statement_per_binlog:
            self._flush_rows()

    def statement(self, piece: Piece) -> None:
        self._flush_rows()
        self.pieces.append(piece)
        self.bytes += len(piece.sql)
        self.unsent += len(piece.sql)

    def ddl(self, piece: Piece, tx: TxBegin, *, tolerate: bool) -> None:
        """DDL commits implicitly: close the batch, mark the DDL as pending, run it alone."""
        self._commit(tx.file, tx.pos)
        mark = f"{tx.file}:{tx.pos}"
        self._checkpoint(checkpoint.position_sql(self.plan_id, tx.file, tx.pos, self.last_gtid, self.done,
                                                 ddl_pending=mark, temp_open=self.temp_open), mark)
        self.pieces.append(Piece(b"COMMIT", mark))
        self._send()
        piece.ddl = True
        self.pieces.append(piece)
        self._send(tolerate_ddl=tolerate)
        # Only what follows the DDL may take it as done: a retry from this batch's start
        # re-runs the DDL, and an "already exists" then means our own earlier run of it.
        self.pending_ddl = mark
        self.pieces.append(Piece(b"BEGIN", mark))

    def transaction_end(self, step: TxEnd, tx: TxBegin | None, *, temp_open: bool) -> None:
        if step.rolled_back:
            if not self.precise:
                # Undoing one source transaction inside a shared target transaction is not
                # possible: let everything sent so far finish, then redo this batch precisely.
                self._drain()
                raise BatchFailed(None, FailureContext(self.start, self.done - self.txns, self.pending_ddl,
                                                       self.temp_at_start))
            # As on the source: its non-transactional changes stay, the rest is undone.
            self._flush_rows()
            self.pieces.append(Piece(b"ROLLBACK", f"{step.file}:{step.pos}"))
        self.done += 1
        self.txns += 1
        self.temp_open = temp_open
        if tx is not None and tx.gtid is not None:
            self.last_gtid = str(tx.gtid)
        full = self.txns >= self.max_txns or self.bytes >= self.max_bytes
        # While replayed temporary tables are open a crash would lose them: don't checkpoint.
        if self.precise or (full and not temp_open):
            self._commit(step.file, step.pos)

    def refuse(self, error: ApplyError) -> None:
        """An event the target cannot apply: commit everything before it (a precise replay of this
        batch, which commits each transaction), then stop with `error`."""
        if not self.precise:
            self._drain()
            raise BatchFailed(None, FailureContext(self.start, self.done - self.txns, self.pending_ddl,
                                                   self.temp_at_start))
        raise error

    def finish(self, end: tuple[str, int]) -> None:
        self._commit(*end)
        self._drain()
        self.conn.query(b"ROLLBACK")

    # -- a stop judged at replay (applier._judge) ---------------------------------------------------
    def commit_at(self, file: str, pos: int) -> None:
        """Commit everything so far with the checkpoint at `file:pos` (a transaction's start)."""
        self._commit(file, pos)

    def sync(self) -> None:
        """Run everything queued: afterwards the target holds it (uncommitted) and the
        connection is free for the judge's own queries."""
        self._flush_rows()
        self._send()
        self._drain()

    def discard(self) -> None:
        """Undo what ran since the last commit and open a new transaction."""
        self.pieces, self.rows_buf, self.statement_open = [], [], False
        self.conn.query(b"ROLLBACK")
        self.conn.query(b"BEGIN")

    # -- sending -------------------------------------------------------------------------------
    def _flush_rows(self) -> None:
        if self.rows_buf:
            payload = base64.b64encode(b"".join(self.rows_buf))
            self.pieces.append(Piece(b"BINLOG '" + payload + b"'", self.rows_where, self.rows_table))
            self.rows_buf = []

    def _commit(self, file: str, pos: int) -> None:
        self._flush_rows()
        where = f"{file}:{pos}"
        self._checkpoint(checkpoint.position_sql(self.plan_id, file, pos, self.last_gtid, self.done,
                                                 temp_open=self.temp_open), where)
        self.pieces.append(Piece(b"COMMIT", where))
        self.pieces.append(Piece(b"BEGIN", where))
        self._send()
        self.pending_ddl = None
        self.start, self.txns, self.bytes = (file, pos), 0, 0
        self.temp_at_start = frozenset(self.open_temp_tables)
        self.on_commit(self.done, where)

    def _checkpoint(self, update: bytes, where: str) -> None:
        if self.checkpoint_image is None:
            self.pieces.append(Piece(update, where))
            return
        minimal, back = self.checkpoint_image
        self.pieces.append(Piece(b";\n".join((minimal, update, back)), where, statements=3))

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
        context = FailureContext(self.start, self.done - self.txns, self.pending_ddl, self.temp_at_start)
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

    def _failed(self, failed: GroupFailed, pieces: list[Piece], tolerate_ddl: bool,
                context: FailureContext) -> None:
        code = failed.error.args[0] if failed.error.args else 0
        index = failed.index
        piece = pieces[-1]
        for candidate in pieces:  # the index counts statements; a piece may hold several
            if index < candidate.statements:
                piece = candidate
                break
            index -= candidate.statements
        if tolerate_ddl and piece.ddl and code in DDL_ALREADY_DONE:
            self.say(f"the DDL at {piece.where} had already taken effect before the interruption")
            return
        error = explain_failure(failed.error, piece.where, piece.table)
        if code in CONNECTION_LOST or not isinstance(code, int):
            raise error from None  # nothing to retry on: the next run resumes from the checkpoint
        if self.precise:
            if piece.ddl:
                self._clear_ddl_mark(context)
            raise error from None
        raise BatchFailed(error, context) from None

    def _clear_ddl_mark(self, context: FailureContext) -> None:
        """The DDL failed, so it did not happen: a rerun must not take its error as "already done"."""
        file, pos = context.batch_start
        try:
            run_group(self.conn, [b"ROLLBACK", checkpoint.position_sql(
                self.plan_id, file, pos, self.last_gtid, context.done, temp_open=self.temp_open), b"COMMIT"])
        except GroupFailed:
            pass  # the error being reported matters more; a rerun then reports the same DDL again
