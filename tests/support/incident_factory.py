"""Small incidents, declared rather than written out in each test module.

An incident is always the same story, only the statements differ: a source server with a binlog;
the schema and seed rows; a dump; traffic after the dump; the state just before the disaster
(CHECKSUM TABLE of every table of the dumped databases, and their definitions); the disaster;
what the application writes after it; and the binlog files copied as an operator would copy
them. A module declares its statements in an `IncidentSpec` and builds it on a source:

    SHOP = IncidentSpec(databases=("shop",),
                        schema=["CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY)"],
                        traffic=["INSERT INTO shop.t VALUES (1)"],
                        disaster=["DROP DATABASE shop"])
    inc = SHOP.build(source_factory("ROW"), tmp_path)        # or SHOP.build_on_new_source(tmp_path)
    cli(*restore_args(inc, target))                          # inc.dumps, inc.binlog_dir

The story's own incident (two dumps, every column type, the `incidents` fixture) is richer and
lives in tests/support/incident.py.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, copy_binlogs, dump, master_status, schemas


@dataclass(frozen=True)
class In:
    """A statement run in a session whose default database is `db` (None: a session without one),
    for statements whose meaning or binlog form depends on USE. Each database gets one session,
    kept for the whole build, as an application's connection would be."""
    db: str | None
    sql: str


@dataclass(frozen=True)
class Mark:
    """Not a statement: the source's (file, pos) at this point, kept in SmallIncident.marks[name]
    (for --start, or a dump's coordinates moved back)."""
    name: str


# A step: SQL run in the session without a default database, a callable given that session's
# cursor (for executemany, parameters, loops), an `In`, or a `Mark`.
Step = Union[str, Callable[..., object], In, Mark]


@dataclass
class SmallIncident:
    """What a restore test needs of a built incident."""
    snapshot: Path
    binlog_dir: Path                   # the copied files (or the server's own: build(copy=False))
    before: dict                       # checksums of the dumped databases just before the disaster
    before_schema: dict                # their SHOW CREATE TABLE at that moment
    dumped_at: tuple[str, int, str]    # (file, pos, gtid) of the source when the dump was taken
    disaster_file: str                 # where the disaster's transaction starts
    disaster_pos: int
    marks: dict[str, tuple[str, int]] = field(default_factory=dict)   # by Mark steps

    @property
    def dumps(self) -> list[Path]:
        """As Incident.dumps: what tests.support.db.restore_args and plan_args pass as --snapshot."""
        return [self.snapshot]


@dataclass(frozen=True)
class IncidentSpec:
    """The statements of one small incident, in the story's order (see the module's docstring)."""
    databases: tuple[str, ...]         # dumped together into one snapshot, and checksummed
    schema: Sequence[Step]             # before the dump: schema and seed rows
    traffic: Sequence[Step] = ()       # after the dump, before the disaster
    disaster: Sequence[Step] = ()
    after: Sequence[Step] = ()         # the application carries on after the disaster
    dump_name: str | None = None       # default: <first database>.sql
    coordinates: bool = True           # False: a dump without --master-data (nor --gtid)

    def build(self, source: Sandbox, workdir: Path, *, copy: bool = True) -> SmallIncident:
        """Run the story on `source` (whose binlog it is) and dump into `workdir`; with copy, the
        binlog files are copied to `workdir`/binlogs after the last step."""
        workdir = Path(workdir)
        sessions: dict[str | None, object] = {}
        marks: dict[str, tuple[str, int]] = {}
        try:
            self._run(source, sessions, marks, self.schema)
            root = self._session(source, sessions, None)
            dumped_at = master_status(root)
            snapshot = dump(source, workdir / (self.dump_name or f"{self.databases[0]}.sql"), list(self.databases),
                            coordinates=self.coordinates)
            self._run(source, sessions, marks, self.traffic)
            before = checksums(root, self.databases)
            before_schema = schemas(root, self.databases)
            file, pos, _ = master_status(root)
            self._run(source, sessions, marks, self.disaster)
            self._run(source, sessions, marks, self.after)
        finally:
            for conn in sessions.values():
                conn.close()
        binlog_dir = copy_binlogs(source, workdir / "binlogs") if copy else Path(source.binlog_dir)
        return SmallIncident(snapshot, binlog_dir, before, before_schema, dumped_at, file, pos, marks)

    def build_on_new_source(self, workdir: Path, binlog_format: str = "ROW",
                            extra_args: Sequence[str] = ()) -> SmallIncident:
        """Start a source of its own for this incident, build it, copy its binlogs, stop it."""
        with Sandbox(binlog=True, binlog_format=binlog_format, extra_args=list(extra_args)) as source:
            return self.build(source, workdir)

    @staticmethod
    def _session(source: Sandbox, sessions: dict, db: str | None):
        if db not in sessions:
            sessions[db] = source.connect(database=db) if db else source.connect()
        return sessions[db]

    def _run(self, source: Sandbox, sessions: dict, marks: dict, steps: Sequence[Step]) -> None:
        for step in steps:
            if isinstance(step, Mark):
                marks[step.name] = master_status(self._session(source, sessions, None))[:2]
                continue
            db, what = (step.db, step.sql) if isinstance(step, In) else (None, step)
            with self._session(source, sessions, db).cursor() as cur:
                if callable(what):
                    what(cur)
                else:
                    cur.execute(what)


def each(sql: str, params: Iterable[Sequence]) -> Step:
    """A step: `sql` executed once per parameter tuple, each its own statement and transaction (what
    an application's single-row writes log; executemany would send one multi-row INSERT)."""
    params = list(params)

    def run(cur) -> None:
        for p in params:
            cur.execute(sql, p)
    return run


def many(sql: str, params: Iterable[Sequence]) -> Step:
    """A step: cursor.executemany(sql, params), one multi-row statement for an INSERT."""
    params = list(params)
    return lambda cur: cur.executemany(sql, params)


def club_posts(posts_after_dump: int) -> IncidentSpec:
    """The chat scenarios' incident: club.posts with one row in the dump, then `posts_after_dump`
    single-row inserts, then DROP DATABASE club."""
    return IncidentSpec(
        databases=("club",),
        schema=["CREATE DATABASE club",
                "CREATE TABLE club.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(60))",
                "INSERT INTO club.posts (title) VALUES ('환영합니다 👋')"],
        traffic=[each("INSERT INTO club.posts (title) VALUES (%s)", [(f"글 {i}",) for i in range(posts_after_dump)])],
        disaster=["DROP DATABASE club"])
