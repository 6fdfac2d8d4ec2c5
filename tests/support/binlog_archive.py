"""Comparing a binlog archive with the server's own files, and the traffic that fills them."""
from __future__ import annotations

from pathlib import Path

from restore.mysql.sandbox import Sandbox


def server_binlog_files(src: Sandbox) -> dict[str, bytes]:
    """The server's binlog files, as a finished copy has them: a server marks the file it is
    writing "in use" in its format description's flags (byte 21) and clears it on close; the
    copy of that file is not in use, so that one bit is the only one compared as cleared."""
    out = {}
    for p in Path(src.binlog_dir).iterdir():
        if p.name.startswith("binlog.") and p.name[7:].isdigit():
            data = bytearray(p.read_bytes())
            data[21] &= ~0x01
            out[p.name] = bytes(data)
    return out


def archived_files(d: Path) -> dict[str, bytes]:
    """Every file in the archive directory `d`, by name."""
    # The archiver creates its directory only once it has started: before that, nothing is copied.
    if not d.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in d.iterdir()}


def insert_traffic(src: Sandbox, n: int, flush_every: int = 0) -> None:
    """`n` single-row inserts into club.t (created if missing); FLUSH BINARY LOGS every `flush_every`."""
    with src.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS club")
        cur.execute("CREATE TABLE IF NOT EXISTS club.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(50))")
        for i in range(n):
            cur.execute("INSERT INTO club.t (v) VALUES (%s)", (f"value {i} " + "x" * (i % 40),))
            if flush_every and i % flush_every == flush_every - 1:
                cur.execute("FLUSH BINARY LOGS")
