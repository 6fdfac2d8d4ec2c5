"""Every event in the window that could be the disaster, each with how sure we are.

- `certain`: DROP DATABASE/TABLE, TRUNCATE, CREATE OR REPLACE, a statement-form DELETE without
  WHERE, a mass DELETE (row events, cascades included), a mass UPDATE that destroys information
  (row images, see row_images). `--stop-before auto` stops before the first one.
- `suspect`: listed, never an automatic stop: a mass UPDATE that keeps information, a
  statement-form DELETE/UPDATE with a WHERE whose effect is unknown.
- Foreign keys: the rows a DELETE on a parent removes from its ON DELETE CASCADE children are not
  in the binlog. A DELETE of (nearly) all of a parent's rows whose cascade reaches a child holding
  rows is `certain` (a mass DELETE by cascade), whatever the parent's size; one of at least a
  quarter of the parent's rows (or `min_rows` rows) is `suspect`. A routine single-row delete from
  a large parent is not listed.
- `judged at replay`: a statement-form UPDATE without WHERE carries no row images; the replay
  measures, right before applying it, what it would overwrite (see replay_judge).
- `expected`: an operator marked it so (the alert's *Expected* button): listed, never a stop.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from restore.binlog import events as be
from restore.binlog.row_images import judge_update
from restore.binlog.rows import TableMap
from restore.binlog.walker import QueryStep, TxBegin
from restore.plan.destructive import DestructiveRules, Finding
from restore.plan.foreign_keys import ForeignKeys
from restore.plan.plan import Candidate, TableStats

CERTAIN, SUSPECT, AT_REPLAY, EXPECTED = "certain", "suspect", "judged at replay", "expected"
UPDATE_SAMPLE_BYTES = 16 << 20   # row events of one statement kept to judge it, at most
MAX_SUSPECTS = 100               # a STATEMENT binlog makes every UPDATE ... WHERE a suspect
CASCADE_SHARE = 0.25             # a DELETE of this share of a cascading parent's rows is a suspect


@dataclass
class StatementUpdates:
    """The UPDATE row events of the statement being read, kept (up to a budget) until its end
    says whether it was a mass UPDATE worth judging."""
    events: list[tuple[be.RawEvent, TableMap]] = field(default_factory=list)
    size: int = 0

    def add(self, ev: be.RawEvent, tmap: TableMap) -> None:
        if self.size < UPDATE_SAMPLE_BYTES:
            self.events.append((ev, tmap))
            self.size += len(ev.data)

    def clear(self) -> None:
        if self.events:
            self.events = []
            self.size = 0


class Candidates:
    def __init__(self, rules: DestructiveRules, expected: frozenset[str] = frozenset(),
                 columns: dict[str, Sequence[str]] | None = None, fks: ForeignKeys | None = None) -> None:
        self.rules = rules
        self.expected = expected          # "file:pos" of transaction starts, or GTIDs
        self.columns = columns or {}      # "db.table" -> column names, from the snapshots
        self.fks = fks or ForeignKeys()   # cascading foreign keys (kept up to date by the planner)
        self.found: list[Candidate] = []
        self.suspects_left_out = 0

    def _add(self, tx: TxBegin, ev: be.RawEvent, statement: str, finding: Finding, severity: str,
             skipped: bool) -> Candidate:
        if severity != SUSPECT and (f"{tx.file}:{tx.pos}" in self.expected
                                    or (tx.gtid is not None and str(tx.gtid) in self.expected)):
            severity = EXPECTED
        cand = Candidate(ev.file, ev.pos, tx.file, tx.pos, str(tx.gtid) if tx.gtid else None, ev.timestamp,
                         statement[:1000], finding.reason, database=finding.database, table=finding.table,
                         rows=finding.rows, severity=severity, skipped=skipped)
        if severity == SUSPECT and sum(c.severity == SUSPECT for c in self.found) >= MAX_SUSPECTS:
            self.suspects_left_out += 1
        else:
            self.found.append(cand)
        return cand

    def query(self, tx: TxBegin, step: QueryStep, *, skipped: bool) -> Candidate | None:
        info = step.info
        finding = self.rules.query_finding(info)
        statement = step.query.query
        if finding is not None:
            verb = info.verb
            severity = AT_REPLAY if verb == "UPDATE" else CERTAIN
            if verb == "DELETE" and finding.database and finding.table:
                finding = self._with_cascade(finding, f"{finding.database}.{finding.table}")
            return self._add(tx, step.event, statement, finding, severity, skipped)
        if info.verb in ("DELETE", "UPDATE") and info.kind == "dml" and info.written and not info.temporary:
            t = info.written[0]
            finding = Finding(f"statement-form {info.verb} with a WHERE on {t.db}.{t.name}: how many rows it "
                              "changes is not in the binlog", t.db, t.name)
            if info.verb == "DELETE":
                finding = self._with_cascade(finding, f"{t.db}.{t.name}")
            return self._add(tx, step.event, statement, finding, SUSPECT, skipped)
        return None

    def rows(self, tx: TxBegin, ev: be.RawEvent, statement: str, stmt_rows: dict[str, list[int]],
             tables: dict[str, TableStats], tx_changes: dict[str, list[int]], updates: StatementUpdates,
             fde: be.FormatDescription | None, *, skipped: bool) -> Candidate | None:
        """A statement's row events just ended: a mass DELETE, or a mass UPDATE judged by its images."""
        finding = self.rules.rows_finding(stmt_rows, tables, tx_changes)
        if finding is None:
            return None
        if finding.reason.startswith("mass DELETE"):
            finding = self._with_cascade(finding, f"{finding.database}.{finding.table}")
            return self._add(tx, ev, statement, finding, CERTAIN, skipped)
        name = f"{finding.database}.{finding.table}"
        mine = [(e, fde.post_header(e.type) if fde else 10, t) for e, t in updates.events if t.full_name == name]
        verdict = judge_update(mine, self.columns.get(name, ()))
        sampled = "" if updates.size < UPDATE_SAMPLE_BYTES else f" (judged on the first {verdict.rows_looked_at} rows)"
        finding = Finding(f"{finding.reason}; {verdict.detail}{sampled}", finding.database, finding.table, finding.rows)
        return self._add(tx, ev, statement, finding, verdict.severity, skipped)

    def _cascade_words(self, parent: str) -> str:
        """What a DELETE on `parent` does through its foreign keys, in words ("" when nothing)."""
        if parent not in self.fks.delete_parents:
            return ""
        reach = self.fks.reach(parent, deleted=True, updated=False)
        gone = sorted(c for c, e in reach.items() if e == "deleted")
        nulled = sorted(c for c, e in reach.items() if e == "updated")
        out = []
        if gone:
            out.append(f"cascades to child table{'s' if len(gone) > 1 else ''} {', '.join(gone)}: "
                       "their deleted rows are not in the binlog")
        if nulled:
            out.append(f"sets NULL (or the default) in {', '.join(nulled)}: not in the binlog either")
        return "; ".join(out)

    def _with_cascade(self, finding: Finding, parent: str) -> Finding:
        words = self._cascade_words(parent)
        return Finding(f"{finding.reason}; {words}", finding.database, finding.table, finding.rows) if words else finding

    def cascade(self, tx: TxBegin, ev: be.RawEvent, statement: str, stmt_rows: dict[str, list[int]],
                tables: dict[str, TableStats], tx_changes: dict[str, list[int]], *,
                skipped: bool) -> Candidate | None:
        """A statement deleted rows of a parent whose foreign keys cascade (and was no mass DELETE of
        its own table): certain when it deleted (nearly) every parent row and a child it cascades to
        holds rows, suspect when it deleted a good share of them."""
        rules = self.rules
        for name, (ins, _upd, dele) in stmt_rows.items():
            if not dele or name not in self.fks.delete_parents:
                continue
            reach = self.fks.reach(name, deleted=True, updated=False)
            if not reach:
                continue
            stats = tables.get(name) or TableStats()
            tx_ins, _, tx_del = tx_changes.get(name, (0, 0, 0))
            before = stats.snapshot_rows + stats.inserted - stats.deleted + (tx_ins - ins) - (tx_del - dele)
            share = f"{dele} of about {before} rows" if before > 0 else f"{dele} rows"
            db, _, table = name.partition(".")
            wiped = before <= 0 or dele >= rules.fraction * before
            children = {c: _rows(tables.get(c)) for c, e in reach.items() if e == "deleted"}
            big = sorted(c for c, n in children.items() if n >= rules.min_rows)
            if wiped and big:
                held = ", ".join(f"{c} (about {children[c]} rows)" for c in big)
                finding = Finding(f"mass DELETE by cascade: DELETE of {share} of {name}, whose ON DELETE CASCADE "
                                  f"empties {held}; {self._cascade_words(name)}", db, table, dele)
                return self._add(tx, ev, statement, finding, CERTAIN, skipped)
            if wiped or dele >= rules.min_rows or dele >= CASCADE_SHARE * before:
                finding = Finding(f"DELETE of {share} of {name} {self._cascade_words(name)}", db, table, dele)
                return self._add(tx, ev, statement, finding, SUSPECT, skipped)
        return None

    @property
    def first_certain(self) -> Candidate | None:
        return next((c for c in self.found if c.severity == CERTAIN and not c.skipped), None)


def _rows(stats: TableStats | None) -> int:
    return 0 if stats is None else stats.snapshot_rows + stats.inserted - stats.deleted
