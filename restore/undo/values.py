"""Row values of a binlog row image, decoded exactly as the target's own `SELECT` returns them.

Why our own decoder and not mysql-replication (pymysqlreplication): since 1.0 its row decoding takes
column names, signedness, charsets and ENUM/SET values from the table map's optional metadata only,
which a server writes with binlog_row_metadata=FULL, not its default (MINIMAL on MySQL, NO_LOG on
MariaDB): otherwise its columns are UNKNOWN_COLn and unsigned integers read as signed (its issue
#612); and its reader follows a live server, not a directory of copied files. The
undo must compare values bit for bit with what the target holds, so the binlog gives the bytes
(restore.binlog.rows.image_values, which every image walk of the engine already uses) and the
target's information_schema gives the meaning: a value decodes to the very Python value PyMySQL
returns for the same column (int, Decimal, str in the column's charset, bytes, datetime/date,
ENUM/SET strings), so "still as inserted" or "the later value" is a plain equality.

Decoded exactly (tests/test_undo.py and tests/test_undo_types.py compare each with the server's own
SELECT, and put it back bit for bit): integers (signed and unsigned), YEAR, DECIMAL, FLOAT and DOUBLE
(SELECTed as CAST(col AS DOUBLE): a FLOAT's float32 widens to a double exactly, while the server's own
text of a FLOAT has 6 digits; MariaDB 10.11's text of a double gives back its IEEE value, and a double
that holds a float32 written into a FLOAT gives back the same float32 bits), BINARY (padded back: the
binlog drops its trailing zero bytes), VARBINARY/BLOB, BIT, DATE, DATETIME(0-6), TIMESTAMP(0-6) (read in
UTC: the target connection's time_zone is +00:00), TIME(0-6), ENUM, SET, MariaDB's JSON (a LONGTEXT),
GEOMETRY and its subtypes (the server's own bytes, SRID then WKB, which the binlog logs and an INSERT
takes back as they are), MariaDB's INET4 and INET6 (their text, formatted as the server's
Inet6::to_string does) and UUID (the binlog carries its text order, whatever the record's order; the
binlog leaves out the trailing zero bytes of all three).
Zero and partial-zero dates ('0000-00-00', '2024-00-15 10:00:00.5') are the str PyMySQL returns for
them (it cannot make a date of them), formatted as the server prints them; they go back as that text
in a session whose sql_mode has no NO_ZERO_DATE or NO_ZERO_IN_DATE (SESSION_SQL).
Text in utf8mb3/utf8mb4, utf16, utf16le, utf32, ucs2, ascii, latin1 (the server's cp1252, whose five
undefined bytes are the C1 controls), latin2, latin5, latin7, cp1250, cp1251, cp1256, cp1257, cp850,
cp852, cp866, koi8r, koi8u, greek, hebrew, macroman, macce, tis620, sjis, cp932, ujis, euckr, gbk,
gb2312 and big5 (CHARSETS): Python's codec for it, with the few bytes where the server's table differs
put right, and refused where the server has no character for the bytes or would write the text back as
other bytes (sjis's backslash, cp932's rows 0xED-0xEE, a few big5, greek and cp1256 characters). Each
table is checked against the server's own conversion, both ways, for every one- and two-byte sequence
and ujis's three-byte ones (tests/test_undo_types.py).
The pre-5.6 temporal formats (MariaDB's tables made with mysql56_temporal_format=OFF, or in a datadir
from 5.3 to 10.0): DATETIME, TIME and TIMESTAMP without fraction (the integers YYYYMMDDhhmmss, hhmmss and
seconds). With a fraction (MariaDB 5.3's format) the binlog gives no size for them: the binlog reader
refuses the row event before a value is seen.
Refused, naming the column: MySQL's binary JSON (no MySQL server here to test a decoder against: its
text of a JSON value orders keys and prints doubles and dates its own way, and mysql-replication's
decoder gives Python objects, not that text), and charsets without a checked table (eucjpms, armscii8,
dec8, hp8, swe7, keybcs2, geostd8).
Generated columns (VIRTUAL, PERSISTENT/STORED) are decoded, to compare rows, but never written: the
server computes them.
"""
from __future__ import annotations

