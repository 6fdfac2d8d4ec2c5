"""A production restore: never replay into the live schema.

    1. fence     no other session may write to the restored databases (or lock them out)
    2. rebuild   run the plan into a throwaway sandbox, verified like a stage run
    3. shadow    copy the result into `<db>__shadow_<job>` on the target, compare checksums
    4. swap      one atomic RENAME TABLE: live tables -> `<db>__before_<job>`, shadow -> live
    5. verify    the live tables' checksums equal the stage run's

What the live schema held (the application's writes after the disaster) is moved aside, never
dropped, and reported. Every step is safe to re-run: a rerun rebuilds the shadow from scratch,
and a swap that already happened is recognised by its databases.
"""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

import pymysql

from . import fence as fencing
from .dsn import Dsn
from .errors import TargetError, VerifyError
from .hooks import Hooks, NullHooks
from .loader import client_binary, client_options
from .plan import Plan
from .runner import RestoreRunner
from .sandbox import Sandbox
from .verify import table_checksums


@dataclass
class ProdOutcome:
    checksums: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    kept_aside: dict[str, dict[str, int]] = field(default_factory=dict)   # aside db -> {table: rows}
    swapped: bool = False

    def summary(self) -> str:
        aside = "; ".join(f"{db} keeps {sum(t.values())} rows the application wrote after the disaster "
                          f"({', '.join(f'{n}: {r}' for n, r in sorted(t.items()))})"
                          for db, t in self.kept_aside.items()) or "the live schema held nothing"
        return f"Swapped {len(self.checksums)} verified tables into production. Kept aside: {aside}."

    def to_dict(self) -> dict:
        return {"tables": {n: {"rows": r, "checksum": c} for n, (r, c) in sorted(self.checksums.items())},
                "kept_aside": self.kept_aside, "swapped": self.swapped}


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class ProdRestore:
    def __init__(self, plan: Plan, snapshots, source, target: Dsn, *, job_tag: str,
                 expected: dict[str, int] | None = None, fence: str = "refuse", fence_users: list[str] | None = None,
                 hooks: Hooks | None = None, interrupt: Callable[[], None] | None = None) -> None:
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
            if self._already_swapped(conn):
                self.hooks.message("the swap already happened in an earlier run; verifying only")
                return self._verify(conn, ProdOutcome(swapped=True, kept_aside=self._aside_rows(conn)))
            self._step("fence", lambda: self._fence_check(conn, "before the restore"))
            built = self._step("rebuild", self._rebuild)
            self._step("shadow", lambda: self._ship(conn, built))
            if self.interrupt:
                self.interrupt()
            if self.fence == "lock":
                with fencing.AccountLock(conn, self.fence_users):
                    outcome = self._step("swap", lambda: self._swap(conn))
            else:
                self._fence_check(conn, "right before the swap")
                outcome = self._step("swap", lambda: self._swap(conn))
            return self._step("verify", lambda: self._verify(conn, outcome))
        finally:
            conn.close()

    def _step(self, name: str, fn):
        self.hooks.phase_started(name, None)
        out = fn()
        self.hooks.phase_finished(name, {})
        return out

    def _fence_check(self, conn, when: str) -> None:
        if self.fence == "refuse":
            fencing.refuse_writers(conn, self.dbs, f"prod restore refused {when}")
        else:  # a typo in fence_users is reported now, not after the rebuild
            fencing.accounts(conn, self.fence_users)

    def _rebuild(self) -> dict[str, tuple[int, int | None]]:
        with Sandbox() as box:
            RestoreRunner(self.plan, self.snapshots, self.source, box.dsn, existing="drop", hooks=self.hooks,
                          interrupt=self.interrupt).run()
            with box.connect() as bconn:
                sums = table_checksums(bconn, self.dbs)
            self._check_expected(sums, "the rebuilt copy")
            self._dumps = {db: self._dump(box, db) for db in self.dbs}
        return sums

    def _dump(self, box: Sandbox, db: str) -> bytes:
        out = subprocess.run(["mariadb-dump", *box.client_args(), "--single-transaction", "--routines",
                              "--triggers", "--skip-add-locks", db], capture_output=True)
        if out.returncode != 0:
            raise TargetError(f"copying {db} out of the rebuild sandbox failed: {out.stderr.decode()[-500:]}",
                              hint="run the job again")
        return out.stdout

    def _ship(self, conn, built: dict[str, tuple[int, int | None]]) -> None:
        with conn.cursor() as cur:
            for db in self.dbs:
                cur.execute(f"DROP DATABASE IF EXISTS {_q(self.shadow(db))}")
                cur.execute(f"CREATE DATABASE {_q(self.shadow(db))} CHARACTER SET utf8mb4")
        for db in self.dbs:
            with client_options(self.target) as (option, fds):
                out = subprocess.run([client_binary(), option, "--binary-mode", f"--database={self.shadow(db)}"],
                                     input=self._dumps[db], capture_output=True, pass_fds=fds)
            if out.returncode != 0:
                raise TargetError(f"loading the shadow copy {self.shadow(db)} failed: {out.stderr.decode()[-500:]}",
                                  hint="check space and rights on the target, then run the job again")
        shadow = table_checksums(conn, [self.shadow(db) for db in self.dbs])
        renamed = {name.replace("__shadow_" + self.tag + ".", ".", 1): v for name, v in shadow.items()}
        if renamed != built:
            raise VerifyError("the shadow copy on the target differs from the verified rebuild",
                              hint="run the job again; if it repeats, check the target's storage")

    def _swap(self, conn) -> ProdOutcome:
        outcome = ProdOutcome()
        pairs: list[str] = []
        with conn.cursor() as cur:
            for db in self.dbs:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {_q(db)} CHARACTER SET utf8mb4")
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
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS {_q(aside)} CHARACTER SET utf8mb4")
                    pairs += [f"{_q(db)}.{_q(t)} TO {_q(aside)}.{_q(t)}" for t in live]
                pairs += [f"{_q(self.shadow(db))}.{_q(t)} TO {_q(db)}.{_q(t)}" for t in _tables(cur, self.shadow(db))]
            # One statement: MariaDB and MySQL apply all renames or none.
            try:
                cur.execute("RENAME TABLE " + ", ".join(pairs))
            except pymysql.err.MySQLError as exc:
                code, text = (exc.args + ("", ""))[:2]
                raise TargetError(
                    f"the swap (one RENAME TABLE of {len(pairs)} tables) failed on {self.target.redacted()}: "
                    f"error {code}: {text}; RENAME TABLE is all or nothing, so the live tables are untouched",
                    hint="if another session held a lock on a restored table (error 1205), stop it; then run the "
                         "job again: it rebuilds the shadow copy and swaps again") from None
            for db in self.dbs:
                cur.execute(f"DROP DATABASE {_q(self.shadow(db))}")  # empty now: its tables went live
        outcome.swapped = True
        outcome.kept_aside = self._aside_rows(conn)
        return outcome

    def _verify(self, conn, outcome: ProdOutcome) -> ProdOutcome:
        outcome.checksums = table_checksums(conn, self.dbs)
        self._check_expected(outcome.checksums, "production after the swap")
        return outcome

    def _check_expected(self, sums: dict[str, tuple[int, int | None]], what: str) -> None:
        if not self.expected:
            return
        got = {name: c for name, (_r, c) in sums.items()}
        if got != self.expected:
            diff = sorted(set(got.items()) ^ set(self.expected.items()))
            raise VerifyError(f"{what} does not match the stage run's checksums: {diff[:6]}",
                              hint="do not use this result; run /restore stage and /restore prod again")

    def _already_swapped(self, conn) -> bool:
        """An earlier run's RENAME went through: an aside schema holds tables, no shadow schema does,
        and the live tables are the stage run's (when its checksums are known). A run can fail after
        the RENAME, while dropping the emptied shadow schemas: they go now. One whose RENAME failed
        leaves an empty aside schema and full shadows: that is not a swap."""
        with conn.cursor() as cur:
            if not any(_tables(cur, self.aside(db)) for db in self.dbs):
                return False
            if any(_tables(cur, self.shadow(db)) for db in self.dbs):
                return False
            if self.expected and {n: c for n, (_r, c) in table_checksums(conn, self.dbs).items()} != self.expected:
                return False  # something else is in the aside schema: the swap step says what
            for db in self.dbs:
                cur.execute(f"DROP DATABASE IF EXISTS {_q(self.shadow(db))}")  # no tables left in it
        return True

    def _aside_rows(self, conn) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with conn.cursor() as cur:
            for db in self.dbs:
                aside = self.aside(db)
                for t in _tables(cur, aside):
                    cur.execute(f"SELECT COUNT(*) FROM {_q(aside)}.{_q(t)}")
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
