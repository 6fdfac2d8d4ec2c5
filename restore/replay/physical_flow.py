"""A physical backup restored into a server named by DSN: built and proved in a local sandbox
first, then moved (issue 13). The runner (restore.replay.runner) hands over after its prepare.

    prepare  -> check the target, record the plan on it               (target state: prepared)
    sandbox  -> a local server on a prepared copy of the backup (no load: its files are the base)
    replay   -> the binlog range replayed in the sandbox, verified there
    move     -> the sandbox's tables into the target: tablespace files when its datadir is on this
                host, else rows, several tables at once (restore.plan.physical_move); each table
                recorded on the target once moved, with the sandbox's CHECKSUM TABLE
                                                                       (target state: replayed)
    verify   -> the plan's row counts on the target, and each moved table's CHECKSUM TABLE equal
                to the sandbox's                                       (target state: verified)

Nothing reaches the target before the sandbox verified. The sandbox does not outlive its process
(kill -9 leaves its directory to the leftovers sweep): a run killed before the move ended builds
it again, from the same backup and plan, so to the same tables; a table the killed run recorded
as moved is kept only when the new sandbox's checksum is the recorded one. A table it had begun
but not recorded (rows half copied, a tablespace between DISCARD and IMPORT) is dropped and moved
again: it was created by this plan's run after prepare found the database absent or set it aside.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pymysql

from restore.errors import VerifyError
from restore.meter import progress_reporter
from restore.mysql.quote import quote_qualified
from restore.plan.physical_base import BaseSandbox
from restore.plan.physical_move import datadir_on_this_host, move_tables
from restore.plan.snapshot import Snapshot
from restore.replay.verify import Verification, verify
from restore.target import checkpoint
from restore.target.binlog import init_commands

_MOVED = quote_qualified(checkpoint.SCHEMA, "moved")
_DDL = f"""CREATE TABLE IF NOT EXISTS {_MOVED} (
    plan_id VARCHAR(64) NOT NULL,
    tbl VARCHAR(200) NOT NULL,
    how VARCHAR(255) NOT NULL,
    row_count BIGINT UNSIGNED NOT NULL,
    checksum BIGINT UNSIGNED NULL,
    PRIMARY KEY (plan_id, tbl)
) ENGINE=InnoDB"""
_DISCARDED = 1814   # ER_TABLESPACE_DISCARDED


def run_physical_into_dsn(runner, conn, state: checkpoint.State | None) -> None:
    """The phases after prepare for `runner` (a RestoreRunner whose snapshot is a physical backup
    and whose target does not run on it); `state`: the target's record of an earlier run of the
    plan, None when prepare just created it. Fills runner.result; raises as the runner does."""
    _Flow(runner, conn).run(state)


class _Flow:
    def __init__(self, runner, conn) -> None:
        self.r, self.conn = runner, conn
        self.plan_id = runner.plan.plan_id
        self.dbs = sorted(runner.plan.databases)
        self.snap: Snapshot = runner.snapshots[0]
        self.sums: dict[str, tuple[int, int | None]] = {}   # the sandbox's tables once verified

    def run(self, state: checkpoint.State | None) -> None:
        r = self.r
        if state is None:   # a new run: what a forgotten run of the plan recorded means nothing now
            _forget(self.conn, self.plan_id)
        if state is not None and state.reached("replayed"):
            # Moved by an earlier run: where its replay ended is in the checkpoint.
            ends = [r.plan.end_of(k) for k in range(len(r.plan.later) + 1)]
            r.result.outcome = ends.index((state.file, state.pos)) if (state.file, state.pos) in ends else 0
        else:
            box = BaseSandbox(self.snap)
            try:
                r._phase("sandbox", lambda: self._start(box))
                r._phase("replay", lambda: self._replay(box))
                r._phase("move", lambda: self._move(box))
            except BaseException as e:
                box.__exit__(type(e), e, None)
                raise
            box.stop()
        r._phase("verify", self._verify)

    def _start(self, box: BaseSandbox) -> dict:
        """The backup copied (a reflink where the filesystem allows) and prepared, a server started on it."""
        box.start()
        self.r.hooks.message(f"sandbox server on port {box.port} runs on a prepared copy of {self.snap.path}; "
                             f"the replay is verified there before anything is moved into {self.r.result.target}")
        return {"port": box.port}

    def _replay(self, box: BaseSandbox) -> dict:
        """The plan's binlog range into the sandbox, by the runner's own phases there (its load is
        nothing: the server runs on the backup), verified against the plan's prediction."""
        r = self.r
        inner = type(r)(r.plan, r.snapshots, r.source, box.dsn, existing="drop", hooks=_Within(r.hooks),
                        interrupt=r.interrupt, batch_transactions=r.batch_transactions,
                        verdicts=r.given_verdicts, physical_copy=r.physical_copy)
        try:
            result = inner.run()
        except VerifyError:
            r.hooks.message(f"the replay in the sandbox on {self.snap.path} did not verify: nothing was moved "
                            f"into {r.result.target}")
            raise
        r.result.outcome, r.result.verdicts = result.outcome, result.verdicts
        # What the move must carry: read once, by the sandbox's own verification.
        self.sums = _sums(result.verification)
        replay = next((p for p in result.phases if p["phase"] == "replay"), {})
        return {**{k: v for k, v in replay.items() if k not in ("phase", "seconds")},
                "sandbox_verified": len(result.verification.tables) if result.verification else 0}

    def _move(self, box: BaseSandbox) -> dict:
        r, conn, sums = self.r, self.conn, self.sums
        recorded = _recorded(conn, self.plan_id)
        skip = {t for t, v in recorded.items() if sums.get(t) == v} & _readable(conn, self.dbs)
        datadir = datadir_on_this_host(conn) if r.physical_copy == "auto" else None
        if dropped := _drop_unfinished(conn, self.dbs, skip, datadir):
            r.hooks.message(f"dropped {', '.join(dropped)}: begun by an earlier run and not finished; moved again")
        if skip:
            r.hooks.message(f"{len(skip)} table(s) moved by an earlier run, checksums equal to this sandbox's: kept")
        lock = threading.Lock()

        def record(name: str, how: str) -> None:   # called from the copy's threads too
            with lock, conn.cursor() as cur:
                cur.execute(f"REPLACE INTO {_MOVED} VALUES (%s, %s, %s, %s, %s)",
                            (self.plan_id, name, how[:255], *sums[name]))

        _ensure(conn)
        conn.begin()   # the records of what stays, in one step: a kill here keeps the old ones or the new
        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM {_MOVED} WHERE plan_id=%s", (self.plan_id,))
            cur.executemany(f"INSERT INTO {_MOVED} VALUES (%s, %s, 'moved by an earlier run', %s, %s)",
                            [(self.plan_id, t, *sums[t]) for t in sorted(skip)])
        conn.commit()
        moved = move_tables(box, conn, r.target, self.dbs, datadir=datadir, init=init_commands(r.log_replay),
                            progress=r.hooks.message, skip=skip, on_moved=record,
                            on_bytes=progress_reporter(r.hooks, "move", "tables moved"))
        r.hooks.message(f"physical backup moved by {moved['path']}: {moved['why']}")
        file, pos = r.plan.end_of(r.result.outcome)
        with conn.cursor() as cur:
            cur.execute(checkpoint.position_sql(self.plan_id, file, pos, None, r.plan.transactions))
        checkpoint.set_phase(conn, self.plan_id, "replayed")
        return {"physical": moved, "kept_from_earlier_run": len(skip), "dropped": dropped}

    def _verify(self) -> dict:
        """The plan's verification on the target, and each moved table's (rows, CHECKSUM TABLE)
        against the sandbox's recorded when it was moved."""
        r, conn = self.r, self.conn
        result = verify(conn, r.plan.outcome(r.result.outcome))
        r.result.verification = result
        expected = _recorded(conn, self.plan_id)
        actual = _sums(result)
        differ = sorted(t for t, v in expected.items() if actual.get(t) != v)
        if differ:
            raise VerifyError(
                f"{r.result.target}: {', '.join(differ)} differ from the verified sandbox's copy (rows, CHECKSUM "
                f"TABLE: {', '.join(f'{t} {actual.get(t)} against {expected[t]}' for t in differ[:3])})",
                where=differ[0], hint="a writer changed the target since the move, or the copy went wrong: run the "
                                      "command again with --restart (what is there is moved aside first)")
        if result.ok:
            checkpoint.set_phase(conn, self.plan_id, "verified")
            _forget(conn, self.plan_id)
        return {"ok": result.ok, "tables": len(result.tables), "equal_to_sandbox": len(expected)}