import datetime as dt
import re
import struct
from dataclasses import dataclass
from decimal import Decimal

from restore.binlog import rows as br
from restore.errors import RestoreError
from restore.mysql.quote import quote_ident, quote_qualified

_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_INTEGERS = {"tinyint", "smallint", "mediumint", "int", "bigint"}
_TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
# What a target session needs for these values to be read, compared and written back as decoded:
# TIMESTAMPs in UTC, and zero dates taken (NO_ZERO_DATE and NO_ZERO_IN_DATE, a MySQL default, would
# refuse the '0000-00-00' the server itself shows and PyMySQL returns).
SESSION_SQL = ("SET time_zone = '+00:00'",
               "SET SESSION sql_mode = REPLACE(REPLACE(@@SESSION.sql_mode, 'NO_ZERO_IN_DATE', ''), 'NO_ZERO_DATE', '')")
_OLD_TEMPORAL = {br.T_DATETIME, br.T_TIMESTAMP, br.T_TIME}
_GEOMETRY = {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
             "geometrycollection"}
# binlog type codes each information_schema DATA_TYPE may be logged as: a schema that changed since
# the transaction (or a type we would misread) is refused rather than decoded wrongly
_LOGGED_AS = {
    "tinyint": {br.T_TINY}, "smallint": {br.T_SHORT}, "mediumint": {br.T_INT24}, "int": {br.T_LONG},
    "bigint": {br.T_LONGLONG}, "year": {br.T_YEAR}, "decimal": {br.T_NEWDECIMAL}, "double": {br.T_DOUBLE},
    "float": {br.T_FLOAT}, "date": {br.T_DATE, br.T_NEWDATE},
    # MariaDB's tables made with mysql56_temporal_format=OFF (or from 5.3 to 10.0) log the old types
    "datetime": {br.T_DATETIME2, br.T_DATETIME}, "timestamp": {br.T_TIMESTAMP2, br.T_TIMESTAMP},
    "time": {br.T_TIME2, br.T_TIME}, "bit": {br.T_BIT},
    "enum": {br.T_STRING}, "set": {br.T_STRING}, "char": {br.T_STRING}, "binary": {br.T_STRING},
    "varchar": {br.T_VARCHAR}, "varbinary": {br.T_VARCHAR}, "inet6": {br.T_STRING}, "inet4": {br.T_STRING},
    "uuid": {br.T_STRING},
    **{t: {br.T_GEOMETRY} for t in _GEOMETRY},
    **{t: {br.T_BLOB} for t in ("tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob", "mediumblob",
                                "longblob")},
}


# The server's charsets as Python decodes them. Each was compared with the server's CONVERT(... USING
# utf8mb4) for every one- and two-byte sequence (tests/test_undo_types.py); where the tables differ the
# server's character is put right here, and where the server has no character (it prints '?' or U+FFFD)
# or two byte sequences give one character (the text could not go back as the same bytes), the value
# is refused.
# single-byte: server charset -> (codec, {byte: the server's character}, bytes refused)
_SINGLE = {
    "latin1": ("cp1252", {b: chr(b) for b in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}, b""),   # the C1 controls
    "ascii": ("ascii", {}, b""), "cp1250": ("cp1250", {}, b""), "cp1251": ("cp1251", {}, b""),
    "cp1257": ("cp1257", {}, b""), "cp850": ("cp850", {}, b""), "cp852": ("cp852", {}, b""),
    "latin2": ("iso8859_2", {}, b""), "latin5": ("iso8859_9", {}, b""), "latin7": ("iso8859_13", {}, b""),
    "koi8r": ("koi8_r", {}, b""), "macroman": ("mac_roman", {}, b""), "macce": ("mac_latin2", {}, b""),
    "tis620": ("tis_620", {}, b""),
    "cp866": ("cp866", {0xFC: "\u207f", 0xFD: "\u00b2"}, b""),
    "hebrew": ("iso8859_8", {0xAF: "\u203e"}, b""),
    "koi8u": ("koi8_u", {0x95: "\u2022"}, b""),
    "greek": ("iso8859_7", {0xA1: "\u02bd", 0xA2: "\u02bc"}, b"\xa4\xa5\xaa"),
    "cp1256": ("cp1256", {}, b"\x8a\x8f\x98\x9a\x9f\xaa\xc0\xff"),
}
_NONE = "\uffff"     # in a single-byte table: the server has no character for this byte


