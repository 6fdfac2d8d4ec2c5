"""Find the parts of a mariadb-dump/mysqldump file that can be loaded side by side.

A dump is, in order: a header of session SETs, then per database a CREATE DATABASE and USE, the
tables (DROP/CREATE TABLE, LOCK TABLES, DISABLE KEYS, INSERTs, ENABLE KEYS, UNLOCK, then that
table's triggers), placeholders for views, events and routines; at the very end the real views.
Each table's own statements touch that table only, so they can run in a connection of their own
(but for its LOCK TABLES, which would reach the tables naming it by foreign key: left out);
everything else (triggers, views, routines, events) runs afterwards, in dump order, in one.

The file is scanned once, line by line, and described by byte ranges: nothing but the ranges is
kept, so a dump of any size costs the same memory. A statement the scanner does not recognise
where it would change data (an INSERT outside its table's section, an ALTER TABLE, ...) makes the
dump `Unsplittable`: the caller loads it with one client, as the dump was written to be.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from restore.plan.snapshot import _count as _quotes   # (rows, ends inside a literal): C-speed, escapes known

_ID = rb"(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)"   # quoted as mariadb-dump does, or bare
_VERSIONED = re.compile(rb"^/\*[!M]!?\d*\s*")          # /*!40101 ... or /*M!100101 ...
_PLAIN_COMMENT = re.compile(rb"^(?:/\*(?![!M]).*?\*/\s*|--[^\n]*\n\s*|#[^\n]*\n\s*)+", re.S)
_DELIM_START = re.compile(rb"^\s*DELIMITER\s+(?!;\s*$)\S+\s*$", re.I)
_DELIM_END = re.compile(rb"^\s*DELIMITER\s+;\s*$", re.I)

_DROP_TABLE = re.compile(rb"DROP\s+TABLE\s+IF\s+EXISTS\s+" + _ID + rb"\s*;", re.I)
_CREATE_TABLE = re.compile(rb"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _ID + rb"\s*\(", re.I)
_CS_SAVE = re.compile(rb"SET\s+(?:@saved_cs_client\s*=\s*@@character_set_client|character_set_client\s*=\s*\w+)"
                      rb"\s*(?:\*/)?\s*;", re.I)
_CS_RESTORE = re.compile(rb"SET\s+character_set_client\s*=\s*@saved_cs_client\s*(?:\*/)?\s*;", re.I)
_DATA = re.compile(rb"(?:(?:INSERT|REPLACE)\s+(?:(?:IGNORE|LOW_PRIORITY|DELAYED|HIGH_PRIORITY)\s+)*INTO|"
                   rb"LOCK\s+TABLES|ALTER\s+TABLE)\s+(?:" + _ID + rb"\s*\.\s*)?" + _ID, re.I)
_KEYS = re.compile(rb"ALTER\s+TABLE\s+\S+\s+(?:DISABLE|ENABLE)\s+KEYS", re.I)
# --no-autocommit wraps the data in SET @OLD_AUTOCOMMIT=@@AUTOCOMMIT, @@AUTOCOMMIT=0 ... COMMIT; SET AUTOCOMMIT=@OLD_AUTOCOMMIT
_SECTION_ALSO = re.compile(rb"(?:UNLOCK\s+TABLES|COMMIT|SET\s+(?:@OLD_AUTOCOMMIT\s*=\s*@@AUTOCOMMIT\s*,\s*)?"
                           rb"(?:@@)?autocommit\s*=\s*(?:[01]|@OLD_AUTOCOMMIT))\s*;", re.I)
# A section's LOCK TABLES t WRITE also needs every table naming t by foreign key locked, on MariaDB
# even with the checks off: a child created by another client meanwhile makes the next INSERT fail
# (ERROR 1100). The locks only spare MyISAM key flushes, which DISABLE KEYS mostly does too.
_LOCKS = re.compile(rb"(?:UN)?LOCK\s+TABLES\b", re.I)
_DATABASE = re.compile(rb"(CREATE|DROP)\s+(?:DATABASE|SCHEMA)\b", re.I)
_USE = re.compile(rb"USE\s+" + _ID + rb"\s*;", re.I)
# Left in dump order for the one client that runs after the tables: session settings, views and
# their placeholders (mysqldump's are CREATE TABLE inside /*!50001), routines, events, triggers.
_AFTER = re.compile(rb"(?:SET\b|DROP\s+(?:TABLE\s+IF\s+EXISTS|VIEW|FUNCTION|PROCEDURE|EVENT|TRIGGER)\b|"
                    rb"CREATE\s+(?:OR\s+REPLACE\s+)?(?:VIEW|ALGORITHM|DEFINER|SQL\s+SECURITY)\b|"
                    rb"ALTER\s+DATABASE\b|UNLOCK\s+TABLES|COMMIT\b|CHANGE\s+(?:MASTER|REPLICATION)|"
                    rb"START\s+(?:SLAVE|REPLICA))", re.I)
_REPLICATION = re.compile(rb"(?:CHANGE\s+(?:MASTER|REPLICATION\s+SOURCE)\s+TO|START\s+(?:SLAVE|REPLICA)|"
                          rb"SET\s+(?:GLOBAL\s+|@@GLOBAL\.)(?:gtid_slave_pos|GTID_PURGED))", re.I)
_HEADER = re.compile(rb"(?:SET\b|CHANGE\s+(?:MASTER|REPLICATION)|START\s+(?:SLAVE|REPLICA))", re.I)


class Unsplittable(Exception):
    """The dump holds something the splitter does not understand; the message says what and where."""


@dataclass
class Section:
    """One table's statements: [start, end) of the file, from line `line` on."""
    db: str
    table: str
    start: int
    end: int
    line: int
    drops: bool   # it begins with DROP TABLE IF EXISTS (a half-loaded table is replaced by it)
    locks: list[tuple[int, int]] = field(default_factory=list)   # its LOCK/UNLOCK TABLES: left out

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class Layout:
    header: tuple[int, int]                                         # session SETs every client runs first
    databases: list[tuple[int, int, bool]] = field(default_factory=list)   # (start, end, is DROP DATABASE)
    sections: list[Section] = field(default_factory=list)
    after: list[tuple[int, int]] = field(default_factory=list)     # everything else, in dump order
    replication: list[tuple[int, int]] = field(default_factory=list)   # CHANGE MASTER, GTID_PURGED...: left out
    size: int = 0