class _Within:
    """The hooks of the run in the sandbox: its progress and messages are the run's, its own phases
    (prepare, load, replay, verify there) are inside this flow's "replay" and not shown again."""

    def __init__(self, hooks) -> None:
        self.hooks = hooks

    def phase_started(self, phase: str, total: int | None) -> None:
        pass

    def phase_finished(self, phase: str, result: dict) -> None:
        pass

    def progress(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        self.hooks.progress(phase, done, total, detail)

    def message(self, text: str) -> None:
        self.hooks.message(text)


def _sums(verification: Verification | None) -> dict[str, tuple[int, int | None]]:
    """{db.table: (rows, CHECKSUM TABLE)} as a verification read them."""
    return {name: (t.rows, t.checksum) for name, t in (verification.tables if verification else {}).items()}


def _ensure(conn) -> None:
    checkpoint.ensure_schema(conn)
    with conn.cursor() as cur:
        cur.execute(_DDL)


def _present(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME='moved'",
                    (checkpoint.SCHEMA,))
        return bool(cur.fetchone()[0])


def _recorded(conn, plan_id: str) -> dict[str, tuple[int, int | None]]:
    """{db.table: (rows, checksum)} of the tables a run of `plan_id` moved into this target."""
    if not _present(conn):
        return {}
    with conn.cursor() as cur:
        cur.execute(f"SELECT tbl, row_count, checksum FROM {_MOVED} WHERE plan_id=%s", (plan_id,))
        return {t: (rows, checksum) for t, rows, checksum in cur.fetchall()}


def _forget(conn, plan_id: str) -> None:
    """The plan's records gone; the table too when it holds no other plan's (a target keeps no trace)."""
    if not _present(conn):
        return
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {_MOVED} WHERE plan_id=%s", (plan_id,))
        cur.execute(f"SELECT COUNT(*) FROM {_MOVED}")
        if not cur.fetchone()[0]:
            cur.execute(f"DROP TABLE {_MOVED}")


def _tables(cur, db: str) -> list[str]:
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_TYPE='BASE TABLE'",
                (db,))
    return [r[0] for r in cur.fetchall()]