def _byte_table(codec: str, fixes: dict[int, str], refused: bytes) -> str:
    out = []
    for i in range(256):
        try:
            ch = fixes.get(i) or bytes([i]).decode(codec)
        except UnicodeDecodeError:
            ch = _NONE
        out.append(_NONE if i in refused else ch)
    return "".join(out)


_TABLES = {name: _byte_table(*spec) for name, spec in _SINGLE.items()}
def _cp932_nec_ibm() -> set[str]:
    out = set()
    for lead in (0xED, 0xEE):
        for trail in range(0x40, 0xFD):
            try:
                out.add(bytes([lead, trail]).decode("cp932"))
            except UnicodeDecodeError:
                pass
    return out


_ASTRAL = "[\U00010000-\U0010ffff]"
# multi-byte: server charset -> (codec, characters refused, whether the text must encode back to its bytes)
_MULTI: dict[str, tuple[str, re.Pattern | None, bool]] = {
    "utf8mb4": ("utf-8", None, False), "utf8mb3": ("utf-8", None, False), "utf8": ("utf-8", None, False),
    "utf16": ("utf-16-be", None, False), "utf16le": ("utf-16-le", None, False), "utf32": ("utf-32-be", None, False),
    "ucs2": ("utf-16-be", re.compile(_ASTRAL), False),     # two ucs2 surrogates are no character to the server
    # the server reads 0x5C and 0x815F both as '\\' and writes '\\' back as 0x815F
    "sjis": ("shift_jis", re.compile("[\\\\\uff3c]"), True),
    "ujis": ("euc_jp", re.compile("\uff3c"), True),       # 0xA1C0 is '\\' to the server, as 0x5C is
    # rows 0xED and 0xEE (NEC's copy of IBM's kanji) the server writes back as IBM's 0xFA-0xFC
    "cp932": ("cp932", re.compile("[\x80\uf8f0-\uf8f3" + "".join(sorted(_cp932_nec_ibm())) + "]"), True),
    "euckr": ("cp949", None, True), "gbk": ("gbk", None, True), "gb2312": ("gb2312", None, True),
    "big5": ("big5", re.compile("[\u2574\uffe3\u02cd\uff0f\uff3c\u5341\u5345]"), True),
}
CHARSETS = frozenset(_TABLES) | frozenset(_MULTI)    # the charsets undo decodes


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str              # information_schema DATA_TYPE
    unsigned: bool = False
    charset: str | None = None
    precision: int = 0          # DECIMAL
    scale: int = 0
    fsp: int = 0                # DATETIME/TIMESTAMP fractional digits
    members: tuple[str, ...] = ()   # ENUM/SET values
    generated: bool = False
    octets: int = 0             # BINARY(n): n (the binlog leaves out its trailing zero bytes)


@dataclass(frozen=True)
class TableSchema:
    db: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[int, ...]        # the primary key's column indexes; () matches on the whole row

    @property
    def full_name(self) -> str:
        return f"{self.db}.{self.name}"

    @property
    def ident(self) -> str:
        return quote_qualified(self.db, self.name)

    def key_of(self, row: tuple) -> tuple:
        return tuple(row[i] for i in self.key) if self.key else row

    def select_list(self) -> str:
        """The columns as the undo SELECTs them, in the order decode_row gives them."""
        return ", ".join(f"CAST({quote_ident(c.name)} AS DOUBLE)" if c.data_type in ("float", "double")
                         else quote_ident(c.name) for c in self.columns)

    def key_text(self, row: tuple) -> str:
        cols = self.key or range(len(self.columns))
        return ", ".join(f"{self.columns[i].name}={row[i]!r}" for i in cols)


_MEMBER = re.compile(r"'((?:[^']|'')*)'")


