"""A production restore: never replay into the live schema.

    1. fence     no other session may write to the restored databases (or lock them out)
    2. rebuild   run the plan into a throwaway sandbox, verified like a stage run
    3. shadow    copy the result into `<db>__shadow_<job>` on the target, compare checksums
    4. swap      one atomic RENAME TABLE: live tables -> `<db>__before_<job>`, shadow -> live; then
                 the rebuild's triggers, views and routines are created in the live schema
    5. verify    the live tables' checksums equal the stage run's, its objects the rebuild's

What the live schema held (the application's writes after the disaster) is moved aside, never
dropped, and reported: its tables with their triggers, and its views and routines that the
restored ones replace. Its views and routines the restored copy lacks stay, and are reported.

Each phase is recorded on the target (`_restore_bot.state`, row `prod:<job>`, see
restore.target.checkpoint) once its effect is durable, and a rerun of the job resumes from the
record: a job recorded verified is done (also when production was empty before it); one recorded
renamed creates the objects and verifies; one recorded shadowed swaps the shadow copy it left,
once its checksums still equal the rebuild's; before that, the rebuild (a throwaway sandbox that
dies with the run) is done again. The one step the record cannot cover is the RENAME itself
(DDL commits on its own): a job recorded "swapping" looks whether its shadow schemas still hold
the tables (RENAME TABLE moves all or none) to know whether it ran.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import pymysql

from restore.errors import TargetError, VerifyError
from restore.hooks import Hooks, NullHooks
from restore.meter import progress_reporter
from restore.mysql.dsn import Dsn
from restore.mysql.quote import quote_ident
from restore.plan.physical_base import sandbox_for
from restore.plan.physical_move import datadir_on_this_host, move_tables
from restore.plan.plan import Plan
from restore.prod import objects
from restore.replay.runner import PHYSICAL_COPY_CHOICES, RestoreRunner
from restore.replay.verify import table_checksums
from restore.target import checkpoint
from restore.target import fence as fencing
from restore.target.checkpoint import ProdRecord

_NO_SUCH_THREAD = 1094


@dataclass
class ProdOutcome:
    """What a prod restore did (in words: handlers.presenter.results.prod_summary)."""
    checksums: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    kept_aside: dict[str, dict[str, int]] = field(default_factory=dict)   # aside db -> {table: rows}
    swapped: bool = False
    objects: dict[str, list[str]] = field(default_factory=dict)        # db -> restored "trigger t", "view v"...
    objects_aside: dict[str, list[str]] = field(default_factory=dict)  # aside db -> the live schema's, kept there
    left_in_live: dict[str, list[str]] = field(default_factory=dict)   # db -> views/routines the restore lacks
    shadow_copy: dict[str, str] = field(default_factory=dict)          # {"path", "why"}: how the shadow was filled

    def to_dict(self) -> dict:
        return {"tables": {n: {"rows": r, "checksum": c} for n, (r, c) in sorted(self.checksums.items())},
                "kept_aside": self.kept_aside, "swapped": self.swapped, "objects": self.objects,
                "objects_aside": self.objects_aside, "left_in_live": self.left_in_live,
                "shadow_copy": self.shadow_copy}

    @classmethod
    def from_dict(cls, doc: dict) -> "ProdOutcome":
        """The outcome `to_dict` wrote (as recorded on the target)."""
        return cls({n: (t["rows"], t["checksum"]) for n, t in doc.get("tables", {}).items()},
                   doc.get("kept_aside", {}), doc.get("swapped", False), doc.get("objects", {}),
                   doc.get("objects_aside", {}), doc.get("left_in_live", {}), doc.get("shadow_copy", {}))


class ProdRestore:
    def __init__(self, plan: Plan, snapshots, source, target: Dsn, *, job_tag: str,
                 expected: dict[str, int] | None = None, fence: str = "refuse", fence_users: list[str] | None = None,
                 hooks: Hooks | None = None, interrupt: Callable[[], None] | None = None,
                 verdicts: dict[str, str] | None = None, shadow_copy: str = "auto") -> None:
        """`shadow_copy`: how the rebuild's tables reach the shadow schema: "auto" (tablespaces when
        the target's datadir is on this host, else rows) or "rows" (always a copy by rows)."""
        if shadow_copy not in PHYSICAL_COPY_CHOICES:
            raise TargetError(f"unknown shadow copy {shadow_copy!r}",
                              hint=f"use one of {', '.join(PHYSICAL_COPY_CHOICES)}")
        self.shadow_copy = shadow_copy
        self.verdicts = verdicts   # stage's verdicts on stops judged at replay, applied as they were
        self.plan, self.snapshots, self.source, self.target = plan, snapshots, source, target
        self.tag = job_tag
        self.expected = expected or {}
        self.fence, self.fence_users = fence, fence_users or []
        self.hooks = hooks or NullHooks()
        self.interrupt = interrupt
        self.dbs = sorted(plan.databases)

    def shadow(self, db: str) -> str:
        return f"{db}__shadow_{self.tag}"

    def aside(self, db: str) -> str:
        return f"{db}__before_{self.tag}"

    def run(self) -> ProdOutcome:
        conn = self.target.connect()
        try:
            self._hold_job_lock(conn)
            record = checkpoint.load_prod(conn, self.tag)
            if record is not None and record.doc.get("plan_id") != self.plan.plan_id:
                raise TargetError(f"{self.target.redacted()} holds the record of prod job {self.tag} for plan "
                                  f"{record.doc.get('plan_id')}, not for plan {self.plan.plan_id}",
                                  where=f"{checkpoint.SCHEMA}.state",
                                  hint="run a new prod job for this plan (/restore prod): a job restores one plan")
            if record is not None and record.reached("verified"):
                self.hooks.message(f"prod job {self.tag} already swapped this plan into production and verified it "
                                   "(recorded on the target); nothing to do")
                return ProdOutcome.from_dict(record.doc.get("outcome", {}))
            if record is not None:
                self.hooks.message(f"resuming prod job {self.tag}: the target records it finished phase "
                                   f"{record.phase}")
            return self._phases(conn, record)
        finally:
            conn.close()

    def _hold_job_lock(self, conn) -> None:
        """One run of this job on the target at a time: a named lock this run's session holds. A run
        taken over while it still ran (its instance stalled: the job store stopped hearing from it)
        would carry on beside this one; its session is ended (KILL), which aborts its statement (the
        swap's RENAME is all or nothing) and stops it. Every phase after is verified by checksums, so
        what it wrote meanwhile is caught, not swapped in."""
        name = f"restore-bot prod {self.tag}"
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (name,))
            if cur.fetchone()[0] == 1:
                return
            cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
            holder = cur.fetchone()[0]
            if holder is not None:
                self.hooks.message(f"an earlier run of prod job {self.tag} still works on the target (connection "
                                   f"{holder}): ending its session so that only this run goes on")
                try:
                    cur.execute(f"KILL {int(holder)}")
                except pymysql.err.MySQLError as exc:
                    if exc.args[0] != _NO_SUCH_THREAD:   # not merely gone on its own meanwhile
                        raise TargetError(f"an earlier run of prod job {self.tag} holds the lock {name!r} on "
                                          f"{self.target.redacted()} (connection {holder}), and ending it failed: "
                                          f"error {exc.args[0]}: {exc.args[-1]}", where=name,
                                          hint=f"stop the instance running it, or KILL {holder} on the target; "
                                               "then run the job again") from None
            cur.execute("SELECT GET_LOCK(%s, 30)", (name,))
            if cur.fetchone()[0] != 1:
                raise TargetError(f"another run of prod job {self.tag} still holds the lock {name!r} on "
                                  f"{self.target.redacted()} after 30 s", where=name,
                                  hint="stop the other instance running this job, then run the job again")

    def _phases(self, conn, record: ProdRecord | None) -> ProdOutcome:
        """The five phases from the first one `record` does not show finished (see the module's docstring)."""
        renamed = record is not None and (record.reached("renamed")
                                          or (record.phase == "swapping" and self._renamed(conn)))
        if renamed and not record.reached("renamed"):
            self.hooks.message("the RENAME of an earlier run went through before it could be recorded")
            self._mark(conn, record, "renamed")
        shadowed = record is not None and record.reached("shadowed") and not renamed
        if not renamed and not (shadowed and self._shadow_intact(conn, record)):
            self._step("fence", lambda: self._fence_check(conn, "before the restore"))
            record = self._mark(conn, record, "fenced")
            with ExitStack() as stack:   # the rebuild's sandbox lives until the shadow copy is made from it
                built = self._step("rebuild", lambda: self._rebuild(stack))
                record.doc["built"] = {name: list(v) for name, v in built.items()}
                self._mark(conn, record, "rebuilt")
                record.doc["shadow_copy"] = self._step("shadow", lambda: self._ship(conn, built))
            self._mark(conn, record, "shadowed")
        if record.reached("swapped"):
            outcome = ProdOutcome.from_dict(record.doc.get("outcome", {}))
        else:
            if self.interrupt:
                self.interrupt()
            outcome = self._fenced(conn, "swap", lambda: self._swap_and_finish(conn, record))
        outcome = self._step("verify", lambda: self._verify(conn, outcome))
        outcome.shadow_copy = outcome.shadow_copy or record.doc.get("shadow_copy", {})
        record.doc["outcome"] = outcome.to_dict()
        self._mark(conn, record, "verified")
        return outcome

    def _mark(self, conn, record: ProdRecord | None, phase: str) -> ProdRecord:
        """Record on the target that the job finished `phase` (its effect is durable)."""
        if record is None:
            record = ProdRecord(self.tag, phase, self.dbs, {"plan_id": self.plan.plan_id})
        record.phase = phase
        checkpoint.record_prod(conn, record)
        return record

    def _swap_and_finish(self, conn, record: ProdRecord) -> ProdOutcome:
        if not record.reached("renamed"):
            self._mark(conn, record, "swapping")
            self._swap(conn)
            self._mark(conn, record, "renamed")
        outcome = self._finish(conn, ProdOutcome(swapped=True))
        record.doc["outcome"] = outcome.to_dict()
        self._mark(conn, record, "swapped")
        return outcome

    def _renamed(self, conn) -> bool:
        """After a run recorded "swapping": did its RENAME run? It moves every shadow table or none,
        and the shadow schemas then hold only the kept definitions."""
        with conn.cursor() as cur:
            return all(set(_tables(cur, self.shadow(db))) <= {objects.STASH} for db in self.dbs)

    def _shadow_intact(self, conn, record: ProdRecord) -> bool:
        """The shadow copy a run recorded as complete still equals its rebuild (nobody changed it since)."""
        built = {name: tuple(v) for name, v in record.doc.get("built", {}).items()}
        with conn.cursor() as cur:
            stashed = all(objects.STASH in _tables(cur, self.shadow(db)) for db in self.dbs)
        if built and stashed and self._shadow_sums(conn) == built:
            self._check_expected(built, "the shadow copy an earlier run of this job made")
            self.hooks.message("the shadow copy an earlier run of this job made is complete and equals its rebuild; "
                               "swapping it in without rebuilding")
            return True
        self.hooks.message("the shadow copy an earlier run of this job made is not as it recorded it; rebuilding")
        return False

    def _shadow_sums(self, conn) -> dict[str, tuple[int, int | None]]:
        """The shadow tables' checksums, named as their production tables (the kept definitions left out)."""
        shadow = table_checksums(conn, [self.shadow(db) for db in self.dbs])
        return {name.replace("__shadow_" + self.tag + ".", ".", 1): v for name, v in shadow.items()
                if not name.endswith("." + objects.STASH)}

    def _fenced(self, conn, name: str, fn):
        """Run a step that changes production while the application cannot write."""
        with fencing.fenced(conn, self.dbs, self.fence, self.fence_users, f"prod restore refused right before the {name}"):
            return self._step(name, fn)

    def _step(self, name: str, fn):
        self.hooks.phase_started(name, None)
        out = fn()
        self.hooks.phase_finished(name, {})
        return out

    def _fence_check(self, conn, when: str) -> None:
        fencing.preflight(conn, self.dbs, self.fence, self.fence_users, f"prod restore refused {when}")

    def _rebuild(self, stack: ExitStack) -> dict[str, tuple[int, int | None]]:
        """The plan run into a sandbox (on a physical backup's prepared copy when the base is one: no
        load), verified; the sandbox stays open in `stack` for the shadow copy."""
        self._box = box = stack.enter_context(sandbox_for(self.snapshots))
        RestoreRunner(self.plan, self.snapshots, self.source, box.dsn, existing="drop", hooks=self.hooks,
                      interrupt=self.interrupt, verdicts=self.verdicts).run()
        with box.connect() as bconn:
            sums = table_checksums(bconn, self.dbs)
            # Read here, where the schema has its production name: a trigger written as
            # `ON club.t` would, loaded into the shadow schema, land on the live table.
            with bconn.cursor() as bcur:
                self._objects = {db: objects.read(bcur, db) for db in self.dbs}
        self._check_expected(sums, "the rebuilt copy")
        return sums

    def _ship(self, conn, built: dict[str, tuple[int, int | None]]) -> dict[str, str]:
        """Fill the shadow schemas from the rebuild's sandbox: its tables only (their triggers, views
        and routines go in after the swap). Transportable tablespaces when the target's datadir is on
        this host, else a copy by rows, several tables at once (restore.plan.physical_move): no dump
        is written and parsed again. Returns how, and why."""
        with conn.cursor() as cur:
            for db in self.dbs:
                self._put_back_after_kill(cur, db)
                cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(self.shadow(db))}")
        datadir = datadir_on_this_host(conn) if self.shadow_copy == "auto" else None
        moved = move_tables(self._box, conn, self.target, self.dbs, datadir=datadir,
                            names={db: self.shadow(db) for db in self.dbs}, objects=False,
                            progress=self.hooks.message,
                            on_bytes=progress_reporter(self.hooks, "shadow", "shadow copy"))
        self.hooks.message(f"shadow copy filled by {moved['path']}: {moved['why']}")
        if self._shadow_sums(conn) != built:
            raise VerifyError("the shadow copy on the target differs from the verified rebuild",
                              hint="run the job again; if it repeats, check the target's storage")
        with conn.cursor() as cur:
            for db in self.dbs:
                if objects.STASH in _tables(cur, self.shadow(db)):
                    raise TargetError(f"{db} has a table named {objects.STASH}, the name a prod restore keeps "
                                      "triggers, views and routines under", where=db,
                                      hint="restore it with /restore stage and copy it over by hand")
                objects.save(cur, self.shadow(db), "restored", self._objects[db])
        return {"path": moved["path"], "why": moved["why"]}

    def _put_back_after_kill(self, cur, db: str) -> None:
        """An earlier run killed between dropping the live tables' triggers and its RENAME: their
        definitions are only in the shadow schema, which is about to be rebuilt. Create them again."""
        if objects.STASH not in _tables(cur, self.shadow(db)):
            return
        have = {o.name for o in objects.read(cur, db) if o.kind == "TRIGGER"}
        tables = set(_tables(cur, db))
        objects.create_all(cur, [o for o in objects.load(cur, self.shadow(db), "live")
                                 if o.kind == "TRIGGER" and o.name not in have and o.table in tables], db)

    def _swap(self, conn) -> ProdOutcome:
        pairs: list[str] = []
        with conn.cursor() as cur:
            for db in self.dbs:
                self._put_back_after_kill(cur, db)
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(db)} CHARACTER SET utf8mb4")
                live = _tables(cur, db)
                if live:
                    aside = self.aside(db)
                    # An earlier run of this job whose RENAME failed left the aside schema behind,
                    # empty: reuse it. Anything in it is not ours to mix the live tables with.
                    there = _objects(cur, aside)
                    if there:
                        raise TargetError(
                            f"{aside} already holds {', '.join(there[:10])}{' ...' if len(there) > 10 else ''}, "
                            f"so {db}'s live tables cannot be moved there; nothing was swapped or dropped",
                            where=aside,
                            hint=f"look at what {aside} holds and move it elsewhere (or rename the schema), "
                                 "then run the job again. (If an earlier run of this job already swapped and the "
                                 "application has written to the restored tables since, the restore is done.)")
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(aside)} CHARACTER SET utf8mb4")
                    pairs += [f"{quote_ident(db)}.{quote_ident(t)} TO {quote_ident(aside)}.{quote_ident(t)}" for t in live]
                pairs += [f"{quote_ident(self.shadow(db))}.{quote_ident(t)} TO {quote_ident(db)}.{quote_ident(t)}" for t in _tables(cur, self.shadow(db))
                          if t != objects.STASH]
            triggers = {db: self._keep_live_objects(cur, db) for db in self.dbs}
            dropped: dict[str, list[objects.DbObject]] = {}
            try:
                # RENAME TABLE refuses to move a table with triggers to another schema (error 1435)
                for db, objs in triggers.items():
                    for obj in objs:
                        cur.execute(f"DROP TRIGGER IF EXISTS {quote_ident(db)}.{quote_ident(obj.name)}")
                        dropped.setdefault(db, []).append(obj)
                # One statement: MariaDB and MySQL apply all renames or none.
                cur.execute("RENAME TABLE " + ", ".join(pairs))
            except pymysql.err.MySQLError as exc:
                code, text = (exc.args + ("", ""))[:2]
                raise TargetError(
                    f"the swap (one RENAME TABLE of {len(pairs)} tables) failed on {self.target.redacted()}: "
                    f"error {code}: {text}; RENAME TABLE is all or nothing, so the live tables are untouched"
                    f"{self._put_back(cur, dropped)}",
                    hint="if another session held a lock on a restored table (error 1205), stop it; then run the "
                         "job again: it rebuilds the shadow copy and swaps again") from None
        return ProdOutcome(swapped=True)

    def _keep_live_objects(self, cur, db: str) -> list[objects.DbObject]:
        """Keep, in the shadow schema, the live schema's triggers (they go aside with their tables) and its
        views and routines the restored ones replace. Returns the triggers, which the swap drops."""
        restored = {o.label for o in objects.load(cur, self.shadow(db), "restored")}
        keep = [o for o in objects.read(cur, db) if o.kind == "TRIGGER" or o.label in restored]
        objects.save(cur, self.shadow(db), "live", keep)
        return [o for o in keep if o.kind == "TRIGGER"]

    def _put_back(self, cur, triggers: dict[str, list[objects.DbObject]]) -> str:
        """After a failed RENAME: the live tables get their triggers again. Says what could not be."""
        try:
            for db, objs in triggers.items():
                objects.create_all(cur, objs, db)
        except TargetError as exc:
            return f"; but their triggers had been dropped for the swap, and {exc}"
        return " (their triggers, dropped for the swap, are back)" if any(triggers.values()) else ""

    def _finish(self, conn, outcome: ProdOutcome) -> ProdOutcome:
        """After the RENAME: create the restored objects in production and the live schema's in the aside
        schema, from the definitions kept in the shadow schema, so that a rerun can do it again."""
        with conn.cursor() as cur:
            for db in self.dbs:
                shadow, aside = self.shadow(db), self.aside(db)
                live = objects.load(cur, shadow, "live")
                if live:   # the live schema's first: its views are dropped from production next
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(aside)} CHARACTER SET utf8mb4")
                    lost: list[tuple[objects.DbObject, Exception]] = []
                    objects.create_all(cur, live, aside, failed=lost)
                    for obj, exc in lost:   # an aside copy must not stop production coming back: say it, loudly
                        self.hooks.message(f"could not keep the live schema's {obj.label} in {aside} ({exc}); "
                                           f"its definition was: {obj.sql}")
                    not_kept = {obj.label for obj, _exc in lost}
                    outcome.objects_aside[aside] = [o.label + (" (NOT kept: see the job log)" if o.label in not_kept
                                                               else "") for o in live]
                restored = objects.load(cur, shadow, "restored")
                objects.create_all(cur, restored, db)
                outcome.objects[db] = sorted(o.label for o in restored)
                names = set(outcome.objects[db])
                left = [o.label for o in objects.read(cur, db) if o.kind != "TRIGGER" and o.label not in names]
                if left:
                    outcome.left_in_live[db] = left
        outcome.kept_aside = self._aside_rows(conn)
        return outcome

    def _verify(self, conn, outcome: ProdOutcome) -> ProdOutcome:
        outcome.checksums = table_checksums(conn, self.dbs)
        self._check_expected(outcome.checksums, "production after the swap")
        with conn.cursor() as cur:
            for db in self.dbs:
                if objects.STASH not in _tables(cur, self.shadow(db)):
                    continue   # an earlier run verified them and dropped the definitions
                wrong = objects.differences(cur, db, objects.load(cur, self.shadow(db), "restored"))
                if wrong:
                    raise VerifyError(f"{db}'s triggers, views and routines differ from the verified rebuild: "
                                      f"{'; '.join(wrong[:6])}", where=db,
                                      hint="run the job again: it creates them again from the rebuild's "
                                           f"definitions, kept in {self.shadow(db)} until they match")
            for db in self.dbs:   # all verified: the definitions are all the shadow schemas hold
                cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(self.shadow(db))}")
        return outcome

    def _check_expected(self, sums: dict[str, tuple[int, int | None]], what: str) -> None:
        if not self.expected:
            return
        got = {name: c for name, (_r, c) in sums.items()}
        if got != self.expected:
            diff = sorted(set(got.items()) ^ set(self.expected.items()))
            raise VerifyError(f"{what} does not match the stage run's checksums: {diff[:6]}",
                              hint="do not use this result; run /restore stage and /restore prod again")

    def _aside_rows(self, conn) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with conn.cursor() as cur:
            for db in self.dbs:
                aside = self.aside(db)
                for t in _tables(cur, aside):
                    cur.execute(f"SELECT COUNT(*) FROM {quote_ident(aside)}.{quote_ident(t)}")
                    out.setdefault(aside, {})[t] = cur.fetchone()[0]
        return out


def _objects(cur, db: str) -> list[str]:
    """Tables, views and routines in `db`."""
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                "UNION ALL SELECT CONCAT(ROUTINE_NAME, '()') FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s "
                "ORDER BY 1", (db, db))
    return [r[0] for r in cur.fetchall()]


def _tables(cur, db: str) -> list[str]:
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_TYPE='BASE TABLE'",
                (db,))
    return [r[0] for r in cur.fetchall()]
