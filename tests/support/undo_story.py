"""The undo story of tests/test_undo.py, shared with the chat and scale tests: a shop whose orders
(every column type) are deleted and whose customers' emails are overwritten, with later writes
that must survive the undo (a rename, a write to the same column, a reused key)."""
from __future__ import annotations

from restore.undo.apply import connect
from tests.support.db import master_status

SCHEMA = [
    "CREATE DATABASE shop",
    "CREATE TABLE shop.customer (id INT PRIMARY KEY, name VARCHAR(50) CHARACTER SET utf8mb4, "
    "email VARCHAR(100) CHARACTER SET utf8mb4)",
    "CREATE TABLE shop.orders (id INT PRIMARY KEY, customer_id INT, amount DECIMAL(14,4), "
    "note VARCHAR(100) CHARACTER SET utf8mb4, at DATETIME(6), data BLOB, doc JSON, "
    "status ENUM('new','paid','it''s sent'), big BIGINT UNSIGNED, tags SET('a','b','c'), flag BIT(3), "
    "ts TIMESTAMP(3) NULL, born DATE, small TINYINT, yr YEAR, ratio DOUBLE)",
    "CREATE TABLE shop.log (msg VARCHAR(50), n INT)",   # no primary key, duplicates
]


def seed() -> list[str]:
    out = [f"INSERT INTO shop.customer VALUES ({i}, 'name {i} ü', 'c{i}@example.com')" for i in range(1, 7)]
    for i in range(1, 21):
        values = [
            f"{(-1) ** i * (i * 1234.5678 + 0.0001):.4f}",                 # DECIMAL, negative too
            repr(f"note {i} 😀 ñ"),                                         # utf8mb4
            repr(f"2024-0{i % 9 + 1}-1{i % 9} 12:34:56.{i:06d}"),          # DATETIME(6)
            "x" + repr(bytes([i, 0, 255, 10]).hex()),                     # BLOB
            repr('{"k": %d, "s": "ü"}' % i),                              # JSON
            ["1", "2", "3"][i % 3],                                       # ENUM by index
            str(18446744073709551615 - i),                                # BIGINT UNSIGNED
            repr(["a", "a,c", ""][i % 3]),                                # SET
            "b" + repr(f"{i % 8:03b}"),                                   # BIT
            repr(f"2023-11-0{i % 9 + 1} 01:02:03.{i:03d}"),               # TIMESTAMP(3)
            repr(f"19{i + 50}-02-2{i % 9}"),                              # DATE
            str(-i), str(1990 + i),                                       # TINYINT, YEAR
            repr((-1) ** i * i / 7 * 10 ** (i * 7 - 70)),                 # DOUBLE
        ]
        if i % 4 == 0:
            values = ["NULL"] * len(values)
        out.append(f"INSERT INTO shop.orders VALUES ({i}, {i % 6 + 1}, {', '.join(values)})")
    out += ["INSERT INTO shop.log VALUES ('dup', 1), ('dup', 1), ('one', 2), (NULL, NULL)"]
    return out


NEW_ORDER_5 = "(5, 3, 9.9900, 'reused key', '2025-01-01 00:00:00.000001', NULL, NULL, 'new', 1, 'b', b'1', NULL, NULL, 1, NULL, 0.5)"
LATER_1 = ["INSERT INTO shop.orders (id, customer_id, note) VALUES (100, 1, 'after the delete')",
           "INSERT INTO shop.log VALUES ('later', 3)"]
LATER_2 = ["UPDATE shop.customer SET name = 'Renamed Two' WHERE id = 2",         # another column: kept
           "UPDATE shop.customer SET email = 'again3@example.com' WHERE id = 3",  # the same column: conflict
           "UPDATE shop.orders SET note = 'later note' WHERE id = 100"]


def run(server, statements) -> None:
    conn = server.connect()
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
    conn.close()


def history(server, *, disaster: bool) -> dict:
    """The story, on the source (with the disasters) or on the oracle (without: the reused key is a
    REPLACE there, since the oracle never lost order 5). Returns the disasters' GTIDs and positions."""
    marks = {}
    run(server, SCHEMA + seed())
    if disaster:
        marks["seeded"] = table_rows(server, "shop.orders")
        run(server, ["BEGIN", "DELETE FROM shop.orders", "DELETE FROM shop.log", "COMMIT"])
        marks["delete"] = last_gtid(server)
    run(server, LATER_1 + [f"{'INSERT' if disaster else 'REPLACE'} INTO shop.orders VALUES {NEW_ORDER_5}"])
    if disaster:
        marks["update_at"] = master_status(server.connect())[:2]
        run(server, ["UPDATE shop.customer SET email = 'same@example.com'"])
        marks["update"] = last_gtid(server)
    run(server, LATER_2)
    return marks


def last_gtid(server) -> str:
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        return cur.fetchone()[0]


def table_rows(server, table: str) -> dict:
    conn = connect(server.dsn)
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table}")
        rows = cur.fetchall()
    conn.close()
    return {r[0]: tuple(r) for r in rows}


def scratch_tables(server) -> list[str]:
    """The undo verification's scratch copies on `server` (restore.undo.verify_rows, restore.undo.fast)."""
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '_restore_bot' "
                    "AND TABLE_NAME LIKE 'undo\\_verify\\_%'")
        names = [r[0] for r in cur.fetchall()]
    conn.close()
    return names