def _members(column_type: str) -> tuple[str, ...]:
    """ENUM('a','b''c') -> ('a', "b'c")."""
    return tuple(m.replace("''", "'") for m in _MEMBER.findall(column_type))


def read_schema(conn, db: str, table: str) -> TableSchema:
    """The table's columns and primary key as the target holds them now."""
    with conn.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, NUMERIC_PRECISION, "
                    "NUMERIC_SCALE, DATETIME_PRECISION, EXTRA, CHARACTER_OCTET_LENGTH FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION", (db, table))
        rows = cur.fetchall()
        if not rows:
            raise RestoreError(f"{db}.{table} does not exist on the target",
                               hint="undo puts rows back into the table they came from: create it first "
                                    "(or restore it with /restore plan)")
        cur.execute("SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
                    "AND INDEX_NAME='PRIMARY' ORDER BY SEQ_IN_INDEX", (db, table))
        pk = [r[0] for r in cur.fetchall()]
    cols = []
    for name, data_type, column_type, charset, prec, scale, fsp, extra, octets in rows:
        data_type = data_type.lower()
        cols.append(Column(name, data_type, "unsigned" in column_type.lower(), charset, int(prec or 0), int(scale or 0),
                           int(fsp or 0), _members(column_type) if data_type in ("enum", "set") else (),
                           any(w in (extra or "").upper() for w in ("VIRTUAL", "STORED", "PERSISTENT")),
                           int(octets or 0) if data_type == "binary" else 0))
    names = [c.name for c in cols]
    return TableSchema(db, table, tuple(cols), tuple(names.index(n) for n in pk))


def check_map(schema: TableSchema, tmap: br.TableMap, where: str) -> None:
    """Refuse a table map that does not fit the target's table: decoding it would be guesswork."""
    if len(tmap.column_types) != len(schema.columns):
        raise RestoreError(f"{where}: {schema.full_name} had {len(tmap.column_types)} columns when the binlog was "
                           f"written, the target's has {len(schema.columns)}", where=where,
                           hint="the table was altered since: undo needs the table as the transaction left it; "
                                "restore it from a dump plus the binlog with /restore plan")
    for col, code in zip(schema.columns, tmap.column_types):
        allowed = _LOGGED_AS.get(col.data_type)
        if allowed is None:
            raise RestoreError(f"{where}: column {schema.full_name}.{col.name} is {col.data_type.upper()}, which undo "
                               "does not decode exactly yet", where=where,
                               hint="undo this transaction with a restore instead: /restore plan")
        if code not in allowed or (code in _OLD_TEMPORAL and col.fsp):
            raise RestoreError(f"{where}: column {schema.full_name}.{col.name} is {col.data_type.upper()}"
                               f"{f'({col.fsp})' if col.fsp else ''} on the target "
                               f"but was logged as binlog type {code}", where=where,
                               hint="the table was altered since, or it is an old temporal format: undo cannot "
                                    "decode it; use /restore plan")


def decode_row(schema: TableSchema, tmap: br.TableMap, image: dict[int, bytes | None]) -> tuple:
    """A full row image as the tuple of its decoded values, in column order."""
    sizes = tmap.sizes
    out = []
    for i, col in enumerate(schema.columns):
        raw = image[i]
        if raw is None:
            out.append(None)
            continue
        size = sizes[i]
        out.append(decode_value(col, bytes(raw[-size:] if size < 0 else raw), schema, tmap.column_types[i]))
    return tuple(out)