@dataclass
class _Item:
    start: int
    end: int
    line: int
    head: bytes        # the statement's first bytes, comments and version-comment marks removed
    delimited: bool = False
    versioned: bool = False   # inside /*!NNNNN ... */: mysqldump's view placeholders are CREATE TABLEs there


def _name(raw: bytes) -> str:
    if raw.startswith(b"`"):
        raw = raw[1:-1].replace(b"``", b"`")
    return raw.decode("utf-8", "replace")


def _item(start: int, end: int, line: int, text: bytes, delimited: bool = False) -> _Item:
    if delimited:
        return _Item(start, end, line, b"", True)
    text = _PLAIN_COMMENT.sub(b"", text.lstrip())
    head = _VERSIONED.sub(b"", text, count=1)
    return _Item(start, end, line, head, False, len(head) != len(text))


def _in_literal(line: bytes, quoted: bool) -> bool:
    """Whether a literal is still open after `line`. Without a backslash each quote opens or
    closes one ('' closes and reopens): counting them is one C-level pass, and a dump has
    millions of row lines."""
    if b"\\" not in line:
        return quoted ^ (line.count(b"'") % 2 == 1)
    return _quotes(line, quoted)[1]


def _items(fh: BinaryIO) -> Iterator[_Item]:
    """The dump's statements (DELIMITER blocks as one), with their byte ranges; comments and
    blank lines between statements are not items: they go with whatever range holds them. A
    line ending in ';' inside a literal (a raw newline in a hand-made dump) ends nothing."""
    offset = line_no = 0
    start = first_line = -1
    head = b""
    delimited = quoted = False
    for line in fh:
        line_no += 1
        end = offset + len(line)
        if start < 0:
            bare = line.strip()
            if bare and not bare.startswith((b"--", b"#")):
                start, first_line, head = offset, line_no, line[:300]
                delimited = bool(_DELIM_START.match(line))
                quoted = False if delimited else _in_literal(line, False)
                if bare.startswith(b"/*M!999999"):   # the client's sandbox-mode command: no ';'
                    yield _Item(start, end, line_no, b"SET")
                    start = -1
                elif not delimited and not quoted and bare.endswith(b";"):
                    yield _item(start, end, first_line, head)
                    start = -1
        else:
            if len(head) < 300:
                head += line[:300]
            if not delimited:
                quoted = _in_literal(line, quoted)
            if (_DELIM_END.match(line) if delimited else not quoted and line.rstrip().endswith(b";")):
                yield _item(start, end, first_line, head, delimited)
                start = -1
        offset = end
    if start >= 0:
        raise Unsplittable(f"the statement at line {first_line} does not end (no ';' before the end of the file)")


