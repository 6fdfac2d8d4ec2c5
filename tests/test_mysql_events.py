"""MySQL 8 binlog framing, built byte by byte (no MySQL server can run here).

Covers what differs from MariaDB: the server version in the format description, uuid:n GTID
events followed by a BEGIN query, v2 row events with their extra-data block, GTID_PURGED sets,
and compressed transactions (TRANSACTION_PAYLOAD, zstd), walked as the events they hold.
"""
from __future__ import annotations

import struct
import zlib

import pytest

from restore.binlog import events as be
from restore.binlog.files import BinlogDirectory
from restore.api import make_plan, read_snapshots
from restore.errors import BinlogError, PlanError
from restore.binlog.gtid import GtidSet
from restore.plan.destructive import DestructiveRules
from restore.binlog.walker import QueryStep, RowsStep, StopAt, TxBegin, TxEnd, Walker

UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
# A mysqldump of shop.items with its two rows, taken after UUID:1.
SHOP_DUMP = ("-- MySQL dump 10.13  Distrib 8.0.36\n"
             f"SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '{UUID}:1';\n"
             "CREATE DATABASE `shop`;\nUSE `shop`;\n"
             "CREATE TABLE `items` (\n  `id` int NOT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n);\n"
             "INSERT INTO `items` VALUES (1,'one'),(2,'two');\n-- Dump completed on 2023-08-19\n")
POST_HEADER = {be.QUERY: 13, be.ROTATE: 8, be.FORMAT_DESCRIPTION: 98, be.XID: 0, be.TABLE_MAP: 8,
               be.WRITE_ROWS_V2: 10, be.UPDATE_ROWS_V2: 10, be.DELETE_ROWS_V2: 10, be.MYSQL_GTID: 42,
               be.ANONYMOUS_GTID: 42, be.PREVIOUS_GTIDS: 0, be.TRANSACTION_PAYLOAD: 40}


class BinlogWriter:
    def __init__(self) -> None:
        self.data = bytearray(be.MAGIC)
        self.ts = 1_692_400_000

    def event(self, etype: int, body: bytes, flags: int = 0) -> int:
        pos = len(self.data)
        size = be.HEADER_LEN + len(body) + 4
        header = struct.pack("<IBIIIH", self.ts, etype, 1, size, pos + size, flags)
        raw = header + body
        self.data += raw + struct.pack("<I", zlib.crc32(raw))
        self.ts += 1
        return pos

    def inner(self, build) -> bytes:
        """What `build(self)` writes, as the events of a compressed transaction hold them: no CRC32,
        end_log_pos 0. Nothing is added to the file."""
        mark = len(self.data)
        build(self)
        written, out, at = bytes(self.data[mark:]), b"", 0
        del self.data[mark:]
        while at < len(written):
            size = struct.unpack_from("<I", written, at + 9)[0]
            event = bytearray(written[at:at + size - 4])
            event[9:17] = struct.pack("<II", size - 4, 0)
            out += event
            at += size
        return out

    def payload(self, events: bytes, compressed: bytes | None = None, compression: int = 0) -> int:
        """A TRANSACTION_PAYLOAD event holding `events` (zstd unless `compression` is 255, none)."""
        import zstandard
        data = events if compression == 255 else (compressed if compressed is not None
                                                   else zstandard.ZstdCompressor().compress(events))

        def field(kind: int, value: int) -> bytes:
            assert value < 251 or value < 1 << 16
            packed = bytes([value]) if value < 251 else b"\xfc" + struct.pack("<H", value)
            return bytes([kind, len(packed)]) + packed
        header = field(2, compression) + (field(3, len(events)) if compression != 255 else b"") + field(1, len(data))
        return self.event(be.TRANSACTION_PAYLOAD, header + b"\0" + data)

    def fde(self) -> None:
        version = b"8.0.36".ljust(50, b"\0")
        post = bytes(POST_HEADER.get(t, 0) for t in range(1, 42))
        self.event(be.FORMAT_DESCRIPTION, struct.pack("<H", 4) + version + struct.pack("<IB", 0, 19) + post + b"\x01")

    def gtid(self, gno: int) -> int:
        sid = bytes.fromhex(UUID.replace("-", ""))
        return self.event(be.MYSQL_GTID, b"\x01" + sid + struct.pack("<q", gno) + b"\x02" + b"\0" * 16)

    def query(self, sql: str, db: str = "shop") -> int:
        status = b"\x00" + struct.pack("<I", 0) + b"\x01" + struct.pack("<Q", 0) + b"\x04" + struct.pack("<HHH", 45, 45, 8)
        head = struct.pack("<IIBHH", 7, 0, len(db), 0, len(status))
        return self.event(be.QUERY, head + status + db.encode() + b"\0" + sql.encode())

    def table_map(self, table_id: int, db: str, table: str) -> int:
        # two columns: INT, VARCHAR(20) (metadata: max length 80 bytes)
        body = table_id.to_bytes(6, "little") + b"\x01\x00"
        body += bytes([len(db)]) + db.encode() + b"\0" + bytes([len(table)]) + table.encode() + b"\0"
        body += b"\x02" + bytes([3, 15]) + b"\x02" + struct.pack("<H", 80) + b"\x00"
        return self.event(be.TABLE_MAP, body)

    def write_rows(self, table_id: int, rows: list[tuple[int, str]], etype: int = be.WRITE_ROWS_V2) -> int:
        body = table_id.to_bytes(6, "little") + struct.pack("<H", 1) + struct.pack("<H", 2)  # STMT_END, no extra
        body += b"\x02" + b"\x03"
        for ident, text in rows:
            body += b"\x00" + struct.pack("<i", ident) + bytes([len(text)]) + text.encode()
        return self.event(etype, body)

    def xid(self) -> int:
        return self.event(be.XID, struct.pack("<Q", 99))