def decode_value(col: Column, b: bytes, schema: TableSchema, logged: int = 0):
    """One value's bytes as PyMySQL returns the column's value; `logged`: its binlog type code."""
    t = col.data_type
    if logged in _OLD_TEMPORAL:
        return _old_temporal(logged, b)
    if t in _INTEGERS:
        return int.from_bytes(b, "little", signed=not col.unsigned)
    if t in _TEXT:
        return _text(col, b, schema)
    if t == "binary":
        return b.ljust(col.octets, b"\0")
    if t in _BINARY or t in _GEOMETRY or t == "bit":
        return b
    if t == "decimal":
        return _decimal(b, col.precision, col.scale)
    if t == "double":
        return struct.unpack("<d", b)[0]
    if t == "float":
        return struct.unpack("<f", b)[0]     # widened to the double CAST(col AS DOUBLE) returns
    if t == "year":
        return b[0] + 1900 if b[0] else 0
    if t == "date":
        v = int.from_bytes(b, "little")
        return _date_or_text(v >> 9, (v >> 5) & 15, v & 31)
    if t == "datetime":
        v = int.from_bytes(b[:5], "big") - 0x8000000000
        ymd, hms = v >> 17, v & 0x1FFFF
        ym = ymd >> 5
        return _date_or_text(ym // 13, ym % 13, ymd & 31, (hms >> 12, (hms >> 6) & 63, hms & 63,
                                                           _fraction(b[5:], col.fsp)), col.fsp)
    if t == "timestamp":
        secs = int.from_bytes(b[:4], "big")
        micro = _fraction(b[4:], col.fsp)
        if not secs:       # the zero TIMESTAMP (1970-01-01 00:00:00 UTC is out of its range)
            return _date_or_text(0, 0, 0, (0, 0, 0, micro), col.fsp)
        return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=secs, microseconds=micro)
    if t == "time":
        return _time(b, col.fsp)
    if t == "enum":
        index = int.from_bytes(b, "little")
        return col.members[index - 1] if index else ""
    if t == "set":
        bits = int.from_bytes(b, "little")
        return ",".join(m for i, m in enumerate(col.members) if bits >> i & 1)
    if t == "inet6":
        return _inet6(b.ljust(16, b"\0"))
    if t == "inet4":
        return ".".join(str(x) for x in b.ljust(4, b"\0"))
    if t == "uuid":
        h = b.ljust(16, b"\0").hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    raise RestoreError(f"column {schema.full_name}.{col.name} is {t.upper()}, which undo does not decode yet",
                       hint="use /restore plan")


def _text(col: Column, b: bytes, schema: TableSchema) -> str:
    """The str PyMySQL returns for the column's bytes (the server converts them to utf8mb4)."""
    name = col.charset or ""
    table = _TABLES.get(name)
    if table is not None:
        text = b.decode("latin-1").translate(table)
        if _NONE not in text:
            return text
    elif name in _MULTI:
        codec, refused, back = _MULTI[name]
        try:
            text = b.decode(codec)
        except UnicodeDecodeError:
            text = None
        if text is not None and not (refused and refused.search(text)) and not (back and text.encode(codec) != b):
            return text
    else:
        raise RestoreError(f"column {schema.full_name}.{col.name} has charset {name}, which undo does not decode",
                           hint="undo decodes " + ", ".join(sorted(CHARSETS)) + "; use /restore plan")
    raise RestoreError(f"column {schema.full_name}.{col.name} holds bytes (0x{b[:24].hex()}) that the server cannot "
                       f"show in utf8mb4 as they are in {name}, so they cannot be put back exactly",
                       hint="use /restore plan")


