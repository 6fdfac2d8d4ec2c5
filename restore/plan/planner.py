"""Builds a Plan: one pass over the binlog, counting rows and finding where to stop."""
from __future__ import annotations

import itertools
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

from restore.binlog import events as be
from restore.binlog.events import DELETE_ROWS, UPDATE_ROWS, WRITE_ROWS
from restore.binlog.gtid import GtidSet
from restore.binlog.positions import Watch, locate, refusal
from restore.binlog.positions import checked as checked_starts
from restore.binlog.walker import FormatStep, QueryStep, RowsStep, StopAt, TxBegin, TxEnd, Walker
from restore.errors import BinlogError, PlanError, RestoreError
from restore.hooks import Hooks, NullHooks
from restore.plan.candidates import AT_REPLAY, CERTAIN, Candidates, StatementUpdates
from restore.plan.destructive import DestructiveRules, Finding
from restore.plan.foreign_keys import ForeignKeys
from restore.plan.foreign_keys import dropped as dropped_foreign_keys
from restore.plan.foreign_keys import parse as parse_foreign_keys
from restore.plan.plan import Candidate, EventRef, Outcome, Plan, TableStats
from restore.plan.request import PlanRequest, database_starts, fingerprint, plan_request
from restore.plan.scope import Scope
from restore.plan.snapshot import Snapshot
from restore.plan.spec import Spec, coord_key
from restore.plan.triggers import Triggers

_IF_NOT_EXISTS = re.compile(r"\bIF\s+NOT\s+EXISTS\b", re.I)
# Index into [inserted, updated, deleted] by row-event type.
_ROW_KIND = {**{t: 0 for t in WRITE_ROWS}, **{t: 1 for t in UPDATE_ROWS}, **{t: 2 for t in DELETE_ROWS}}