def _readable(conn, dbs: list[str]) -> set[str]:
    """The base tables of `dbs` on the target a query can read (not left without their tablespace)."""
    out = set()
    with conn.cursor() as cur:
        for db in dbs:
            for name in _tables(cur, db):
                try:
                    cur.execute(f"SELECT 1 FROM {quote_qualified(db, name)} LIMIT 1")
                    cur.fetchall()
                except pymysql.err.MySQLError as e:
                    if e.args[0] != _DISCARDED:
                        raise
                    continue
                out.add(f"{db}.{name}")
    return out


def _drop_unfinished(conn, dbs: list[str], keep: set[str], datadir: Path | None) -> list[str]:
    """Drop the tables of `dbs` on the target not in `keep`: what a killed move had begun. A
    tablespace file it copied in before its IMPORT goes too (a new CREATE TABLE would refuse it)."""
    dropped = []
    with conn.cursor() as cur:
        cur.execute("SET SESSION foreign_key_checks=0")
        try:
            for db in dbs:
                for name in _tables(cur, db):
                    if f"{db}.{name}" in keep:
                        continue
                    cur.execute(f"DROP TABLE {quote_qualified(db, name)}")
                    dropped.append(f"{db}.{name}")
                    if datadir is not None:
                        for ext in (".ibd", ".cfg"):
                            (datadir / db / f"{name}{ext}").unlink(missing_ok=True)
        finally:
            cur.execute("SET SESSION foreign_key_checks=1")
    return dropped