def _old_temporal(logged: int, b: bytes):
    """The formats before MySQL 5.6 (no fraction): DATETIME as the integer YYYYMMDDhhmmss, TIME as
    the signed integer hhmmss, TIMESTAMP as seconds, all little-endian."""
    if logged == br.T_TIMESTAMP:
        secs = int.from_bytes(b, "little")
        return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=secs) if secs else _date_or_text(0, 0, 0, (0, 0, 0, 0))
    if logged == br.T_TIME:
        v = int.from_bytes(b, "little", signed=True)
        h, rest = divmod(abs(v), 10000)
        value = dt.timedelta(hours=h, minutes=rest // 100, seconds=rest % 100)
        return -value if v < 0 else value
    day, clock = divmod(int.from_bytes(b, "little"), 1000000)
    return _date_or_text(day // 10000, day // 100 % 100, day % 100, (clock // 10000, clock // 100 % 100, clock % 100, 0))


def _date_or_text(y: int, m: int, d: int, hms: tuple[int, int, int, int] | None = None, fsp: int = 0):
    """A date or datetime, or, for a zero or partial-zero one (month or day 0, year 0), the text the
    server prints for it: PyMySQL cannot make a date of it and returns that text."""
    try:
        return dt.date(y, m, d) if hms is None else dt.datetime(y, m, d, *hms)
    except ValueError:
        pass
    text = f"{y:04d}-{m:02d}-{d:02d}"
    if hms is None:
        return text
    h, mi, sec, micro = hms
    return f"{text} {h:02d}:{mi:02d}:{sec:02d}" + (f".{micro:06d}"[:fsp + 1] if fsp else "")


def _inet6(b: bytes) -> str:
    """MariaDB's Inet6::to_string: the longest run of zero words (the first of equal ones, even a
    single word) is "::"; ::a.b.c.d and ::ffff:a.b.c.d print their IPv4 part dotted."""
    words = struct.unpack(">8H", b)
    gap_pos, gap_len, i = -1, 0, 0
    while i < 8:
        if words[i]:
            i += 1
            continue
        j = i
        while j < 8 and not words[j]:
            j += 1
        if j - i > gap_len:
            gap_pos, gap_len = i, j - i
        i = j
    v4 = ".".join(str(x) for x in b[12:])
    if gap_pos == 0 and gap_len == 6:
        return "::" + v4
    if gap_pos == 0 and gap_len == 5 and words[5] == 0xFFFF:
        return "::ffff:" + v4
    if gap_pos < 0:
        return ":".join(f"{w:x}" for w in words)
    head = ":".join(f"{w:x}" for w in words[:gap_pos])
    tail = ":".join(f"{w:x}" for w in words[gap_pos + gap_len:])
    return f"{head}::{tail}"


def _fraction(b: bytes, fsp: int) -> int:
    if not fsp:
        return 0
    v = int.from_bytes(b, "big")
    return v * (10000 if fsp <= 2 else 100 if fsp <= 4 else 1)


def _time(b: bytes, fsp: int) -> dt.timedelta:
    """MySQL's TIME2 (my_time_packed_from_binary, then TIME_from_longlong_time_packed): a packed
    value (hours:10 minutes:6 seconds:6 bits, then 24 bits of microseconds), negated for a negative
    TIME, stored with an offset; with 1 to 4 digits the fraction is a signed byte or short beside it."""
    if fsp >= 5:
        packed = int.from_bytes(b[:6], "big") - 0x800000000000
    else:
        intpart = int.from_bytes(b[:3], "big") - 0x800000
        nfrac = (fsp + 1) // 2
        frac = int.from_bytes(b[3:3 + nfrac], "big")
        if intpart < 0 and frac:
            intpart += 1
            frac -= 1 << (8 * nfrac)
        packed = (intpart << 24) + frac * (10000 if nfrac == 1 else 100 if nfrac == 2 else 0)
    negative = packed < 0
    packed = -packed if negative else packed
    hms, micro = packed >> 24, packed % (1 << 24)
    value = dt.timedelta(hours=(hms >> 12) % 1024, minutes=(hms >> 6) % 64, seconds=hms % 64, microseconds=micro)
    return -value if negative else value


def _decimal(b: bytes, precision: int, scale: int) -> Decimal:
    """MySQL's binary DECIMAL: groups of 9 digits in 4 bytes, big-endian, the sign in the first
    bit (flipped), a negative number stored as its one's complement."""
    data = bytearray(b)
    negative = not data[0] & 0x80
    data[0] ^= 0x80
    if negative:
        data = bytearray(x ^ 0xFF for x in data)
    intg = precision - scale
    pos, digits = 0, ""
    lead = _DIG2BYTES[intg % 9]
    if lead:
        digits += str(int.from_bytes(data[:lead], "big"))
        pos = lead
    for _ in range(intg // 9):
        digits += "%09d" % int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
    frac = ""
    for _ in range(scale // 9):
        frac += "%09d" % int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
    tail = scale % 9
    if tail:
        frac += str(int.from_bytes(data[pos:pos + _DIG2BYTES[tail]], "big")).zfill(tail)
    text = (digits.lstrip("0") or "0") + (f".{frac}" if scale else "")
    return Decimal(("-" if negative else "") + text)
