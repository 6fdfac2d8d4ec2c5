"""Read what a mysqldump/mariadb-dump file holds without executing it: databases, tables with
columns and row counts, and the binlog coordinates the dump was taken at.

Dumps can be many GB and their literals may hold invalid UTF-8, so the file is streamed as bytes
and only identifiers and comments are ever decoded.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from restore.errors import SnapshotError
from restore.plan.foreign_keys import ForeignKey
from restore.plan.foreign_keys import parse as parse_foreign_keys
from restore.plan.physical import is_backup_dir


@dataclass
class ColumnInfo:
    name: str
    definition: str
    unsigned: bool
    generated: bool


@dataclass
class TableInfo:
    db: str
    name: str
    columns: list[ColumnInfo] = field(default_factory=list)
    rows: int = 0
    has_primary_key: bool = False
    foreign_keys: list[ForeignKey] = field(default_factory=list)   # its FOREIGN KEY ... REFERENCES clauses


@dataclass
class Snapshot:
    path: str
    flavor: str | None = None
    databases: list[str] = field(default_factory=list)
    tables: dict[tuple[str, str], TableInfo] = field(default_factory=dict)
    binlog_file: str | None = None
    binlog_pos: int | None = None
    gtid: str | None = None
    coordinates_line: int | None = None
    named_db: str | None = None
    backup_id: str | None = None   # a physical backup directory (restore.plan.physical): its uuid


_STR = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'", re.S)  # unrolled: no per-byte alternation
_NOT_MARKS = bytes(b for b in range(256) if b not in b"'(")
_NOT_ESCAPES = bytes(b for b in range(256) if b not in b"'(\\0nrZ\"")
_ESCAPED = bytes.maketrans(b'0nrZ"', b"xxxxx")
_STMT_END = re.compile(rb";[ \t\r]*\n")
_BLOCK = 1 << 22
_ID = rb"`((?:[^`]|``)+)`"
_INSERT = re.compile(rb"(?:INSERT|REPLACE)\s+(?:[A-Z_]+\s+)*?INTO\s+(?:" + _ID + rb"\s*\.\s*)?" + _ID
                     + rb"\s*(?:\((?:[^`)]|`(?:[^`]|``)*`)*\)\s*)?VALUES\b", re.I)  # (column list)
_CREATE_TABLE = re.compile(rb"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _ID + rb"\s*\(", re.I)
_CREATE_DB = re.compile(rb"CREATE\s+(?:DATABASE|SCHEMA)\s+[^`;]*" + _ID, re.I)
_USE = re.compile(rb"USE\s+" + _ID + rb"\s*;", re.I)
_COLUMN = re.compile(rb"\s+" + _ID + rb"\s+(.*?),?\s*$", re.S)
_TYPE = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(?:\s*\((?:'[^'\\]*(?:\\.[^'\\]*)*'|[^()'])*\))?"
                   rb"(?:\s+(?:unsigned|signed|zerofill))*", re.I | re.S)
_GENERATED = re.compile(
    rb"\bGENERATED\s+ALWAYS\s+AS\s*\(|^\s*(?:(?:CHARACTER\s+SET|CHARSET|COLLATE)\s+\w+\s*)*AS\s*\(", re.I)
_CHANGE = re.compile(rb"(?:--\s*)?CHANGE\s+(?:MASTER|REPLICATION\s+SOURCE)\s+(?:'[^']*'\s+)?TO\b", re.I)
_LOG_FILE = re.compile(rb"\b(?:MASTER|SOURCE)_LOG_FILE\s*=\s*'((?:[^'\\]|\\.|'')*)'", re.I)
_LOG_POS = re.compile(rb"\b(?:MASTER|SOURCE)_LOG_POS\s*=\s*(\d+)", re.I)
_SLAVE_POS = re.compile(rb"(?:--\s*)?SET\s+(?:GLOBAL\s+|@@GLOBAL\.)gtid_slave_pos\s*=\s*'([^']*)'", re.I)
_PURGED_START = re.compile(rb"(?:--\s*|/\*\s*)?SET\s+@@GLOBAL\.GTID_PURGED\s*=", re.I)
_PURGED = re.compile(rb"GTID_PURGED\s*=\s*(?:/\*!80000\s*'\+'\s*\*/\s*)?'([^']*)'", re.I)
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz", b"BZh": "bzip2"}
_DUMP_HINT = "pass the .sql file written by mysqldump/mariadb-dump"
_CUT_HINT = "use a complete dump (check that the dump finished and that the copy is whole)"


def _name(raw: bytes) -> str:
    return raw.replace(b"``", b"`").decode("utf-8", "replace")


def _count(data: bytes, in_quote: bool) -> tuple[int, bool]:
    """Row tuples begun in a stretch of INSERT values, and whether it ends inside a literal.

    Dump tools write no "(" outside literals except the one opening each row tuple, so this
    counts "(" outside quotes. Each step is one C-level pass over the bytes: a Python loop per
    literal would take minutes on a GB dump.
    """
    if b"\\" in data:
        # Dump tools escape only \0 \n \r \Z \" \\ \', so keeping those letters (as "x") keeps each
        # backslash next to the byte it escapes. Only backslashes right before a quote matter, and
        # pairs in a run cancel out (runs longer than one before a quote are rare).
        marks = data.translate(_ESCAPED, _NOT_ESCAPES)
        if b"\\\\'" in marks:
            marks = marks.replace(b"\\\\", b"")
        marks = marks.replace(b"\\'", b"").translate(None, b"x\\")
    else:
        marks = data.translate(None, _NOT_MARKS)  # just the quotes and "(", in order
    if b"'" not in marks:
        return (0 if in_quote else len(marks)), in_quote
    parts = marks.replace(b"''", b"").split(b"'")  # adjacent quotes enclose nothing
    return sum(map(len, parts[1::2] if in_quote else parts[::2])), in_quote ^ (len(parts) % 2 == 0)


class _Reader:
    """What the lines outside INSERT statements say, one line at a time."""

    def __init__(self, path: str, database: str | None) -> None:
        self.path, self.database, self.db = path, database, database
        self.snap = Snapshot(path=path, named_db=database)
        self.used: list[str] = []  # databases the dump itself names, in order
        self.table: TableInfo | None = None  # inside its CREATE TABLE
        self.table_line, self.table_closed, self.delimiter_line, self.lineno = 0, False, 0, 0
        self.gtid_buf: bytes | None = None  # inside a GTID_PURGED value
        self.gtid_line, self.seen_data, self.completed = 0, False, False

    def error(self, message: str, hint: str, line: int | None = None) -> SnapshotError:
        where = f"{self.path}:{line or self.lineno}"
        return SnapshotError(f"{where}: {message}", hint=hint, where=where)

    def use(self, raw: bytes) -> None:
        if (name := _name(raw)) in self.used:
            return
        self.used.append(name)
        if self.database is not None and (len(self.used) > 1 or name != self.database):
            raise self.error(
                f"you named the database {self.database!r} but the dump selects its own: "
                + ", ".join(repr(n) for n in self.used),
                hint="name the database only for a dump taken without --databases/--all-databases: "
                     f"pass --snapshot {self.path}, or --snapshot DB={self.path} with the name it holds")

    def current_db(self) -> str:
        if self.db is None:
            raise self.error("the dump does not say which database its tables belong to (it has no "
                             "USE statement: it was taken without --databases)",
                             hint=f"name the database: --snapshot DB={self.path}")
        return self.db

    def line(self, line: bytes) -> None:
        if self.table is not None:
            self.table_line_(line)
        elif self.gtid_buf is not None:
            self.gtid_more(line)
        elif self.delimiter_line:  # routines, triggers and events: nothing to count in there
            if line.strip().upper() == b"DELIMITER ;":
                self.delimiter_line = 0
        elif line.startswith(b"--"):
            if line.startswith(b"-- Dump completed"):
                self.completed = True
            elif line.startswith((b"-- MariaDB dump", b"-- MySQL dump")):
                # MariaDB before 10.4 still called its tool "MySQL dump", with "-MariaDB" in the version.
                self.snap.flavor = self.snap.flavor or ("mariadb" if b"MariaDB" in line else "mysql")
                self.completed = False  # dumps joined with cat: each one must be complete
            elif b"CHANGE" in line or b"GTID" in line or b"gtid" in line:
                self.coordinates(line)
        elif line.startswith(b"CREATE"):
            if (m := _CREATE_TABLE.match(line)) is not None:
                self.table = TableInfo(db=self.current_db(), name=_name(m.group(1)))
                self.table_line, self.seen_data = self.lineno, True
                self.table_closed = line.rstrip().endswith(b";")  # all on one line: hand-written
                if self.table_closed:
                    self.table.foreign_keys = parse_foreign_keys(line.decode("utf-8", "replace"), self.table.db,
                                                                 self.table.name)
                    self.table_line_(line)
            elif (m := _CREATE_DB.match(line)) is not None:
                self.use(m.group(1))
        elif line.startswith(b"USE"):
            if (m := _USE.match(line)) is not None:
                self.use(m.group(1))
                self.db = _name(m.group(1))
        elif line.startswith(b"DELIMITER"):
            if line.split()[1:2] != [b";"]:
                self.delimiter_line = self.lineno
        elif line.startswith(b"CHANGE") or (line.startswith((b"SET", b"/*")) and (
                b"GTID_PURGED" in line or b"gtid_slave_pos" in line)):
            self.coordinates(line)

    def coordinates(self, line: bytes) -> None:
        snap = self.snap
        if _CHANGE.match(line):
            f, p = _LOG_FILE.search(line), _LOG_POS.search(line)
            if f and p and snap.binlog_file is None:
                snap.binlog_file = f.group(1).replace(b"''", b"'").decode("utf-8", "replace")
                snap.binlog_pos, snap.coordinates_line = int(p.group(1)), self.lineno
        elif (m := _SLAVE_POS.match(line)) is not None:
            self.set_gtid(m.group(1), self.lineno)
        elif _PURGED_START.match(line):
            self.gtid_buf, self.gtid_line = b"", self.lineno
            self.gtid_more(line)

    def gtid_more(self, line: bytes) -> None:
        """Gather a GTID_PURGED value: mysqldump writes one server UUID per line."""
        assert self.gtid_buf is not None
        self.gtid_buf += re.sub(rb"^\s*--\s?", b"", line) if self.gtid_buf else line
        if (m := _PURGED.search(self.gtid_buf)) is not None:
            self.gtid_buf = None
            self.set_gtid(m.group(1), self.gtid_line)
        elif len(self.gtid_buf) > 1 << 24:
            raise self.error("a GTID_PURGED value never ends", _CUT_HINT, self.gtid_line)

    def set_gtid(self, raw: bytes, lineno: int) -> None:
        value = re.sub(rb"\s+", b"", raw).lstrip(b"+").decode("ascii", "replace")
        if value and self.snap.gtid is None:
            self.snap.gtid = value
            self.snap.coordinates_line = self.snap.coordinates_line or lineno

    def table_line_(self, line: bytes) -> None:
        table = self.table
        assert table is not None
        self.table_closed = self.table_closed or line.startswith(b")")
        if self.table_closed:
            # The ") ENGINE=..." line; partitioning clauses may follow on further lines.
            if line.rstrip().endswith(b";"):
                self.snap.tables[(table.db, table.name)] = table
                self.table = None
        elif (m := _COLUMN.match(line)) is not None:
            rest = m.group(2)
            t = _TYPE.match(rest)
            definition = t.group(0) if t else b""
            table.columns.append(ColumnInfo(
                name=_name(m.group(1)), definition=definition.decode("utf-8", "replace"),
                unsigned=bool(re.search(rb"\bunsigned\b", _STR.sub(b"", definition), re.I)),
                generated=bool(_GENERATED.search(_STR.sub(b"''", rest[len(definition):])))))
            table.has_primary_key |= b"PRIMARY KEY" in _STR.sub(b"''", rest).upper()
        elif line.lstrip().upper().startswith(b"PRIMARY KEY"):
            table.has_primary_key = True
        elif b"FOREIGN KEY" in line.upper():
            # mariadb-dump/mysqldump: "  CONSTRAINT `fk` FOREIGN KEY (`x`) REFERENCES `parent` (`id`) ON DELETE CASCADE,"
            table.foreign_keys += parse_foreign_keys(line.decode("utf-8", "replace"), table.db, table.name)

    def insert_table(self, m: re.Match[bytes]) -> TableInfo:
        db = _name(m.group(1)) if m.group(1) else self.current_db()
        key = (db, _name(m.group(2)))
        if key not in self.snap.tables:
            self.snap.tables[key] = TableInfo(db=db, name=key[1])
        self.seen_data = True
        return self.snap.tables[key]


class _Stream:
    """The lines of a file read in big blocks, so INSERT values can be counted many lines at a time."""

    def __init__(self, f: BinaryIO, first: bytes) -> None:
        self.f, self.buf, self.pos, self.lineno = f, first, 0, 0

    def line(self) -> bytes | None:
        parts = []  # a list: a line of many blocks is not copied over and over
        while (nl := self.buf.find(b"\n", self.pos)) < 0:
            parts.append(self.buf[self.pos:])
            self.buf, self.pos = self.f.read(_BLOCK), 0
            if not self.buf:
                break
        else:
            parts.append(self.buf[self.pos:nl + 1])
            self.pos = nl + 1
        line = b"".join(parts)
        if not line:
            return None
        self.lineno += 1
        return line

    def values(self, in_quote: bool) -> tuple[int, bool]:
        """Count row tuples up to the end of the current INSERT: (rows, whether its end was found)."""
        rows = 0
        while True:
            end = self.buf.rfind(b"\n", self.pos) + 1
            if end == 0:
                if len(self.buf) - self.pos < _BLOCK and (data := self.f.read(_BLOCK)):
                    self.buf, self.pos = self.buf[self.pos:] + data, 0
                    continue
                if (line := self.line()) is None:
                    return rows, False
                n, in_quote = _count(line, in_quote)
                rows += n
                if not in_quote and line[-16:].rstrip().endswith(b";"):
                    return rows, True
                continue
            # Whole lines only: a block boundary could split a backslash from the quote it escapes.
            p = self.pos
            while p < end:
                m = _STMT_END.search(self.buf, p, end)
                piece = self.buf[p:m.end() if m else end]
                n, in_quote = _count(piece, in_quote)
                rows += n
                self.lineno += piece.count(b"\n")
                p += len(piece)
                if m is not None and not in_quote:
                    self.pos = p
                    return rows, True
            self.pos = end


def read_snapshot(path: str, database: str | None = None) -> Snapshot:
    """Read a dump file (streamed, never executed) and describe what it holds.

    `database` names the database of a dump taken without --databases (which has no USE).
    """
    r = _Reader(path, database)
    ins: TableInfo | None = None  # the table of the INSERT on the previous line
    cut: tuple[TableInfo, int] | None = None  # the INSERT the file ends inside, and its line
    prefix, last = b"", 0
    try:
        f = open(path, "rb", buffering=0)
    except OSError as e:
        what = {FileNotFoundError: "no such file",
                IsADirectoryError: "is a directory, neither a dump file nor a mariadb-backup directory (it has no "
                                   "xtrabackup_checkpoints or mariadb_backup_checkpoints file)"}
        raise SnapshotError(f"{path}: {what.get(type(e), f'cannot open: {e.strerror}')}", where=path,
                            hint="check the path of the dump file or backup directory and its permissions") from None
    with f:
        try:
            first = f.read(_BLOCK)
            kind = next((k for magic, k in _MAGIC.items() if first.startswith(magic)), None)
            if kind is not None:
                raise SnapshotError(f"{path}: is {kind}-compressed, not a SQL dump", where=f"{path}:1",
                                    hint="decompress it first and pass the .sql file")
            if first.startswith(b"XBSTCK01"):
                raise SnapshotError(f"{path}: is a mbstream/xbstream archive of a physical backup, not a SQL dump",
                                    where=f"{path}:1", hint=f"extract it into a directory (mbstream -x -C DIR < "
                                                            f"{path}) and pass --snapshot DIR")
            if first.startswith(b"\xfebin") or b"\x00" in first[:65536]:
                raise SnapshotError(f"{path}: is a binary file, not a SQL dump"
                                    + (" (it looks like a binlog)" if first.startswith(b"\xfebin") else ""),
                                    hint=_DUMP_HINT, where=f"{path}:1")
            s = _Stream(f, first)
            while (line := s.line()) is not None:
                r.lineno = s.lineno
                if r.table is None and r.gtid_buf is None and not r.delimiter_line \
                        and line.startswith((b"INSERT", b"REPLACE")):
                    start = -1
                    if ins is not None and line.startswith(prefix):  # --skip-extended-insert: many alike
                        start = len(prefix)
                    elif (m := _INSERT.match(line)) is not None:
                        ins, prefix, start = r.insert_table(m), line[:m.end()], m.end()
                    if ins is not None and start >= 0:
                        n, in_quote = _count(line[start:], False)
                        ins.rows += n
                        if in_quote or not line[-16:].rstrip().endswith(b";"):
                            n, done = s.values(in_quote)
                            ins.rows += n
                            if not done:
                                cut = (ins, r.lineno)
                                break
                        continue
                ins = None
                r.line(line)
        except OSError as e:
            raise r.error(f"read error: {e.strerror}", "check the disk and the file") from None
        last = s.lineno
    snap, truncated = r.snap, "the dump looks truncated: it ends inside"
    for inside, what, at in [
            (cut, f"the INSERT into `{cut[0].name}`" if cut else "", cut[1] if cut else 0),
            (r.table, f"CREATE TABLE `{r.table.name}`" if r.table else "", r.table_line),
            (r.gtid_buf is not None, "the GTID_PURGED value", r.gtid_line),
            (r.delimiter_line, "a DELIMITER block", r.delimiter_line)]:
        if inside:
            raise r.error(f"{truncated} {what} begun at line {at} (its last line is {last})", _CUT_HINT, at)
    if not r.seen_data and snap.flavor is None and not r.used:
        raise SnapshotError(f"{path}: is not a SQL dump (no CREATE TABLE, INSERT or dump header found)",
                            hint=_DUMP_HINT, where=path)
    if snap.flavor is not None and not r.completed:
        raise r.error(f"the dump looks truncated: its last line is {last} and the final "
                      "'-- Dump completed' line is missing", _CUT_HINT, last)
    snap.databases = r.used or [r.current_db()]  # raises when no database was named either
    return snap


def read_snapshots(args: Sequence[str]) -> list[Snapshot]:
    """`FILE` or `DB=FILE` (the latter for dumps taken without --databases); `DIR` or `DB[,DB...]=DIR`
    for a mariadb-backup/xtrabackup directory (the databases narrow what is restored from it)."""
    out = []
    for arg in args:
        db, sep, path = arg.partition("=")
        if not sep or os.path.exists(arg):
            db, path = None, arg
        if is_backup_dir(path):
            # Imported here: describing a physical backup starts a server, which a dump never needs.
            from restore.plan.physical_base import read_physical
            out.append(read_physical(path, db))
        else:
            out.append(read_snapshot(path, db))
    if len(out) > 1 and (physical := next((s for s in out if s.backup_id), None)) is not None:
        raise SnapshotError(f"{physical.path} is a physical backup and cannot be combined with other snapshots",
                            where=physical.path,
                            hint="a physical backup is the whole server's base: pass it alone (DB,DB=DIR narrows it)")
    return out