def _binlog(tmp_path, build) -> tuple[BinlogDirectory, dict]:
    w = BinlogWriter()
    w.fde()
    w.event(be.PREVIOUS_GTIDS, struct.pack("<Q", 0))
    marks = build(w)
    (tmp_path / "binlog.000001").write_bytes(bytes(w.data))
    return BinlogDirectory(tmp_path), marks


def _transactions(w: BinlogWriter, first_gno: int = 1) -> dict:
    marks = {}
    marks["tx1"] = w.gtid(first_gno)
    w.query("BEGIN")
    w.table_map(108, "shop", "items")
    w.write_rows(108, [(1, "one"), (2, "two")])
    w.xid()
    marks["tx2"] = w.gtid(first_gno + 1)
    w.query("BEGIN")
    w.table_map(108, "shop", "items")
    w.write_rows(108, [(3, "three")])
    w.xid()
    marks["drop"] = w.gtid(first_gno + 2)
    marks["drop_query"] = w.query("DROP TABLE `items` /* generated by server */")
    return marks


def test_mysql_framing_walks_into_transactions(tmp_path):
    binlogs, marks = _binlog(tmp_path, _transactions)
    steps = list(Walker(binlogs.events(), count=True).steps())
    begins = [s for s in steps if isinstance(s, TxBegin)]
    assert [str(b.gtid) for b in begins] == [f"{UUID}:1", f"{UUID}:2", f"{UUID}:3"]
    assert [b.pos for b in begins] == [marks["tx1"], marks["tx2"], marks["drop"]]
    rows = [s for s in steps if isinstance(s, RowsStep)]
    assert [r.rows for r in rows] == [2, 1] and all(r.statement_end for r in rows)
    assert sum(isinstance(s, TxEnd) for s in steps) == 3
    ddl = [s for s in steps if isinstance(s, QueryStep)]
    assert len(ddl) == 1 and ddl[0].info.verb == "DROP TABLE"


def test_mysql_dump_gtid_purged_start_and_auto_stop(tmp_path):
    binlogs, marks = _binlog(tmp_path, _transactions)
    dump = tmp_path / "shop.sql"
    dump.write_text(SHOP_DUMP)
    plan = make_plan(read_snapshots([str(dump)]), binlogs)
    assert plan.databases["shop"].gtid == f"{UUID}:1" and plan.databases["shop"].file is None
    assert plan.transactions == 1                      # :1 is in the dump, :2 is replayed
    assert plan.tables["shop.items"].predicted == 3
    assert plan.stop is not None and plan.stop.gtid == f"{UUID}:3" and "DROP TABLE" in plan.stop.reason
    assert (plan.stop.file, plan.stop.pos) == ("binlog.000001", marks["drop_query"])


