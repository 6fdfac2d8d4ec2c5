"""Replays the planned binlog range into the target.

Row events go back to the server as `BINLOG '<base64>'` statements, the way mysqlbinlog
emits them, so the server decodes every column type itself (exact without row metadata).
Unlike `mysqlbinlog | mysql`, many source transactions share one target commit and one round
trip, and the checkpoint UPDATE rides in that same commit. Statements are replayed with the
session context they ran under. DDL cannot share a transaction: it commits alone, bracketed by
a `ddl_pending` mark so a crash in between is recognised on resume.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pymysql

from restore.binlog import events as be
from restore.binlog.query import session_settings
from restore.binlog.source import BinlogSource
from restore.binlog.walker import FormatStep, QueryStep, RowsStep, TxBegin, TxEnd, Walker
from restore.errors import ApplyError
from restore.hooks import Hooks
from restore.mysql.flavor import Flavor
from restore.mysql.quote import quote_ident, quote_qualified
from restore.plan.candidates import AT_REPLAY, CERTAIN
from restore.plan.plan import Plan
from restore.plan.scope import Scope
from restore.plan.spec import coord_key
from restore.replay import judge as replay_judge
from restore.replay.batch import Batch, BatchFailed, BatchLimits, Piece
from restore.replay.judge import Verdict
from restore.target import checkpoint
from restore.target.binlog import checkpoint_row_image


@dataclass
class ApplyStats:
    transactions: int = 0
    events: int = 0
    commits: int = 0
    seconds: float = 0.0
    resumed_from: str | None = None


class Applier:
    def __init__(self, conn: pymysql.connections.Connection, plan: Plan, scope: Scope, source: BinlogSource,
                 flavor: Flavor, hooks: Hooks, *, batch_transactions: int = 1000, batch_bytes: int = 4 << 20,
                 interrupt: Callable[[], None] | None = None, statement_per_binlog: bool = False,
                 given_verdicts: dict[str, str] | None = None) -> None:
        self.conn = conn
        self.plan = plan
        self.plan_id = plan.plan_id
        self.scope = scope
        self.source = source
        self.flavor = flavor
        self.hooks = hooks
        self.limits = BatchLimits(batch_transactions, batch_bytes, statement_per_binlog)
        self.interrupt = interrupt or (lambda: None)
        self._skips = {(s.tx_file, s.tx_pos) for s in plan.skips}
        # The plan's stop, or a later one when the replay judges a stop "judged at replay" not to
        # be the disaster (plan.later); `verdicts` given (a prod rebuild takes stage's) are not judged again.
        self.outcome = 0
        self._end = coord_key(*plan.end)
        self.given_verdicts = dict(given_verdicts or {})
        self.verdicts: list[Verdict] = []
        self.stats = ApplyStats()
        self.temp_tables: set[str] = set()   # temporary tables open in the replay session
        self.temp_created: set[str] = set()  # every one created so far (the loop runs ahead of the sender)

    # -- entry ---------------------------------------------------------------------------------
    def run(self, state: checkpoint.State | None) -> ApplyStats:
        start = self.plan.replay_from
        done = 0
        if state and state.file:
            start = (state.file, state.pos)
            done = state.transactions
            # Stops the earlier run went past were judged not destructive then.
            while self.outcome < len(self.plan.later) and coord_key(*self.plan.end_of(self.outcome)) < coord_key(*start):
                self._advance()
            self.stats.resumed_from = f"{state.file}:{state.pos}"
            if state.temp_tables_open:
                raise ApplyError(
                    f"the previous run stopped at {state.file}:{state.pos} while replayed temporary tables were "
                    "open; they died with its session, so it cannot be resumed exactly",
                    where=f"{state.file}:{state.pos}",
                    hint="start over from the dumps: run the same command with --restart (what this run restored is moved "
                         "to <db>__unfinished_<time>, nothing is deleted)")
        # The replay loop must not touch the connection while the sender thread owns it:
        # load what it may look up (collation names for user variables) now.
        self.flavor.collation_name(self.conn, 0)
        self.limits = replace(self.limits, checkpoint_image=checkpoint_row_image(self.conn))
        precise = self._non_transactional_tables()
        t0 = time.monotonic()
        try:
            self._replay(start, done, precise=precise, ddl_pending=state.ddl_pending if state else None)
        except BatchFailed as failed:
            # Which event failed is unknown inside a multi-transaction batch: roll it back and
            # replay from the batch's start one event group at a time, which names the culprit.
            ctx = failed.context
            self._rollback()
            self._drop_temp_tables(self.temp_created - ctx.temp_at_start)
            self.temp_tables = set(ctx.temp_at_start)
            self._replay(ctx.batch_start, ctx.done, precise=True, ddl_pending=ctx.ddl_pending)
        self.stats.seconds = time.monotonic() - t0
        return self.stats

    def _non_transactional_tables(self) -> bool:
        """MyISAM, Aria, MEMORY... tables ignore ROLLBACK, so replaying a batch again after a
        failure would apply their changes twice. With such tables every transaction commits
        alone (with its checkpoint) and nothing is retried."""
        dbs = sorted(self.plan.databases)
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT CONCAT(t.TABLE_SCHEMA, '.', t.TABLE_NAME, ' (', t.ENGINE, ')') FROM information_schema.TABLES t "
                "JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE "
                f"WHERE t.TABLE_TYPE = 'BASE TABLE' AND e.TRANSACTIONS <> 'YES' AND t.TABLE_SCHEMA IN ({', '.join(['%s'] * len(dbs))}) "
                "ORDER BY 1", dbs)
            tables = [r[0] for r in cur.fetchall()]
        if tables:
            self.hooks.message(
                f"non-transactional tables: {', '.join(tables[:10])}{' ...' if len(tables) > 10 else ''}; replaying one "
                "transaction per commit (slower). A crash in the middle of one of their transactions can apply its "
                "changes to them twice on resume: convert them to InnoDB on the source if you can")
        return bool(tables)

    def _drop_temp_tables(self, names: set[str]) -> None:
        """Temporary tables made by the rolled-back batch survive ROLLBACK: the retry makes them again."""
        for name in sorted(names):
            db, _, table = name.partition(".")
            try:
                self.conn.query(f"DROP TEMPORARY TABLE IF EXISTS {quote_qualified(db, table)}".encode())
            except pymysql.err.MySQLError:
                pass

    # -- the replay loop -----------------------------------------------------------------------
    def _replay(self, start: tuple[str, int], done: int, *, precise: bool, ddl_pending: str | None) -> None:
        self._begin(start)
        out = Batch(self.conn, self.plan_id, self.limits, start=start, done=done, precise=precise,
                    open_temp_tables=self.temp_tables, on_commit=self._committed, say=self.hooks.message)
        try:
            self._replay_steps(out, start, ddl_pending)
        finally:
            out.close()

    def _committed(self, done: int, where: str) -> None:
        """After each commit of the batch (its checkpoint included): report, and stop here if asked."""
        self.stats.commits += 1
        self.hooks.progress("replay", done, self.plan.transactions, where)
        self.interrupt()

    def _replay_steps(self, out: Batch, start: tuple[str, int], ddl_pending: str | None) -> None:
        tx: TxBegin | None = None
        skipping = False
        judging = None
        session: dict[str, str] = {}
        current_db: str | None = None
        temp_tables = self.temp_tables
        # MySQL's partial JSON updates: MariaDB has no way to apply them.
        partial_json = be.PARTIAL_UPDATE_ROWS if self.flavor.is_mariadb else -1
        # stop_at: the walk ends at the plan's end even where the event there does not decode.
        for step in Walker(self.source.events(*start), stop_at=self.plan.end).steps():
            if isinstance(step, FormatStep):
                out.format_description(step.event)
            elif isinstance(step, TxBegin):
                judging = None
                if coord_key(step.file, step.pos) >= self._end:
                    pending = self._pending_stop()
                    if pending is None:
                        break
                    given = self.given_verdicts.get(pending.where)
                    if given == "certain":
                        self.verdicts.append(Verdict(pending.where, f"{step.file}:{step.pos}", given, "as judged before"))
                        break
                    if given == "suspect":
                        self.verdicts.append(Verdict(pending.where, f"{step.file}:{step.pos}", given, "as judged before"))
                        self._advance()
                    else:
                        # Judged when its statement comes: everything before its transaction commits now.
                        out.commit_at(step.file, step.pos)
                        judging = pending
                tx = step
                skipping = (step.file, step.pos) in self._skips
            elif skipping:
                continue
            elif isinstance(step, RowsStep):
                if self.scope.rows(step.tmap.db, tx):
                    if step.event.type == partial_json:
                        out.refuse(_partial_json(step, tx))
                    out.rows(step)
                    self.stats.events += 1
                elif step.statement_end:
                    out.end_statement(step)
            elif isinstance(step, QueryStep):
                if not self.scope.query(step, tx):
                    continue
                info = step.info
                sql, current_db, count = self._statement_sql(step, session, current_db)
                if info.temporary:
                    for t in info.written:
                        name = f"{t.db}.{t.name}"
                        if info.verb.startswith("CREATE"):
                            temp_tables.add(name)
                            self.temp_created.add(name)
                        else:
                            temp_tables.discard(name)
                if judging is not None and step.event.where == judging.where:
                    if not self._judge(out, judging, tx, Piece(sql, step.event.where, _table_of(step), count)):
                        return self._stopped(out, tx)
                    judging = None
                elif info.kind == "ddl" and not info.temporary:
                    mark = f"{tx.file}:{tx.pos}"
                    out.ddl(Piece(sql, step.event.where, _table_of(step), count), tx, tolerate=ddl_pending == mark)
                    ddl_pending = None
                else:
                    out.statement(Piece(sql, step.event.where, _table_of(step), count))
                self.stats.events += 1
            elif isinstance(step, TxEnd):
                self.stats.transactions += 1
                out.transaction_end(step, tx, temp_open=bool(temp_tables))
        out.finish(self.plan.end_of(self.outcome))

    # -- stops judged at replay ------------------------------------------------------------------
    def _pending_stop(self):
        """The stop just reached, when the replay is to judge it (a later outcome exists)."""
        stop = self.plan.outcome(self.outcome).stop
        if stop is None or self.outcome >= len(self.plan.later) or getattr(stop, "severity", "") != AT_REPLAY:
            return None
        return stop

    def _advance(self) -> None:
        self.outcome += 1
        self._end = coord_key(*self.plan.end_of(self.outcome))

    def _judge(self, out: Batch, stop, tx: TxBegin, piece: Piece) -> bool:
        """Run the UPDATE `piece` inside the open transaction and judge it; False: it is the
        disaster, rolled back, and the replay ends before its transaction."""
        db, table = stop.database, stop.table
        tx_where = f"{tx.file}:{tx.pos}"
        out.sync()
        if not (db and table and replay_judge.transactional(self.conn, db, table)):
            self.verdicts.append(Verdict(stop.where, tx_where, CERTAIN,
                                         f"{db}.{table} cannot roll back (not transactional), so the UPDATE was not "
                                         "tried: taken as destructive"))
            return False
        before = replay_judge.distinct_values(self.conn, db, table)
        out.statement(piece)
        out.sync()
        after = replay_judge.distinct_values(self.conn, db, table)
        severity, detail = replay_judge.judge(before, after)
        self.verdicts.append(Verdict(stop.where, tx_where, severity, detail))
        self.hooks.message(f"judged the UPDATE at {stop.where} on {db}.{table}: {severity}: {detail}")
        self.stats.events += 1
        if severity == CERTAIN:
            return False
        self._advance()
        return True

    def _stopped(self, out: Batch, tx: TxBegin) -> None:
        """The judged UPDATE is the disaster: undo its transaction so far, end right before it."""
        out.discard()
        out.finish((tx.file, tx.pos))

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
            name = quote_ident(var.name)
            if var.sql_value is None:
                parts.append(f"SET @{name} := NULL".encode())
            elif var.charset is not None:
                coll = self.flavor.collation_name(self.conn, var.charset)
                parts.append(f"SET @{name} := _{coll[1]} {var.sql_value} COLLATE {quote_ident(coll[0])}".encode())
            else:
                parts.append(f"SET @{name} := {var.sql_value}".encode())
        # A default database that is not restored does not exist on the target; our own
        # state schema stands in, so unqualified names can never land in a restored database.
        db = q.db if q.db and self.scope.covers(q.db) else checkpoint.SCHEMA
        if db != current_db:
            parts.append(f"USE {quote_ident(db)}".encode())
            current_db = db
        parts.append(q.query_bytes)
        return b";\n".join(parts[:-1]) + (b";\n" if len(parts) > 1 else b"") + parts[-1], current_db, len(parts)

    # -- talking to the server ------------------------------------------------------------------
    def _begin(self, at: tuple[str, int]) -> None:
        try:
            self.conn.query(b"BEGIN")
        except pymysql.err.MySQLError as exc:
            where = f"{at[0]}:{at[1]}"
            raise ApplyError(f"cannot start a transaction on the target before binlog {where}: {exc.args[-1] if exc.args else exc}",
                             where=where, hint="check that the target is up, then run the same command again: it resumes from the last checkpoint") from None

    def _rollback(self) -> None:
        try:
            self.conn.query(b"ROLLBACK")
        except pymysql.err.MySQLError:
            pass

def _partial_json(step: RowsStep, tx: TxBegin | None) -> ApplyError:
    where = step.event.where
    start = f"{tx.file}:{tx.pos}" if tx is not None else where
    return ApplyError(f"binlog {where} holds a partial JSON update of {step.tmap.full_name} (a MySQL "
                      "PARTIAL_UPDATE_ROWS event, binlog_row_value_options=PARTIAL_JSON): MariaDB cannot apply it, "
                      "only a MySQL 8 target can", where=where,
                      hint=f"restore into a MySQL 8 server, or restore again stopping before its transaction: "
                           f"--stop-before {start} --restart")


def _table_of(step: QueryStep) -> str | None:
    w = step.info.written
    return f"{w[0].db}.{w[0].name}" if w and w[0].name else None
