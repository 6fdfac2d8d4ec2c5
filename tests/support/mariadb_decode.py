"""What `mariadb-binlog` decodes from a binlog file, as counts the planner's can be compared with:
transactions, row events per table and kind, and the tables statements create, drop or empty."""
from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = re.compile(r"^#\d{6}\s+\d{1,2}:\d\d:\d\d\s+server id \d+\s+end_log_pos \d+(?:\s+CRC32 0x[0-9a-f]+)?\s+(.*)$")
_ROW = re.compile(r"^### (INSERT INTO|UPDATE|DELETE FROM) `([^`]+)`\.`([^`]+)`")
_KIND = {"INSERT INTO": 0, "UPDATE": 1, "DELETE FROM": 2}
_USE = re.compile(r"^use `([^`]+)`", re.M)
_NAME = r"(?:`([^`]+)`|(\w+))(?:\.(?:`([^`]+)`|(\w+)))?"
_DCL = re.compile(r"^(GRANT|REVOKE|(CREATE|DROP|RENAME|ALTER) (USER|ROLE)|SET (PASSWORD|DEFAULT ROLE)"
                  r"|FLUSH PRIVILEGES)\b", re.I)
_NAMES_DB = re.compile(r"\w`?\.`?\w|^(CREATE|ALTER|DROP)\s+(DATABASE|SCHEMA)\b", re.I)
_DROP_TABLES = re.compile(r"^DROP\s+(?:TABLE|SEQUENCE)\s+(?:IF\s+EXISTS\s+)?(.*?)\s*(?:/\*.*)?$", re.I | re.S)
_CREATE_TABLE = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|SEQUENCE)\s+(IF\s+NOT\s+EXISTS\s+)?" + _NAME, re.I)
_TRUNCATE = re.compile(r"^TRUNCATE\s+(?:TABLE\s+)?" + _NAME, re.I)
_DROP_DB = re.compile(r"^DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?" + _NAME, re.I)


@dataclass
class Decoded:
    """What `mariadb-binlog -vv` shows of a file, counted as restore-bot's plan counts it."""
    transactions: int = 0
    # db.table -> [inserted, updated, deleted] by committed transactions since the table was
    # (re)created; tables dropped by the end are absent.
    rows: dict[str, list[int]] = field(default_factory=dict)
    databases: set[str] = field(default_factory=set)


def _table(m: re.Match, db: str | None, at: int = 0) -> str:
    first, second = m[at + 1] or m[at + 2], m[at + 3] or m[at + 4]
    return f"{first}.{second}" if second else f"{db}.{first}"


def _statement(body: list[str]) -> str:
    """The statement of a Query event: mariadb-binlog ends each SET line and it with /*!*/;."""
    chunks = "\n".join(body).split("/*!*/;")[:-1]
    return chunks[-1].strip() if chunks else ""


def mariadb_binlog(*args, **kw) -> subprocess.CompletedProcess:
    """`mariadb-binlog ARGS`; the files it extracts for LOAD DATA go to a dir removed afterwards."""
    with tempfile.TemporaryDirectory() as load:
        return subprocess.run(["mariadb-binlog", "--no-defaults", f"--local-load={load}", *map(str, args)],
                              capture_output=True, **kw)


def decode(path: Path) -> Decoded:
    out = mariadb_binlog("-vv", "--base64-output=decode-rows", path, text=True, errors="replace")
    events: list[tuple[str, list[str]]] = []
    for line in out.stdout.splitlines():
        m = _HEADER.match(line)
        if m:
            events.append((m[1], []))
        elif events:
            events[-1][1].append(line)
    dec = Decoded()
    db: str | None = None
    tx: dict | None = None      # {"applies": bool, "rows": {table: [i, u, d]}, "ddl": [statements]}

    def effect(stmt: str) -> None:
        if m := _DROP_TABLES.match(stmt):
            for name in re.finditer(_NAME, m[1]):
                dec.rows.pop(_table(name, db), None)
        elif (m := _CREATE_TABLE.match(stmt)) and not m[1]:
            dec.rows.pop(_table(m, db, 1), None)
        elif m := _TRUNCATE.match(stmt):
            dec.rows.pop(_table(m, db), None)
        elif m := _DROP_DB.match(stmt):
            for name in [n for n in dec.rows if n.split(".", 1)[0] == (m[1] or m[2])]:
                dec.rows.pop(name)

    def finish(committed: bool) -> None:
        nonlocal tx
        if tx is None:
            return
        if tx["applies"]:
            dec.transactions += 1
        if committed:
            for stmt in tx["ddl"]:
                effect(stmt)
            for name, counts in tx["rows"].items():
                have = dec.rows.setdefault(name, [0, 0, 0])
                for i in range(3):
                    have[i] += counts[i]
        tx = None

    for head, body in events:
        text = "\n".join(body)
        dec.databases.update(_USE.findall(text))
        if head.startswith("GTID ") and re.search(r"^(START TRANSACTION|BEGIN)\b", text, re.M):
            tx = {"applies": False, "rows": {}, "ddl": []}
        elif head.startswith("Xid = "):
            finish(True)
        elif head.startswith("Query"):
            if uses := _USE.findall(text):
                db = uses[-1]
            stmt = _statement(body)
            word = stmt.upper()
            if word in ("BEGIN", "START TRANSACTION"):
                tx = tx or {"applies": False, "rows": {}, "ddl": []}
            elif word == "COMMIT":
                finish(True)
            elif word == "ROLLBACK":
                finish(False)
            else:
                # As restore-bot's scope: every database is restored; server-level statements
                # (GRANT, ...) and ones run without a default database that name none are left out.
                applies = not _DCL.match(stmt) and (db is not None or _NAMES_DB.search(stmt) is not None)
                if tx is None:
                    tx = {"applies": applies, "rows": {}, "ddl": [stmt]}
                    finish(True)
                else:
                    tx["applies"] |= applies
                    tx["ddl"].append(stmt)
        for line in body:
            if m := _ROW.match(line):
                tx = tx or {"applies": False, "rows": {}, "ddl": []}
                tx["applies"] = True
                dec.databases.add(m[2])
                tx["rows"].setdefault(f"{m[2]}.{m[3]}", [0, 0, 0])[_KIND[m[1]]] += 1
    # A transaction still open at the end never committed: the plan leaves it out.
    dec.rows = {name: counts for name, counts in dec.rows.items() if any(counts)}
    return dec


def plan_rows(plan: dict) -> dict[str, list[int]]:
    return {name: [t["inserted"], t["updated"], t["deleted"]] for name, t in plan["tables"].items()
            if t["inserted"] or t["updated"] or t["deleted"]}