def test_mariadb_gtid_event_reads_its_flags_into_an_immutable_gtid():
    # Gtid is a named tuple (made once per transaction of every plan): each field in its place,
    # equal and hashable by value, printed as its text, and not to be changed.
    body = struct.pack("<QIB", 113680, 7, be.MARIADB_FL_STANDALONE | be.MARIADB_FL_PREPARED_XA) + b"\0" * 6
    ev = be.RawEvent("binlog.000001", 4, 0, be.MARIADB_GTID, 3, 0, b"\0" * be.HEADER_LEN + body + b"\0" * 4, True)
    gtid = be.parse_mariadb_gtid(ev)
    assert (gtid.text, gtid.domain, gtid.server, gtid.seq, gtid.uuid) == ("7-3-113680", 7, 3, 113680, "")
    assert gtid.standalone and gtid.xa
    assert f"{gtid}" == str(gtid) == "7-3-113680"
    assert gtid == be.parse_mariadb_gtid(ev) and len({gtid, be.parse_mariadb_gtid(ev)}) == 1
    with pytest.raises(AttributeError):
        gtid.seq = 1  # type: ignore[misc]
    plain = be.parse_mariadb_gtid(be.RawEvent("binlog.000001", 4, 0, be.MARIADB_GTID, 3, 0,
                                              b"\0" * be.HEADER_LEN + struct.pack("<QIB", 5, 0, 0) + b"\0" * 10, True))
    assert not plain.standalone and not plain.xa

@pytest.mark.parametrize("deleted, listed", [([(1, "one")], False), ([(1, "one"), (2, "two")], True)])
def test_one_event_statement_is_judged_only_when_it_could_be_a_candidate(tmp_path, deleted, listed):
    # A statement of one row event fewer than min_rows rows is passed over without keeping anything;
    # one that reaches min_rows is judged as before: emptying the table is a certain mass DELETE.
    def build(w: BinlogWriter) -> dict:
        w.gtid(2)
        w.query("BEGIN")
        w.table_map(108, "shop", "items")
        at = w.write_rows(108, deleted, etype=be.DELETE_ROWS_V2)
        w.xid()
        return {"delete": at}
    binlogs, marks = _binlog(tmp_path, build)
    dump = tmp_path / "shop.sql"
    dump.write_text(SHOP_DUMP)
    plan = make_plan(read_snapshots([str(dump)]), binlogs, rules=DestructiveRules(min_rows=2))
    assert plan.tables["shop.items"].deleted == (0 if listed else 1)   # a stop leaves its transaction out
    if listed:
        assert [(c.pos, c.severity) for c in plan.candidates] == [(marks["delete"], "certain")]
        assert plan.stop is not None and plan.stop.pos == marks["delete"] and "mass DELETE" in plan.stop.reason
    else:
        assert plan.candidates == [] and plan.stop is None and plan.transactions == 1

def test_gtid_sets_of_both_flavours():
    mysql = GtidSet.parse(f"{UUID}:1-5:7,\n{UUID.replace('3e', '4f', 1)}:1")
    assert mysql.contains(be.Gtid("", seq=5, uuid=UUID)) and not mysql.contains(be.Gtid("", seq=6, uuid=UUID))
    maria = GtidSet.parse("0-1-100,1-2-7")
    assert maria.contains(be.Gtid("", domain=0, seq=100)) and not maria.contains(be.Gtid("", domain=1, seq=8))


def _compressed(w: BinlogWriter, marks: dict, gno: int, rows: list[tuple[int, str]], **kw) -> None:
    marks.setdefault("gtids", []).append(w.gtid(gno))

    def tx(w: BinlogWriter) -> None:
        w.query("BEGIN")
        w.table_map(108, "shop", "items")
        w.write_rows(108, rows)
        w.xid()
    marks.setdefault("payloads", []).append(w.payload(w.inner(tx), **kw))


