"""The load and the victims of the latency bench (bench/alert_latency.py): the server's commit
counter (the load's rate) and, for each destructive statement measured, what it destroys."""
from __future__ import annotations

SB_DB = "sbtest"
VICTIM = "victim"
PREFIX = {"DROP TABLE": "dt", "TRUNCATE": "tr", "DROP DATABASE": "dd", "mass DELETE": "del", "mass UPDATE": "upd"}


def com_commit(cur) -> int:
    cur.execute("SHOW GLOBAL STATUS LIKE 'Com_commit'")
    return int(cur.fetchone()[1])


def prepare_victim(cur, kind: str, token: str, rows: int, fmt: str) -> str:
    """Create what `kind` destroys (not timed); return the destructive statement."""
    cur.execute(f"CREATE DATABASE IF NOT EXISTS {VICTIM}")
    table = f"{VICTIM}.{token}"
    cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT NOT NULL, pad CHAR(20) NOT NULL DEFAULT 'x')")
    n = rows if kind in ("mass DELETE", "mass UPDATE") else 10
    cur.execute(f"INSERT INTO {table} (id, v) SELECT seq, seq FROM {VICTIM}.seq_1_to_{n}")
    if kind == "DROP TABLE":
        return f"DROP TABLE {table}"
    if kind == "TRUNCATE":
        return f"TRUNCATE TABLE {table}"
    if kind == "DROP DATABASE":
        return f"DROP DATABASE {VICTIM} /* {token} */"
    if kind == "mass DELETE":
        # ROW: a WHERE does not hide it, the row events show every row went. MIXED/STATEMENT: only a
        # statement without WHERE is recognisable (the binlog has no row count).
        return f"DELETE FROM {table} WHERE id > 0" if fmt == "ROW" else f"DELETE FROM {table}"
    if kind == "mass UPDATE":
        # One value over 200 distinct ones destroys them: certain, an alert that pages. (`SET v = v + 1`
        # keeps them apart: a suspect since issue 10, a notice in the channel that pages nobody.)
        return f"UPDATE {table} SET v = 0"
    raise ValueError(kind)
