"""Every column type the undo decodes, against a real server: each value decoded from the binlog
equals what the server's own SELECT returns (the SELECT the undo makes: TableSchema.select_list), and
a DELETE of such rows undone gives CHECKSUM TABLE as before. The charset tables are compared with the
server's own conversion for every one- and two-byte sequence."""
from __future__ import annotations

import random
import struct

import pytest

from restore import api
from restore.binlog import events as be
from restore.binlog import rows as br
from restore.binlog.row_images import column_count
from restore.binlog.rows import image_values
from restore.binlog.walker import RowsStep, Walker
from restore.errors import RestoreError
from restore.undo import fast_apply
from restore.undo.apply import connect
from restore.undo.values import _MULTI, _TABLES, CHARSETS, Column, TableSchema, decode_row, decode_value, read_schema
from tests.support.db import checksums

pytestmark = pytest.mark.mysql

_TWO_BYTE = {name for name in _MULTI if name not in ("utf8mb4", "utf8mb3", "utf8", "utf32")}


def _decoded(name: str, raw: bytes) -> str | None:
    col = _COLUMNS.get(name) or _COLUMNS.setdefault(name, Column("c", "varchar", charset=name))
    try:
        return decode_value(col, raw, _SCHEMA)
    except RestoreError:
        return None


_COLUMNS: dict[str, Column] = {}
_SCHEMA = TableSchema("d", "t", (), ())