@pytest.mark.parametrize("compression, streamed", [(0, False), (0, True), (255, False)])
def test_transaction_payload_is_walked_as_its_events(tmp_path, monkeypatch, compression, streamed):
    """binlog_transaction_compression=ON: the GTID event, then one TRANSACTION_PAYLOAD holding BEGIN,
    the table map, the rows and the XID. Their position is the payload's; the transaction ends after it.
    `streamed`: as a transaction too large to decompress at once, read 7 bytes at a time."""
    if streamed:
        monkeypatch.setattr(be, "_PAYLOAD_WHOLE", 0)
        monkeypatch.setattr(be, "_PAYLOAD_READ", 7)
    def build(w: BinlogWriter) -> dict:
        marks: dict = {}
        _compressed(w, marks, 1, [(1, "one"), (2, "two")], compression=compression)
        _compressed(w, marks, 2, [(3, "three")], compression=compression)
        marks["end"] = len(w.data)
        return marks
    binlogs, marks = _binlog(tmp_path, build)
    steps = list(Walker(binlogs.events(), count=True).steps())
    begins = [s for s in steps if isinstance(s, TxBegin)]
    assert [b.pos for b in begins] == marks["gtids"]
    rows = [s for s in steps if isinstance(s, RowsStep)]
    assert [r.rows for r in rows] == [2, 1]
    assert [r.event.where for r in rows] == [f"binlog.000001:{p}" for p in marks["payloads"]]
    assert [r.table_map.pos for r in rows] == marks["payloads"]
    # The events carry a CRC32 again, as the file's others do (a BINLOG statement needs it).
    assert all(r.event.checksum and be.crc_ok(r.event.data) for r in rows)
    ends = [s.pos for s in steps if isinstance(s, TxEnd)]
    assert ends == [marks["gtids"][1], marks["end"]]


def test_damaged_payload_is_refused_naming_it(tmp_path):
    def build(w: BinlogWriter) -> dict:
        marks: dict = {}
        _compressed(w, marks, 1, [(1, "one")])
        _compressed(w, marks, 2, [(2, "two")], compressed=b"\x28\xb5\x2f\xfd" + b"\x00" * 20)  # a zstd frame that is not
        return marks
    binlogs, marks = _binlog(tmp_path, build)
    with pytest.raises(BinlogError) as err:
        list(Walker(binlogs.events()).steps())
    where = f"binlog.000001:{marks['payloads'][1]}"
    assert "the compressed transaction (TRANSACTION_PAYLOAD event) at position" in str(err.value), str(err.value)
    assert err.value.where == where and f"--stop-before {where}" in err.value.hint
    # ... and stopping before it ends the walk there.
    steps = list(Walker(binlogs.events(), stop_at=("binlog.000001", marks["payloads"][1])).steps())
    assert isinstance(steps[-1], StopAt) and steps[-1].event.pos == marks["payloads"][1]
    assert sum(isinstance(s, TxEnd) for s in steps) == 1


def _previous_gtids(ranges: dict[str, list[tuple[int, int]]]) -> bytes:
    """A PREVIOUS_GTIDS body: n_sids, then per uuid its 16 bytes and [start, end) intervals."""
    body = struct.pack("<Q", len(ranges))
    for uuid, rs in ranges.items():
        body += bytes.fromhex(uuid.replace("-", "")) + struct.pack("<Q", len(rs))
        body += b"".join(struct.pack("<qq", lo, hi + 1) for lo, hi in rs)
    return body


@pytest.mark.parametrize("purged, missing", [(f"{UUID}:1-3", None), (f"{UUID}:1", f"{UUID}:2-3")])
def test_mysql_gtid_purged_start_needs_a_file_reaching_back_to_it(tmp_path, purged, missing):
    """binlog.000002 (the first file given) says :1-3 were logged before it; a dump holding only :1
    would miss :2-3 and is refused, naming them."""
    w = BinlogWriter()
    w.fde()
    prev = w.event(be.PREVIOUS_GTIDS, _previous_gtids({UUID: [(1, 3)]}))
    _transactions(w, first_gno=4)
    (tmp_path / "binlog.000002").write_bytes(bytes(w.data))
    dump = tmp_path / "shop.sql"
    dump.write_text(
        "-- MySQL dump 10.13  Distrib 8.0.36\n"
        f"SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '{purged}';\n"
        "CREATE DATABASE `shop`;\nUSE `shop`;\n"
        "CREATE TABLE `items` (\n  `id` int NOT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n);\n"
        "-- Dump completed on 2023-08-19\n")
    snapshots, binlogs = read_snapshots([str(dump)]), BinlogDirectory(tmp_path)
    if missing is None:
        assert make_plan(snapshots, binlogs).transactions == 2
        return
    with pytest.raises(PlanError) as err:
        make_plan(snapshots, binlogs)
    assert err.value.where == f"binlog.000002:{prev}"
    assert missing in str(err.value) and "binlog.000002" in str(err.value), str(err.value)
    assert "copy the older binlog files" in err.value.hint