def split(fh: BinaryIO, named_db: str | None = None) -> Layout:
    """Describe the dump read from `fh` (positioned at its start) as ranges; raises Unsplittable."""
    items = _items(fh)
    layout = Layout(header=(0, 0))
    cursor = 0
    db = named_db
    seen: set[tuple[str, str]] = set()
    late_drops: list[tuple[str | None, str, int]] = []   # DROP TABLEs left for after the tables (views')
    pending: _Item | None = None       # DROP TABLE / character-set SETs that may open a table section
    dropped: str | None = None
    section: Section | None = None
    in_header = True

    def settle(upto: int) -> None:
        nonlocal cursor
        if upto > cursor:
            if layout.after and layout.after[-1][1] == cursor:
                layout.after[-1] = (layout.after[-1][0], upto)
            else:
                layout.after.append((cursor, upto))
        cursor = max(cursor, upto)

    for item in items:
        head = item.head
        if not item.delimited and _REPLICATION.match(head):
            layout.replication.append((item.start, item.end))
        if in_header:
            if not item.delimited and _HEADER.match(head) and not _CS_SAVE.match(head):
                layout.header = (0, item.end)
                cursor = item.end
                continue
            in_header = False
        if section is not None:
            if _belongs(item, head, section):
                section.end = item.end
                if _LOCKS.match(head):
                    section.locks.append((item.start, item.end))
                continue
            layout.sections.append(section)
            cursor = section.end
            section = None
        if not item.delimited:
            created = None if item.versioned else _CREATE_TABLE.match(head)
            if created:
                table = _name(created[1])
                if db is None:
                    raise Unsplittable(f"table {table} at line {item.line} comes before any USE: its database is unknown")
                if dropped is not None and dropped != table:
                    raise Unsplittable(f"line {item.line} creates {table} right after dropping {dropped}")
                if (db, table) in seen:
                    raise Unsplittable(f"table {db}.{table} is created twice (again at line {item.line})")
                seen.add((db, table))
                begin = pending or item
                settle(begin.start)
                section = Section(db, table, begin.start, item.end, begin.line, dropped is not None)
                pending, dropped = None, None
                continue
            drop = _DROP_TABLE.match(head)
            if drop:
                if pending is not None and dropped is not None:
                    late_drops.append((db, dropped, pending.line))
                pending, dropped = item, _name(drop[1])
                continue
            if _CS_SAVE.match(head):
                pending = pending or item
                continue
        if dropped is not None:
            late_drops.append((db, dropped, pending.line))
        pending, dropped = None, None
        if item.delimited:
            continue   # routines, triggers, events: after the tables
        used = _USE.match(head)
        if used:
            db = _name(used[1])
            continue
        if _DATABASE.match(head):
            settle(item.start)
            layout.databases.append((item.start, item.end, head[:4].upper() == b"DROP"))
            cursor = item.end
            continue
        if _AFTER.match(head) or (item.versioned and _CREATE_TABLE.match(head)):
            continue
        shown = head[:80].decode("utf-8", "replace").split("\n")[0]
        raise Unsplittable(f"line {item.line} ({shown}) is not part of a table's section and may change data")
    if section is not None:
        layout.sections.append(section)
        cursor = section.end
    layout.size = fh.tell()
    settle(layout.size)
    if not layout.sections:
        raise Unsplittable("it holds no table sections (DROP/CREATE TABLE followed by its data)")
    for where, table, line in late_drops:
        if (where, table) in seen:
            raise Unsplittable(f"line {line} drops table {table} outside its section: run after the tables, it would drop it")
    return layout


def _belongs(item: _Item, head: bytes, section: Section) -> bool:
    """`item` is one of `section`'s own statements: its data, locks, keys or character set."""
    if item.delimited:
        return False
    if _CS_RESTORE.match(head) or _SECTION_ALSO.match(head):
        return True
    data = _DATA.match(head)
    if not data or _name(data[2]) != section.table or (data[1] is not None and _name(data[1]) != section.db):
        return False
    return not head.upper().startswith(b"ALTER") or bool(_KEYS.match(head))