def test_each_charset_reads_as_the_server_converts_it_and_goes_back_as_the_same_bytes(source_factory):
    """For every byte (single-byte charsets) or every pair of bytes (the others): what undo decodes
    is what the server's CONVERT(... USING utf8mb4) gives, and the server turns that text back into
    the same bytes; what the server cannot do so is refused."""
    server = source_factory("ROW")
    conn = server.connect()
    accepted = {}
    with conn.cursor() as cur:
        cur.execute("SET SESSION group_concat_max_len = 1 << 24")
        # ujis also has three-byte characters: 0x8F and two bytes (JIS X 0212)
        for name, width, prefix in [(n, 4 if n in _TWO_BYTE else 2, "") for n in sorted(set(_TABLES) | _TWO_BYTE)] + \
                                   [("ujis", 4, "8F")]:
            text = f"CAST(UNHEX(CONCAT('{prefix}', LPAD(HEX(seq), {width}, '0'))) AS CHAR CHARACTER SET {name})"
            # one row per 256 sequences: reading 65,536 rows through PyMySQL would take most of the time
            cur.execute(f"SELECT seq DIV 256, GROUP_CONCAT(CONCAT(HEX(CONVERT({text} USING utf8mb4)), ':', "
                        f"HEX(CONVERT(CONVERT({text} USING utf8mb4) USING {name}))) ORDER BY seq SEPARATOR ',') "
                        f"FROM mysql.seq_0_to_{16 ** width - 1} GROUP BY 1")
            wrong, accepted[name + prefix] = [], 0
            for high, pairs in cur.fetchall():
                for low, pair in enumerate(pairs.split(",")):
                    raw = bytes.fromhex(prefix) + (high * 256 + low).to_bytes(width // 2, "big")
                    mine = _decoded(name, raw)
                    if mine is None:
                        continue
                    accepted[name + prefix] += 1
                    shown, back = pair.split(":")
                    server_text = bytes.fromhex(shown).decode("utf-8", "surrogatepass")
                    if mine != server_text or bytes.fromhex(back) != raw:
                        wrong.append((raw.hex(), mine, server_text, back))
            assert not wrong, (name, wrong[:10])
    conn.close()
    assert all(n > 120 for n in accepted.values()), accepted
    assert accepted["sjis"] > 7000 and accepted["big5"] > 13000 and accepted["utf16"] == 63488, accepted
    assert accepted["ujis8F"] > 5000, accepted


def _random_text(rnd: random.Random, name: str, most: int) -> bytes:
    """Bytes of 0..most characters that undo accepts in `name` (a literal the server stores as is)."""
    out = b""
    for _ in range(rnd.randint(0, most)):
        while True:
            if name == "utf32":
                raw = rnd.choice([rnd.randint(0x20, 0xD7FF), rnd.randint(0xE000, 0x10FFFF)]).to_bytes(4, "big")
            elif name in _TWO_BYTE:
                raw = rnd.getrandbits(16).to_bytes(2, "big")
            else:
                raw = bytes([rnd.randint(0x20, 0xFF)])
            if _decoded(name, raw) not in (None, "", " ") and not _decoded(name, raw).endswith(" "):
                out += raw
                break
    return out


def _float32(rnd: random.Random) -> str:
    if rnd.random() < 0.2:
        return rnd.choice(["-0e0", "3.4028234663852886e+38", "-1.401298464324817e-45", "1.1754943508222875e-38",
                           "0.1", "16777217"])
    while True:
        value = struct.unpack("<f", rnd.getrandbits(32).to_bytes(4, "little"))[0]
        if value == value and abs(value) != float("inf"):
            return repr(value)


def _ip(rnd: random.Random) -> str:
    words = [rnd.choice([0, 0, 0, 1, 0xFFFF, rnd.getrandbits(16)]) for _ in range(8)]
    if rnd.random() < 0.2:
        words[:6] = [0] * 5 + [rnd.choice([0, 0xFFFF])]
    return "'" + ":".join(f"{w:x}" for w in words) + "'"


def _uuid(rnd: random.Random) -> str:
    h = f"{rnd.getrandbits(128):032x}"
    h = h[:12] + rnd.choice("01234567") + h[13:]    # the server refuses some versions >= 8
    if rnd.random() < 0.5:      # a time-based one: the server keeps it in another byte order
        h = h[:12] + "1" + h[13:16] + "9" + h[17:]
    return f"'{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}'"


def _zero_date(rnd: random.Random, time_part: bool) -> str:
    y, m, d = rnd.choice([(0, 0, 0), (2024, 0, 15), (2024, 5, 0), (0, 1, 1), (1999, 12, 31)])
    text = f"{y:04d}-{m:02d}-{d:02d}"
    if time_part:
        text += f" {rnd.randint(0, 23)}:{rnd.randint(0, 59)}:{rnd.randint(0, 59)}.{rnd.randint(0, 999999):06d}"
    return f"'{text}'"


def _geometry(rnd: random.Random) -> str:
    x, y = rnd.uniform(-180, 180), rnd.uniform(-90, 90)
    srid = rnd.choice([0, 4326])
    return rnd.choice([f"ST_GeomFromText('POINT({x!r} {y!r})', {srid})",
                       f"ST_GeomFromText('LINESTRING(0 0, {x!r} {y!r}, 1 1)', {srid})",
                       f"ST_GeomFromText('POLYGON((0 0, {x!r} 0, {x!r} {y!r}, 0 0))', {srid})"])


def _text_column(name: str) -> tuple[str, object]:
    return (f"VARCHAR(40) CHARACTER SET {name}",
            lambda r: f"_{name} x'{_random_text(r, name, 12).hex()}'")


TYPES = {
    "f": ("FLOAT", _float32),
    "f73": ("FLOAT(7,3)", lambda r: f"{r.uniform(-9999, 9999):.3f}"),
    "dm": ("DOUBLE(20,5)", lambda r: f"{r.uniform(-1e14, 1e14):.5f}"),
    "g": ("GEOMETRY", _geometry),
    "p": ("POINT", lambda r: f"ST_GeomFromText('POINT({r.uniform(-1, 1)!r} {r.random()!r})')"),
    "ip": ("INET6", _ip),
    "i4": ("INET4", lambda r: "'" + ".".join(str(r.choice([0, 0, 255, r.randint(0, 255)])) for _ in range(4)) + "'"),
    "u": ("UUID", _uuid),
    "zd": ("DATE", lambda r: _zero_date(r, False)),
    "zt": ("DATETIME(3)", lambda r: _zero_date(r, True)),
    "zs": ("TIMESTAMP(2) NULL", lambda r: r.choice(["'0000-00-00 00:00:00'", "'2001-02-03 04:05:06.78'"])),
    "c16": ("CHAR(6) CHARACTER SET utf16", lambda r: f"_utf16 x'{_random_text(r, 'utf16', 5).hex()}'"),
    "c32": ("VARCHAR(20) CHARACTER SET utf32", lambda r: f"_utf32 x'{_random_text(r, 'utf32', 8).hex()}'"),
    **{f"t_{name}": _text_column(name) for name in sorted(CHARSETS - {"utf8", "utf16", "utf32"})},
}


def _deleted_rows(source, schema: TableSchema) -> list[tuple]:
    """Every row the binlog's DELETE rows events of the table carry, decoded: read here with the
    binlog's own walk, not through the undo's reader, so the values are the decoder's alone."""
    walker = Walker(api.open_binlogs(source.binlog_dir).events())
    out = []
    for step in walker.steps():
        if not isinstance(step, RowsStep) or step.tmap.full_name != schema.full_name or \
                step.event.type not in be.DELETE_ROWS:
            continue
        data, tmap = step.event.data, step.tmap
        ncols, pos = column_count(data, walker.fde.post_header(step.event.type))
        pos += (ncols + 7) >> 3
        end = len(data) - 4 if step.event.checksum else len(data)
        while pos < end:
            image, pos = image_values(data, pos, tmap.sizes, list(range(ncols)))
            out.append(decode_row(schema, tmap, image))
    return out


def _select(server, table: str, schema: TableSchema) -> dict:
    conn = connect(server.dsn)
    with conn.cursor() as cur:
        cur.execute(f"SELECT {schema.select_list()} FROM {schema.ident}")
        rows = [tuple(r) for r in cur.fetchall()]
    conn.close()
    return {r[0]: r for r in rows} if schema.key else sorted(rows, key=repr)


def _delete_and_undo(source, key: str, types: dict, rnd: random.Random, *, setup: tuple[str, ...] = ()) -> None:
    """50 rows of random values of `types` (and, without a primary key, 10 duplicates) deleted: each
    value decoded from the binlog equals the server's SELECT; the undo gives the checksum back."""
    conn = source.connect()
    with conn.cursor() as cur:
        for sql in ("CREATE DATABASE y", *setup,
                    f"CREATE TABLE y.t ({key}, " + ", ".join(f"{k} {t}" for k, (t, _) in types.items()) + ")"):
            cur.execute(sql)
        for i in range(50):
            cur.execute(f"INSERT INTO y.t VALUES ({i}, " + ", ".join(
                "NULL" if rnd.random() < 0.05 and k not in ("g", "p") else make(rnd)
                for k, (_, make) in types.items()) + ")")
        if "PRIMARY" not in key:     # duplicates: whole rows of every type matched and counted
            cur.execute("INSERT INTO y.t SELECT * FROM y.t WHERE id < 10")
    conn.close()
    conn = connect(source.dsn)
    schema = read_schema(conn, "y", "t")
    conn.close()
    selected = _select(source, "y.t", schema)
    before = checksums(source.connect(), ["y"])
    conn = source.connect()
    with conn.cursor() as cur:
        cur.execute("DELETE FROM y.t")
        cur.execute("SELECT @@gtid_binlog_pos")
        gtid = cur.fetchone()[0]
    conn.close()

    rows = _deleted_rows(source, schema)
    if schema.key:
        decoded = {r[0]: r for r in rows}
        names = [c.name for c in schema.columns]
        wrong = {(i, names[j]): (selected[i][j], decoded[i][j]) for i in selected for j in range(len(names))
                 if selected[i][j] != decoded[i][j]}
        assert not wrong and len(decoded) == 50, wrong
    else:
        assert sorted(rows, key=repr) == selected and len(rows) == 60

    done = api.undo(api.UndoInput(source.binlog_dir, source.dsn, gtid, dry_run=False))
    assert done.applied and not done.verification, done.verification
    assert checksums(source.connect(), ["y"]) == before
    assert _select(source, "y.t", schema) == selected


@pytest.mark.parametrize("key", ["id INT PRIMARY KEY", "id INT"], ids=["primary-key", "whole-row"])
def test_every_type_decodes_as_the_servers_select_and_a_delete_undone_gives_the_same_checksum(source_factory, key,
                                                                                              monkeypatch):
    """With a primary key the rows are kept whole and checked by sums before the commit: the MyISAM
    scratch copy's live checksum agrees with the InnoDB table's CHECKSUM TABLE for every type (no
    comparison by key was needed)."""
    by_key, sums = [], []
    missing, checksum = fast_apply._missing, fast_apply._checksum
    monkeypatch.setattr(fast_apply, "_missing", lambda *a: by_key.append(a[2]) or missing(*a))
    monkeypatch.setattr(fast_apply, "_checksum", lambda *a: sums.append(a[1]) or checksum(*a))
    _delete_and_undo(source_factory("ROW"), key, TYPES, random.Random(2026))
    assert (sums, by_key) == ((["`y`.`t`"] * 2, []) if "PRIMARY" in key else ([], []))


def test_zero_dates_go_back_on_a_target_whose_sql_mode_refuses_them(source_factory):
    """The target session runs values.SESSION_SQL (restore.undo.apply.connect)."""
    source = source_factory("ROW")
    zeros = {"zd": TYPES["zd"], "zt": TYPES["zt"]}
    _delete_and_undo(source, "id INT PRIMARY KEY", zeros, random.Random(7),
                     setup=("SET SESSION sql_mode = ''",
                            "SET GLOBAL sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE'"))


OLD_TEMPORAL = {
    "d0": ("DATETIME", lambda r: _zero_date(r, True).split(".")[0] + "'"),
    "t0": ("TIME", lambda r: _time(r)),
    "s0": ("TIMESTAMP NULL", lambda r: r.choice(["'0000-00-00 00:00:00'", "'1970-01-01 00:00:01'",
                                                 f"FROM_UNIXTIME({r.randint(1, 2 ** 31 - 1)})"])),
}


def _time(rnd: random.Random) -> str:
    return f"'{rnd.choice('-+')}{rnd.randint(0, 838)}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}'"


def test_the_pre_5_6_temporal_formats_decode_as_the_servers_select(source_factory):
    """MariaDB makes DATETIME/TIME/TIMESTAMP columns in the old formats with mysql56_temporal_format=OFF
    (and a datadir from 5.3-10.0 has them): logged as the old binlog types."""
    source = source_factory("ROW")
    try:
        _delete_and_undo(source, "id INT PRIMARY KEY", OLD_TEMPORAL, random.Random(56),
                         setup=("SET GLOBAL mysql56_temporal_format = OFF", "SET time_zone = '+00:00'"))
    finally:
        conn = source.connect()
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL mysql56_temporal_format = ON")
        conn.close()
    logged = {bytes(step.tmap.column_types) for step in Walker(api.open_binlogs(source.binlog_dir).events()).steps()
              if isinstance(step, RowsStep) and step.tmap.full_name == "y.t"}
    assert logged == {bytes([br.T_LONG, br.T_DATETIME, br.T_TIME, br.T_TIMESTAMP])}


def test_a_value_the_server_cannot_show_exactly_is_refused_naming_the_column():
    col = Column("name", "varchar", charset="big5")
    schema = TableSchema("d", "t", (col,), ())
    with pytest.raises(RestoreError) as err:
        decode_value(col, "十".encode("big5").replace(b"\xa4\x51", b"\xa2\xcc"), schema)
    assert "d.t.name" in str(err.value) and "/restore plan" in err.value.hint
    with pytest.raises(RestoreError) as err:
        decode_value(Column("k", "varchar", charset="armscii8"), b"a", schema)
    assert "armscii8" in str(err.value) and "utf16" in err.value.hint