class Planner:
    def __init__(self, source, req: PlanRequest, hooks: Hooks | None = None,
                 interrupt: Callable[[], None] | None = None) -> None:
        self.source = source
        self.req = req
        self.hooks = hooks or NullHooks()
        self.interrupt = interrupt or (lambda: None)
        self._temp: set[str] = set()   # temporary tables open in the replayed session
        self._fks = ForeignKeys()       # cascading foreign keys: the snapshots', then the window's DDL
        self._triggers = Triggers()     # created in the window: their writes are not in a statement binlog

    def build(self) -> Plan:
        req = self.req
        starts = database_starts(req)
        scope = Scope(starts)
        coords = [(s.file, s.pos) for s in starts.values() if s.file]
        if len(coords) < len(starts):
            replay_from = (self.source.first_file(), 4)
        else:
            replay_from = min(coords, key=lambda c: coord_key(*c))
        plan = Plan(binlogs=self.source.describe(), snapshots=[s.path for s in req.snapshots],
                    databases=starts, replay_from=replay_from, end=replay_from,
                    stop_spec=req.stop.text, stop=None, fingerprint=fingerprint(req))
        for snap in req.snapshots:
            for (db, table), info in snap.tables.items():
                plan.tables[f"{db}.{table}"] = TableStats(snapshot_rows=info.rows)
        self._fks = ForeignKeys(fk for snap in req.snapshots for info in snap.tables.values()
                                for fk in info.foreign_keys)
        self._scan(plan, scope)
        return plan

    def _scan(self, plan: Plan, scope: Scope) -> None:
        req = self.req
        stop, rules = req.stop, req.rules
        auto = stop.kind == "auto"
        # FILE:POS skips are done once matched; GTID ones name a set of transactions (one or more)
        # and stay: every transaction they name is skipped.
        skip_todo = {s.text: s for s in req.skips if s.kind != "gtid"}
        skip_sets = {s.text: s for s in req.skips if s.kind == "gtid"}
        skip_seen: dict[str, set[str]] = {text: set() for text in skip_sets}
        cands = Candidates(rules, req.expected, self._columns(), self._fks)
        fk_deletes = self._fks.delete_parents   # live: DDL in the window changes it in place
        stmt_cascade = False                    # this statement deleted rows of a table with cascading children
        tx: TxBegin | None = None
        tx_changes: dict[str, list[int]] = {}
        tx_statements: list[QueryStep] = []
        tx_skip: Spec | None = None
        tx_first_step = None
        tx_applies = False
        stmt_rows: dict[str, list[int]] = {}
        updates = StatementUpdates()
        fde: be.FormatDescription | None = None
        tx_pending: Candidate | None = None     # a stop judged at replay, in this transaction
        outcomes: list[Outcome] = []            # the plan up to each of them
        events = checked_starts(self.source.events(*plan.replay_from), self._start_watches(plan), self.source)
        if any(s.file is None for s in plan.databases.values()):
            events = self._reaches_back(events, plan)
        stop_at = (stop.file, stop.pos) if stop.kind == "filepos" else None
        walker = Walker(events, count=True, stop_at=stop_at)   # stop_at: may name an event that does not decode
        self.hooks.phase_started("plan", None)
        seen = 0
        min_rows = rules.min_rows
        one_event_small = min_rows > 0    # with 0, every statement goes to the rules
        stop_by_tx = stop.kind in ("filepos", "gtid", "time")
        in_scope: dict[str, bool] = {}   # per transaction: is this database's change replayed?
        stmt_hit = 0                      # the most rows one table lost or had rewritten in this statement
        # Past the stop the walk goes on to the end of the binlog, only to list the candidates
        # there: nothing after the stop counts in the plan.
        past = False
        try:
            for step in walker.steps():
                cls = type(step)
                if cls is RowsStep or cls is QueryStep:
                    # The hot path: most steps are row events of restored tables.
                    ev = step.event
                    seen += 1
                    if seen % 20000 == 0:
                        self._progress(seen, ev)
                    if stop_at is not None and not past and (ev.file, ev.pos) == stop_at:
                        plan.stop = self._ref(tx, step, "", f"--stop-before {stop.text}")
                    if skip_todo:
                        tx_skip = self._match_skip_event(skip_todo, ev) or tx_skip
                    if tx_first_step is None:
                        tx_first_step = step
                    if cls is QueryStep:
                        if not scope.query(step, tx):
                            plan.left_out += 1
                            continue
                        tx_applies = True
                        cand = cands.query(tx, step, skipped=tx_skip is not None)
                        if auto and cand is not None and plan.stop is None and self._stops_auto(cand):
                            if cand.severity == AT_REPLAY:
                                tx_pending = tx_pending or cand
                            else:
                                plan.stop = cand
                        tx_statements.append(step)
                        continue
                    tmap = step.tmap
                    db = tmap.db
                    applies = in_scope.get(db)
                    if applies is None:
                        applies = in_scope[db] = scope.rows(db, tx)
                    if applies:
                        tx_applies = True
                        name = tmap.full_name
                        kind = _ROW_KIND[ev.type]
                        rows = step.rows
                        counts = tx_changes.get(name)
                        if counts is None:
                            counts = tx_changes[name] = [0, 0, 0]
                        counts[kind] += rows
                        if (step.statement_end and not stmt_rows and one_event_small and (not kind or rows < min_rows)
                                and (kind != 2 or name not in fk_deletes)):
                            # The common case: a statement of one row event, too small to be a candidate
                            # (a mass change, a cascading parent's DELETE): nothing to keep or judge.
                            continue
                        counts = stmt_rows.get(name)
                        if counts is None:
                            counts = stmt_rows[name] = [0, 0, 0]
                        counts[kind] += rows
                        if kind and counts[kind] > stmt_hit:
                            stmt_hit = counts[kind]
                        if kind == 1:
                            updates.add(ev, tmap)
                        elif kind == 2 and name in fk_deletes:
                            stmt_cascade = True
                    else:
                        plan.left_out += 1
                    # A statement ends with its last row event even when that one is left out
                    # (a trigger writing another schema): judge what it did to our tables now.
                    if step.statement_end:
                        cand = None
                        if stmt_hit >= min_rows:
                            cand = cands.rows(tx, ev, step.annotation or "", stmt_rows, plan.tables, tx_changes,
                                              updates, fde, skipped=tx_skip is not None)
                        if stmt_cascade and cand is None:
                            cand = cands.cascade(tx, ev, step.annotation or "", stmt_rows, plan.tables, tx_changes,
                                                 skipped=tx_skip is not None)
                        if auto and cand is not None and plan.stop is None and self._stops_auto(cand):
                            plan.stop = cand
                        stmt_rows = {}
                        stmt_hit = 0
                        stmt_cascade = False
                        updates.clear()
                    continue
                if cls is TxBegin:
                    tx, tx_changes, tx_statements, tx_skip, tx_applies = step, {}, [], None, False
                    tx_pending = None
                    tx_first_step = None
                    if stmt_rows:
                        stmt_rows = {}
                    stmt_hit = 0
                    stmt_cascade = False
                    if updates.events:
                        updates.clear()
                    in_scope = {}
                    if past:
                        continue
                    if stop_by_tx and self._stop_here(stop, step):
                        plan.stop = EventRef(step.file, step.pos, step.file, step.pos,
                                             str(step.gtid) if step.gtid else None, step.timestamp, "",
                                             f"--stop-before {stop.text}")
                    if skip_todo:
                        for text, spec in list(skip_todo.items()):
                            if spec.kind == "filepos" and (step.file, step.pos) == (spec.file, spec.pos):
                                tx_skip = skip_todo.pop(text)
                    if skip_sets and step.gtid is not None:
                        for text, spec in skip_sets.items():
                            if _names(spec, step.gtid):
                                tx_skip = spec
                                skip_seen[text].add(str(step.gtid))
                    continue
                if cls is TxEnd:
                    assert tx is not None
                    if past:
                        tx = None
                        continue
                    # FILE:POS may name any event of the transaction (`mariadb-binlog` prints "# at"
                    # for table maps, annotations and the XID too), not only those we look at.
                    if plan.stop is None and stop_at is not None and self._holds_event(tx, step, stop_at):
                        plan.stop = EventRef(stop_at[0], stop_at[1], tx.file, tx.pos, str(tx.gtid) if tx.gtid else None,
                                             tx.timestamp, "", f"--stop-before {stop.text}")
                    if skip_todo:
                        for text, spec in list(skip_todo.items()):
                            if spec.kind == "filepos" and self._holds_event(tx, step, (spec.file, spec.pos)):
                                tx_skip = skip_todo.pop(text)
                    if plan.stop is not None:
                        past = True
                        tx = None
                        self.hooks.progress("plan", seen, None, "listing the candidates after the stop")
                        continue
                    if tx_pending is not None:
                        # The replay decides whether this one is the disaster: the plan up to it is
                        # one outcome, and the scan goes on for the outcome after it.
                        outcomes.append(_outcome(plan, tx_pending, (tx.file, tx.pos)))
                    self._transaction_done(plan, tx, step, tx_skip, tx_first_step, tx_applies, tx_statements,
                                           tx_changes)
                    tx = None
                    continue
                if cls is FormatStep:
                    fde = step.fde
                    continue
                if cls is StopAt:
                    ev = step.event
                    start = tx or TxBegin(ev.file, ev.pos, None, ev.timestamp)
                    plan.stop = EventRef(ev.file, ev.pos, start.file, start.pos, str(start.gtid) if start.gtid else None,
                                         start.timestamp, "", f"--stop-before {stop.text}")
                    break
        except RestoreError as exc:
            if not past:
                raise
            # What lies after the stop is never replayed: a damaged event there only ends the listing.
            plan.warnings.append(f"disaster candidates after the stop were looked for only up to "
                                 f"{exc.where or 'an unreadable event'}: {exc.message}")
            tx = None
        self.hooks.phase_finished("plan", {"transactions": plan.transactions})
        plan.candidates = cands.found
        plan.candidates_left_out = cands.suspects_left_out
        if outcomes:
            _chain(plan, outcomes)
        if plan.stop is not None:
            plan.end = (plan.stop.tx_file, plan.stop.tx_pos)
            for cand in plan.candidates:
                cand.chosen = (cand.tx_file, cand.tx_pos) == plan.end and not cand.skipped
        elif stop.kind not in ("auto", "end"):
            if stop.kind == "filepos":
                self._refuse_position(Watch(stop.file, stop.pos, f"--stop-before {stop.text}"))
            raise PlanError(f"--stop-before {stop.text}: no such event in {plan.binlogs} after {plan.replay_from[0]}:{plan.replay_from[1]}",
                            hint="check the SPEC against `restore-bot plan --json` output; FILE:POS must be the start of an event")
        for spec in skip_todo.values():
            self._refuse_position(Watch(spec.file, spec.pos, f"--skip {spec.text}"))
        unmatched = [*skip_todo, *(text for text, seen in skip_seen.items() if not seen)]
        if unmatched:
            raise PlanError(f"--skip {', '.join(unmatched)}: no such transaction before the stop",
                            hint="name a GTID (or GTID set) or the FILE:POS of an event inside the transaction to skip")
        for text, seen in skip_seen.items():
            spec = skip_sets[text]
            if len(seen) < (spec.gset.count() if spec.gset else 1):
                plan.warnings.append(f"--skip {text}: skipped {len(seen)} transaction{'s' if len(seen) != 1 else ''} "
                                     f"of the set; {spec.gset.without(seen)} did not occur before the stop")
        if tx is not None and plan.stop is None:
            plan.warnings.append(f"the last transaction, starting at {tx.file}:{tx.pos}, never committed in the "
                                 "binlog (the server stopped mid-transaction); it is left out")
        trunc = getattr(self.source, "truncation", None)
        if trunc is not None and plan.stop is None:
            plan.warnings.append(f"{trunc.file} is truncated at position {trunc.pos} ({trunc.reason}), as a crashed "
                                 "server leaves it; everything complete before it is replayed")
        for name, end, checked in getattr(self.source, "unended", ()):
            if coord_key(name, end) >= coord_key(*plan.end):
                continue   # after the stop: the replay never crosses it
            # One whose next file's GTID list shows transactions it lacks was refused while reading.
            plan.warnings.append(f"{name} ends at position {end} without a ROTATE or STOP event although later "
                                 "files follow: a server crash leaves that, but so does a copy cut short; "
                                 + ("the next file's GTID list shows no transaction missing, but if the server "
                                    f"did not crash, copy {name} again before restoring" if checked else
                                    f"the next file has no GTID list to check it; if the server did not crash, "
                                    f"copy {name} again before restoring"))
        if stop.kind == "auto" and plan.stop is None:
            plan.warnings.append("no destructive event found: the replay runs to the end of the binlog")
        self._not_read(plan, walker)

    def _not_read(self, plan: Plan, walker: Walker) -> None:
        """What the plan had to pass over or cannot predict: events skipped as ignorable, and tables the
        binlog writes that no snapshot holds and the window never creates (issue 10 §5)."""
        for etype, (count, first) in sorted(walker.ignored.items()):
            plan.warnings.append(f"skipped {count} event{'s' if count != 1 else ''} of type {etype}, unknown to "
                                 f"restore-bot but flagged ignorable by the server that wrote {'them' if count != 1 else 'it'} "
                                 f"(LOG_EVENT_IGNORABLE_F); the first at {first}")
        held = {f"{db}.{table}" for snap in self.req.snapshots for db, table in snap.tables}
        for name, stats in sorted(plan.tables.items()):
            if name not in held and name not in walker.ddl_tables:
                stats.exact = False
                stats.note = "no snapshot holds this table and the binlog does not create it: its rows before are unknown"
                plan.warnings.append(f"{name} is written by the binlog, but no snapshot holds it and the binlog does not "
                                     "create it: its row count cannot be predicted, and the replay fails on it unless "
                                     "the target already has the table (dump it too, or leave its database out)")
            elif stats.exact and stats.predicted < 0:
                stats.exact = False
                stats.note = f"the binlog deletes {stats.deleted} rows, more than the snapshot's {stats.snapshot_rows} plus those inserted"
                plan.warnings.append(f"{name}: {stats.note}; the snapshot does not match the binlog's start")

    def _columns(self) -> dict[str, list[str]]:
        return {f"{db}.{table}": [c.name for c in info.columns]
                for snap in self.req.snapshots for (db, table), info in snap.tables.items()}

    @staticmethod
    def _stops_auto(cand: Candidate) -> bool:
        return cand.severity in (CERTAIN, AT_REPLAY) and not cand.skipped

    def _transaction_done(self, plan: Plan, tx: TxBegin, end: TxEnd, skip: Spec | None, first_step,
                          applies: bool, statements: list[QueryStep], changes: dict[str, list[int]]) -> None:
        """A transaction before the stop ended: it is skipped, or counted in the plan."""
        if skip is not None:
            stmt = ""
            if isinstance(first_step, QueryStep):
                stmt = first_step.query.query
            elif isinstance(first_step, RowsStep):
                stmt = first_step.annotation or ""
            plan.skips.append(EventRef(tx.file, tx.pos, tx.file, tx.pos, str(tx.gtid) if tx.gtid else None,
                                       tx.timestamp, stmt[:1000], f"--skip {skip.text}"))
        elif applies:
            for stmt_step in statements:
                self._statement_effects(plan, stmt_step)
            if end.rolled_back:
                # Its transactional tables' changes are undone, the others' stay: the
                # binlog does not say which is which.
                self._inexact(plan, changes, "changed by a transaction the source rolled back")
            else:
                self._merge(plan, changes)
                if self._fks:
                    self._cascaded(plan, changes)
            plan.transactions += 1
            if plan.first_timestamp is None:
                plan.first_timestamp = tx.timestamp
            plan.last_timestamp = end.timestamp
            if tx.gtid is not None:
                plan.end_gtid = tx.gtid.text
        plan.end = (end.file, end.pos)

    def _reaches_back(self, events: Iterable[be.RawEvent], plan: Plan) -> Iterator[be.RawEvent]:
        """A start known only by its GTID replays from the first binlog file present: check, with the
        GTID list that file begins with (MariaDB GTID_LIST, MySQL PREVIOUS_GTIDS), that nothing was
        logged between the dump's position and the file. Returns the events, none consumed."""
        it = iter(events)
        head: list[be.RawEvent] = []
        before = listed = None
        for ev in it:
            head.append(ev)
            if ev.type in (be.GTID_LIST, be.PREVIOUS_GTIDS):
                listed = ev
                try:
                    before = (GtidSet.from_gtid_list(be.parse_gtid_list(ev)) if ev.type == be.GTID_LIST
                              else GtidSet.from_ranges(be.parse_previous_gtids(ev)))
                except (struct.error, ValueError, IndexError) as exc:
                    raise BinlogError(f"{ev.where}: cannot read the GTID list at the start of {ev.file}: {exc}",
                                      where=ev.where, hint="the file is damaged; copy it again") from None
                break
            if ev.type not in (be.FORMAT_DESCRIPTION, be.START_ENCRYPTION, be.BINLOG_CHECKPOINT, be.ROTATE):
                break   # the file's first transaction: it has no GTID list
        first = plan.replay_from[0]
        starts = [s for s in plan.databases.values() if s.file is None]
        if before is None:
            plan.warnings.append(
                f"{first}, the first binlog file, has no GTID list, so nothing shows that it reaches back to the "
                f"GTID position of {', '.join(sorted({os.path.basename(s.snapshot) for s in starts}))}: a transaction "
                "logged between the dump and this file would be missing without an error")
        else:
            for start in starts:
                missing = GtidSet.parse(start.gtid).missing(before)
                if not missing:
                    continue
                dbs = sorted(s.db for s in starts if s.snapshot == start.snapshot)
                live = "://" in plan.binlogs
                raise PlanError(
                    f"{first}, the first binlog file {'on' if live else 'in'} {plan.binlogs}, begins after the GTID "
                    f"position {start.gtid} ({start.source}): its GTID list at {listed.where} shows transactions "
                    f"logged before it that the dump does not hold: {'; '.join(missing)}. They are in no binlog "
                    f"given here, so replaying would silently leave them out of {', '.join(dbs)}",
                    where=listed.where,
                    hint=("the server has purged the older binlog files: pass --binlogs the archive directory "
                          "that still holds them" if live else
                          f"copy the older binlog files (the ones before {first}) into {plan.binlogs}, or pass "
                          "--binlogs the archive that holds them")
                         + f"; the first file must begin at or before {start.gtid}. Or use a dump taken after {first} began")
        return itertools.chain(head, it)

    def _progress(self, seen: int, ev) -> None:
        self.hooks.progress("plan", seen, None, f"{ev.file}:{ev.pos}")
        self.interrupt()

    def _holds_event(self, tx: TxBegin, end: TxEnd, at: tuple[str, int]) -> bool:
        """Does an event of the transaction [tx, end) start at `at`? Rare: it reads that range again."""
        file, pos = at
        if not (file == tx.file == end.file and tx.pos < pos < end.pos):
            return False
        for ev in self.source.events(file, tx.pos):
            if ev.file != file or ev.pos >= end.pos:
                break
            if ev.pos == pos:
                return True
        return False

    @staticmethod
    def _match_skip_event(skip_todo: dict[str, Spec], ev) -> Spec | None:
        """A `--skip FILE:POS` naming this event: the whole transaction is skipped."""
        for text, spec in list(skip_todo.items()):
            if spec.kind == "filepos" and (ev.file, ev.pos) == (spec.file, spec.pos):
                return skip_todo.pop(text)
        return None

    def _start_watches(self, plan: Plan) -> list[Watch]:
        """Every start given as FILE:POS must be an event's start (or a file's end)."""
        out = []
        for start in plan.databases.values():
            if start.file is None:
                continue
            if start.source.startswith("--start"):
                hint = ("give the position of an event's start, as `mariadb-binlog` prints it after \"# at\"; "
                        "a dump taken with --master-data/--source-data records the right one")
            else:
                hint = ("the dump's coordinates do not fall on these binlog files' events: check that --binlogs holds "
                        "the binlogs of the server the dump was taken from (not a copy of another server's or a "
                        "replica's), or pass the dumps that belong to them")
            out.append(Watch(start.file, start.pos, start.source, hint))
        return out

    def _refuse_position(self, w: Watch) -> None:
        """A stop or skip FILE:POS that matched nothing: refuse it precisely if it is not an event's start."""
        try:
            loc = locate(self.source, w.file, w.pos)
        except RestoreError:
            return   # a file that cannot be read: the caller's own error says enough
        if not loc.boundary or loc.at_end:
            raise refusal(w, loc)

    @staticmethod
    def _stop_here(stop: Spec, tx: TxBegin) -> bool:
        if stop.kind == "filepos":
            return (tx.file, tx.pos) == (stop.file, stop.pos)
        if stop.kind == "gtid":
            return tx.gtid is not None and _names(stop, tx.gtid)
        if stop.kind == "time":
            return tx.timestamp >= (stop.epoch or 0)
        return False

    @staticmethod
    def _ref(tx: TxBegin, step, statement: str, reason: str, finding: Finding | None = None) -> EventRef:
        ev = step.event
        return EventRef(ev.file, ev.pos, tx.file, tx.pos, str(tx.gtid) if tx.gtid else None,
                        ev.timestamp, statement[:1000], reason,
                        database=finding.database if finding else None,
                        table=finding.table if finding else None,
                        rows=finding.rows if finding else None)

    def _cascaded(self, plan: Plan, changes: dict[str, list[int]], statement: str = "") -> None:
        """Rows of child tables that a transaction's DELETE/UPDATE of their parents changed through
        ON DELETE / ON UPDATE actions: the server did it, the binlog does not show it."""
        fks = self._fks
        for name, (_ins, upd, dele) in changes.items():
            if not ((dele and name in fks.delete_parents) or (upd and name in fks.update_parents)):
                continue
            for child, effect in fks.reach(name, deleted=bool(dele), updated=bool(upd)).items():
                stats = plan.tables.get(child)
                if stats is None:
                    continue   # not restored
                by = f"{statement} on {name}" if statement else f"changes to {name}"
                if effect == "deleted":
                    stats.exact = False
                    stats.note = (f"cascaded changes are not logged: rows deleted by ON DELETE CASCADE from "
                                  f"{by} are not in the binlog, so its row count cannot be predicted")
                elif stats.exact:
                    stats.note = (f"cascaded changes are not logged: rows changed by ON DELETE/UPDATE SET NULL or "
                                  f"CASCADE from {by} are not counted (its row count is unaffected)")

    def _foreign_key_ddl(self, info, step: QueryStep, tables: list[str]) -> None:
        """Keep the cascading foreign keys up to date with DDL the replay applies."""
        verb, fks = info.verb, self._fks
        if verb == "CREATE TABLE" and tables:
            db, table = tables[0].split(".", 1)
            fks.table_created(tables[0], parse_foreign_keys(step.query.query, db, table))
        elif verb == "ALTER TABLE" and tables:
            db, table = tables[0].split(".", 1)
            sql = step.query.query
            fks.altered(tables[0], parse_foreign_keys(sql, db, table), dropped_foreign_keys(sql))
        elif verb in ("DROP TABLE", "DROP SEQUENCE"):
            for name in tables:
                fks.table_dropped(name)
        elif verb == "DROP DATABASE":
            for db in info.databases:
                fks.database_dropped(db)
        if info.renames:
            for old, new in info.renames:
                fks.renamed(f"{old.db}.{old.name}", f"{new.db}.{new.name}")

    def _statement_effects(self, plan: Plan, step: QueryStep) -> None:
        """What a replayed statement does to the per-table counts we can predict."""
        info = step.info
        tables = [f"{t.db}.{t.name}" for t in info.written if t.db and t.name]
        if info.temporary:
            (self._temp.update if info.verb.startswith("CREATE") else self._temp.difference_update)(tables)
            return
        tables = [t for t in tables if t not in self._temp]
        if info.kind == "ddl":
            self._foreign_key_ddl(info, step, tables)
            self._triggers.ddl(info, step.query.query)
        if info.verb == "CREATE TABLE":
            keep = _IF_NOT_EXISTS.search(step.query.query[:300]) is not None
            for name in tables:
                if not (keep and name in plan.tables):
                    plan.tables[name] = TableStats(exact="SELECT" not in step.query.query.upper())
        elif info.verb in ("DROP TABLE", "DROP SEQUENCE"):   # a sequence is a one-row table
            for name in tables:
                plan.tables.pop(name, None)
        elif info.verb == "DROP DATABASE":
            for db in info.databases:
                for name in [n for n in plan.tables if n.split(".", 1)[0] == db]:
                    plan.tables.pop(name)
        elif info.verb == "TRUNCATE":
            for name in tables:
                plan.tables[name] = TableStats()
        elif info.renames:
            for old, new in info.renames:
                stats = plan.tables.pop(f"{old.db}.{old.name}", None)
                if stats is not None:
                    plan.tables[f"{new.db}.{new.name}"] = stats
        elif info.kind == "dml":
            for name in tables:
                stats = plan.tables.setdefault(name, TableStats())
                stats.exact = False
                stats.note = "changed by statement-format DML: the binlog does not say how many rows"
                self._triggers.uncount(plan.tables, name)
            if self._fks:
                # REPLACE deletes the rows it replaces; the others as their verb says.
                dele, upd = info.verb in ("DELETE", "REPLACE"), info.verb in ("UPDATE", "INSERT", "REPLACE")
                self._cascaded(plan, {name: [0, int(upd), int(dele)] for name in tables},
                               f"a statement-format {info.verb}")

    @staticmethod
    def _inexact(plan: Plan, changes: dict[str, list[int]], note: str) -> None:
        for name in changes:
            stats = plan.tables.setdefault(name, TableStats())
            stats.exact = False
            stats.note = note

    @staticmethod
    def _merge(plan: Plan, changes: dict[str, list[int]]) -> None:
        tables = plan.tables
        for name, (ins, upd, dele) in changes.items():
            stats = tables.get(name) or tables.setdefault(name, TableStats())
            stats.inserted += ins
            stats.updated += upd
            stats.deleted += dele


