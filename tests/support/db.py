"""What the tests share besides fixtures: checksums and schemas of a server's tables, dumps and
binlog copies, the CLI's argument lists, and the check that a target holds the state before the
disaster."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from restore.mysql.quote import quote_ident
from restore.mysql.sandbox import Sandbox
from restore.replay.verify import table_checksums

SYSTEM_DBS = {"mysql", "information_schema", "performance_schema", "sys"}
RESTORED = ("homepage", "wiki")

# (binlog_format, binlog_row_metadata) combinations the incident is restored from.
FORMATS = [
    ("ROW", "NO_LOG"),
    ("ROW", "MINIMAL"),
    ("ROW", "FULL"),
    ("MIXED", None),      # MariaDB's default: MIXED with NO_LOG
    ("STATEMENT", None),
]


def format_id(combo) -> str:
    fmt, meta = combo
    return fmt if meta is None else f"{fmt}-{meta}"


# -- helpers ---------------------------------------------------------------------------------------

q = quote_ident   # the tests write identifiers as the engine does


def base_tables(conn, db: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                    "AND TABLE_TYPE='BASE TABLE' ORDER BY TABLE_NAME", (db,))
        return [r[0] for r in cur.fetchall()]


def checksums(conn, dbs) -> dict[str, tuple[int, int]]:
    """{"db.table": (row count, CHECKSUM TABLE ... EXTENDED)} for every base table of `dbs`; a table
    with generated columns by the engine's row_checksum (CHECKSUM TABLE reads those columns' stale
    buffers, MDEV-22943)."""
    return table_checksums(conn, list(dbs))


_AUTO_INC = re.compile(r" AUTO_INCREMENT=\d+")


def schemas(conn, dbs) -> dict[str, str]:
    """{"db.table": SHOW CREATE TABLE without the AUTO_INCREMENT counter} for every base table."""
    out: dict[str, str] = {}
    with conn.cursor() as cur:
        for db in dbs:
            for table in base_tables(conn, db):
                cur.execute(f"SHOW CREATE TABLE {q(db)}.{q(table)}")
                out[f"{db}.{table}"] = _AUTO_INC.sub("", cur.fetchone()[1])
    return out


def databases(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        return {r[0] for r in cur.fetchall()}


def master_status(conn) -> tuple[str, int, str]:
    """(file, position, @@gtid_binlog_pos) of a source right now."""
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
        cur.execute("SELECT @@gtid_binlog_pos")
        gtid = cur.fetchone()[0]
    return row[0], int(row[1]), gtid


def dump(server: Sandbox, path, dbs, extra=(), *, coordinates: bool = True) -> Path:
    """mariadb-dump the databases `dbs` of `server` into `path` (with --master-data=2 --gtid)."""
    path = Path(path)
    cmd = ["mariadb-dump", *server.client_args()]
    if coordinates:
        cmd += ["--master-data=2", "--gtid"]
    cmd += ["--single-transaction", "--routines", "--triggers", *extra, "--databases", *dbs]
    with open(path, "wb") as fh:
        out = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE)
    assert out.returncode == 0, f"mariadb-dump failed: {out.stderr.decode(errors='replace')}"
    return path


_CHANGE = re.compile(r"CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)")
_SLAVE_POS = re.compile(r"gtid_slave_pos='([^']*)'")


def dump_coordinates(path) -> tuple[str, int, str | None] | None:
    """The (file, pos, gtid) that mariadb-dump wrote into the dump's header comments."""
    data = Path(path).read_bytes()
    m = _CHANGE.search(data[:20000].decode("utf-8", "replace"))
    if not m:
        return None
    # with --gtid the GTID position is written as a comment near the end of the dump
    g = _SLAVE_POS.search(data[-20000:].decode("utf-8", "replace"))
    return m[1], int(m[2]), g[1] if g else None


def copy_binlogs(server: Sandbox, dest) -> Path:
    """Copy the server's binlog files (not the datadir) as an operator pulling them would."""
    import shutil
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(server.binlog_dir).iterdir()):
        if re.fullmatch(r"binlog\.\d{6,}", f.name) or f.name == "binlog.index":
            shutil.copy2(f, dest / f.name)
    return dest


def target_url(server: Sandbox) -> str:
    return f"{server.url}?unix_socket={server.socket}"


class CliResult:
    def __init__(self, code: int, doc: dict, raw: str, err: str) -> None:
        self.code, self.doc, self.raw, self.err = code, doc, raw, err

    def __repr__(self) -> str:
        err = json.dumps(self.doc.get("error"), ensure_ascii=False, indent=1)
        ver = ((self.doc.get("restore") or {}).get("verification") or {}).get("problems")
        stop = json.dumps((self.doc.get("plan") or {}).get("stop"), ensure_ascii=False)
        return (f"CliResult(code={self.code}, error={err}, verification problems={ver}, stop={stop}, "
                f"stderr={self.err[-2000:]!r})")

    @property
    def plan(self) -> dict:
        return self.doc.get("plan") or {}

    @property
    def error(self) -> dict:
        return self.doc.get("error") or {}


def restore_args(inc, target: Sandbox | str, *extra: str, snapshots=None) -> list[str]:
    args = ["restore"]
    for snap in (snapshots if snapshots is not None else inc.dumps):
        args += ["--snapshot", str(snap)]
    args += ["--binlogs", str(inc.binlog_dir),
             "--target", target if isinstance(target, str) else target_url(target), "--yes", *extra]
    return args


def plan_args(inc, *extra: str, snapshots=None) -> list[str]:
    args = ["plan"]
    for snap in (snapshots if snapshots is not None else inc.dumps):
        args += ["--snapshot", str(snap)]
    return args + ["--binlogs", str(inc.binlog_dir), *extra]


def assert_restored(target: Sandbox, before: dict, before_schema: dict | None = None, *,
                    dbs=RESTORED, absent=("other",)) -> None:
    """The target holds exactly the `before` state of `dbs`, and none of `absent`."""
    with target.connect() as conn:
        have = databases(conn)
        for db in absent:
            assert db not in have, f"database {db} must not be restored, the target has it"
        got = checksums(conn, dbs)
        assert sorted(got) == sorted(before), "restored table set differs"
        diff = {t: (before[t], got[t]) for t in before if before[t] != got[t]}
        assert not diff, f"tables differ from the state before the disaster (expected, got): {diff}"
        if before_schema is not None:
            sch = schemas(conn, dbs)
            bad = {t: (before_schema[t], sch.get(t)) for t in before_schema if before_schema[t] != sch.get(t)}
            assert not bad, f"table definitions differ (expected, got): {bad}"


def clean(server: Sandbox) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        for db in databases(conn) - SYSTEM_DBS:
            cur.execute(f"DROP DATABASE {q(db)}")


