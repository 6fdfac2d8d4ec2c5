"""Statement events and the session context they must be replayed with.

A QUERY event carries its statement, its default database and status variables (sql_mode,
character sets, auto-increment settings, time zone, ...). INTVAR, RAND and USER_VAR events
that precede it carry INSERT_ID/LAST_INSERT_ID, RAND() seeds and user variables. Replaying the
statement without them gives different data, so each is turned into the `SET` the server
would have seen, like mysqlbinlog does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from restore.binlog import events as be

# Bits of Q_FLAGS2 that map to session variables.
_OPTION_AUTO_IS_NULL = 1 << 14
_OPTION_NOT_AUTOCOMMIT = 1 << 19
_OPTION_NO_FOREIGN_KEY_CHECKS = 1 << 26
_OPTION_RELAXED_UNIQUE_CHECKS = 1 << 27
_OPTION_NO_CHECK_CONSTRAINT_CHECKS = 1 << 30  # MariaDB


class UnknownStatusVar(ValueError):
    pass


@dataclass(slots=True)
class QueryEvent:
    thread_id: int
    exec_time: int
    error_code: int
    db: str
    query: str
    query_bytes: bytes
    flags2: int | None = None
    sql_mode: int | None = None
    auto_increment: tuple[int, int] | None = None
    charset: tuple[int, int, int] | None = None   # client, connection collation, server collation
    time_zone: str | None = None
    lc_time_names: int | None = None
    charset_database: int | None = None
    microseconds: int | None = None
    explicit_defaults_ts: int | None = None
    default_collation_utf8mb4: int | None = None
    sql_require_primary_key: int | None = None
    default_table_encryption: int | None = None
    ddl_xid: bool = False
    extra: dict = field(default_factory=dict)


def _str1(body: memoryview, pos: int) -> tuple[str, int]:
    n = body[pos]
    return bytes(body[pos + 1:pos + 1 + n]).decode("utf-8", "replace"), pos + 1 + n


def parse_query(ev: be.RawEvent, post_header_len: int) -> QueryEvent:
    body = ev.body
    thread_id, exec_time, db_len, error_code = struct.unpack_from("<IIBH", body, 0)
    status_len = struct.unpack_from("<H", body, 11)[0] if post_header_len >= 13 else 0
    pos = post_header_len
    status_end = pos + status_len
    db = bytes(body[status_end:status_end + db_len]).decode("utf-8", "replace")
    qbytes = bytes(body[status_end + db_len + 1:])
    q = QueryEvent(thread_id, exec_time, error_code, db, qbytes.decode("utf-8", "replace"), qbytes)
    while pos < status_end:
        code = body[pos]
        pos += 1
        if code == 0:
            q.flags2 = struct.unpack_from("<I", body, pos)[0]; pos += 4
        elif code == 1:
            q.sql_mode = struct.unpack_from("<Q", body, pos)[0]; pos += 8
        elif code == 2:  # Q_CATALOG (old): length, string, NUL
            pos += 2 + body[pos]
        elif code == 3:
            q.auto_increment = struct.unpack_from("<HH", body, pos); pos += 4
        elif code == 4:
            q.charset = struct.unpack_from("<HHH", body, pos); pos += 6
        elif code == 5:
            q.time_zone, pos = _str1(body, pos)
        elif code == 6:  # Q_CATALOG_NZ
            pos += 1 + body[pos]
        elif code == 7:
            q.lc_time_names = struct.unpack_from("<H", body, pos)[0]; pos += 2
        elif code == 8:
            q.charset_database = struct.unpack_from("<H", body, pos)[0]; pos += 2
        elif code == 9:  # Q_TABLE_MAP_FOR_UPDATE
            pos += 8
        elif code == 10:  # Q_MASTER_DATA_WRITTEN
            pos += 4
        elif code == 11:  # Q_INVOKER: user, host
            user, pos = _str1(body, pos)
            host, pos = _str1(body, pos)
            q.extra["invoker"] = (user, host)
        elif code == 12:  # Q_UPDATED_DB_NAMES
            count = body[pos]; pos += 1
            names = []
            if count != 254:
                for _ in range(count):
                    end = bytes(body[pos:status_end]).index(b"\0") + pos
                    names.append(bytes(body[pos:end]).decode("utf-8", "replace"))
                    pos = end + 1
            q.extra["updated_dbs"] = names
        elif code == 13:
            q.microseconds = int.from_bytes(body[pos:pos + 3], "little"); pos += 3
        elif code in (14, 15):  # Q_COMMIT_TS (unused)
            pos += 8
        elif code == 16:
            q.explicit_defaults_ts = body[pos]; pos += 1
        elif code == 17:
            q.ddl_xid = True; pos += 8
        elif code == 18:
            q.default_collation_utf8mb4 = struct.unpack_from("<H", body, pos)[0]; pos += 2
        elif code == 19:
            q.sql_require_primary_key = body[pos]; pos += 1
        elif code == 20:
            q.default_table_encryption = body[pos]; pos += 1
        elif code == 128:  # MariaDB Q_HRNOW: microseconds of the statement's start
            q.microseconds = int.from_bytes(body[pos:pos + 3], "little"); pos += 3
        elif code == 129:  # MariaDB Q_XID
            pos += 8
        elif code == 130:  # MariaDB Q_GTID_FLAGS3
            pos += 1
        elif code == 131:  # MariaDB 11.2+ Q_CHARACTER_SET_COLLATIONS: count + pairs
            count = body[pos]
            pos += 1 + count * 4
        elif code == 132:  # MariaDB Q_ALTER_ID
            pos += 8
        else:
            raise UnknownStatusVar(f"unknown status variable code {code}")
    return q


def session_settings(q: QueryEvent) -> dict[str, str]:
    """Session variables the statement ran under, as `SET` right-hand sides."""
    out: dict[str, str] = {}
    if q.flags2 is not None:
        f = q.flags2
        out["foreign_key_checks"] = "0" if f & _OPTION_NO_FOREIGN_KEY_CHECKS else "1"
        out["sql_auto_is_null"] = "1" if f & _OPTION_AUTO_IS_NULL else "0"
        out["unique_checks"] = "0" if f & _OPTION_RELAXED_UNIQUE_CHECKS else "1"
        out["check_constraint_checks"] = "0" if f & _OPTION_NO_CHECK_CONSTRAINT_CHECKS else "1"
    if q.sql_mode is not None:
        out["sql_mode"] = str(q.sql_mode)
    # Servers write these three only when they differ from the default: absent means default.
    increment, offset = q.auto_increment or (1, 1)
    out["auto_increment_increment"] = str(increment)
    out["auto_increment_offset"] = str(offset)
    out["lc_time_names"] = str(q.lc_time_names or 0)
    out["collation_database"] = str(q.charset_database) if q.charset_database else "DEFAULT"
    if q.charset is not None:
        out["character_set_client"] = str(q.charset[0])
        out["collation_connection"] = str(q.charset[1])
        out["collation_server"] = str(q.charset[2])
    if q.time_zone is not None:
        out["time_zone"] = "'" + q.time_zone.replace("\\", "\\\\").replace("'", "''") + "'"
    if q.explicit_defaults_ts is not None:
        out["explicit_defaults_for_timestamp"] = str(q.explicit_defaults_ts)
    out["pseudo_thread_id"] = str(q.thread_id)
    return out


# USER_VAR value types
_STRING, _REAL, _INT, _ROW, _DECIMAL = 0, 1, 2, 3, 4


@dataclass(slots=True)
class UserVar:
    name: str
    sql_value: str | None      # a literal ready for `SET @name := <literal>`, None for NULL
    charset: int | None = None  # collation id of a string value


def parse_user_var(ev: be.RawEvent) -> UserVar:
    body = ev.body
    name_len = struct.unpack_from("<I", body, 0)[0]
    name = bytes(body[4:4 + name_len]).decode("utf-8", "replace")
    pos = 4 + name_len
    is_null = body[pos]
    pos += 1
    if is_null:
        return UserVar(name, None)
    vtype, charset, vlen = struct.unpack_from("<BII", body, pos)
    pos += 9
    raw = bytes(body[pos:pos + vlen])
    flags = body[pos + vlen] if pos + vlen < len(body) else 0
    if vtype == _REAL:
        return UserVar(name, repr(struct.unpack("<d", raw)[0]))
    if vtype == _INT:
        value = int.from_bytes(raw[:8], "little", signed=not (flags & 1))
        return UserVar(name, str(value))
    if vtype == _DECIMAL:
        return UserVar(name, _decode_decimal(raw[2:], raw[0], raw[1]))
    return UserVar(name, "X'" + raw.hex() + "'", charset)


def _decode_decimal(data: bytes, precision: int, scale: int) -> str:
    """MySQL's binary DECIMAL format to its text."""
    dig2bytes = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
    intg = precision - scale
    buf = bytearray(data)
    negative = not (buf[0] & 0x80)
    buf[0] ^= 0x80
    if negative:
        buf = bytearray(b ^ 0xFF for b in buf)
    pos = 0
    parts = []

    def take(n: int) -> int:
        nonlocal pos
        v = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
        return v

    lead = intg % 9
    int_text = ""
    if lead:
        int_text += str(take(dig2bytes[lead]))
    for _ in range(intg // 9):
        int_text += f"{take(4):09d}"
    frac = ""
    for _ in range(scale // 9):
        frac += f"{take(4):09d}"
    tail = scale % 9
    if tail:
        frac += f"{take(dig2bytes[tail]):0{tail}d}"
    parts.append(int_text.lstrip("0") or "0")
    text = parts[0] + ("." + frac if frac else "")
    return ("-" if negative else "") + text