def _names(spec: Spec, gtid) -> bool:
    """Does the GTID spec (a GTID, a MariaDB list, a MySQL set) name this transaction?"""
    gset = spec.gset if spec.gset is not None else GtidSet.parse(spec.gtid or spec.text)
    return gset.names(gtid)


def _outcome(plan: Plan, stop: EventRef | None, end: tuple[str, int]) -> Outcome:
    """The plan as it stands now, frozen."""
    return Outcome(stop, end, plan.transactions, {k: replace(v) for k, v in plan.tables.items()},
                   plan.last_timestamp, plan.end_gtid, list(plan.skips))


def _chain(plan: Plan, outcomes: list[Outcome]) -> None:
    """The plan stops at the first stop judged at replay; `later` holds where the replay ends
    if it judges that one (and each next one) not to be the disaster."""
    last = _outcome(plan, plan.stop, (plan.stop.tx_file, plan.stop.tx_pos) if plan.stop else plan.end)
    first = outcomes[0]
    plan.later = outcomes[1:] + [last]
    plan.stop, plan.end, plan.transactions, plan.tables = first.stop, first.end, first.transactions, first.tables
    plan.last_timestamp, plan.end_gtid, plan.skips = first.last_timestamp, first.end_gtid, first.skips


def make_plan(snapshots: list[Snapshot], source, *, stop: str = "auto", skips: Sequence[str] = (),
              start: str | None = None, rules: DestructiveRules | None = None,
              hooks: Hooks | None = None, interrupt: Callable[[], None] | None = None,
              expected: Sequence[str] = ()) -> Plan:
    """`expected`: "file:pos" of transaction starts, or GTIDs, an operator marked Expected: listed
    as candidates of severity "expected", never an automatic stop."""
    req = plan_request(snapshots, stop=stop, skips=skips, start=start, rules=rules, expected=expected)
    return Planner(source, req, hooks, interrupt).build()
