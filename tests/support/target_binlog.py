"""Measuring what a restore adds to a binlog-enabled target's binlog, against the source range it
replayed (the growth bound of issue 9: at most twice the replayed range)."""
from __future__ import annotations

from pathlib import Path

from restore.mysql.sandbox import Sandbox
from tests.support.incident_factory import IncidentSpec

SHOP_ROWS = 1500   # transactions after the dump: a range of some MB


def _shop_traffic(cur) -> None:
    for i in range(2, SHOP_ROWS + 2):
        # UUID() is unsafe for statement logging: MIXED logs these inserts as row events too,
        # while the UPDATEs stay statements there.
        cur.execute("INSERT INTO shop.items VALUES (%s, 0, UUID(), REPEAT('x', 2000))", (i,))
        if i % 50 == 0:
            cur.execute("UPDATE shop.items SET n = n + 1 WHERE id > %s", (i - 40,))


SHOP = IncidentSpec(
    databases=("shop",),
    schema=["CREATE DATABASE shop",
            "CREATE TABLE shop.items (id INT PRIMARY KEY, n INT NOT NULL, tag CHAR(36), payload VARCHAR(3000))",
            "INSERT INTO shop.items VALUES (1, 0, NULL, 'first')"],
    traffic=[_shop_traffic],
    disaster=["DROP DATABASE shop"])


def binlog_bytes(server: Sandbox) -> int:
    """The size of every binlog file the server lists now."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return sum(int(r[1]) for r in cur.fetchall())


def replayed_bytes(plan: dict, binlogs: Path) -> int:
    """The bytes of the source range a plan (`--json`'s "plan") replays, from replay_from to end."""
    start, end = plan["replay_from"], plan["end"]
    files = sorted(p.name for p in binlogs.iterdir() if start["file"] <= p.name <= end["file"] and p.name != "binlog.index")
    total = sum((binlogs / f).stat().st_size for f in files)
    return total - start["pos"] - ((binlogs / end["file"]).stat().st_size - end["pos"])
