"""Damaged binlogs without checksums never end in a traceback (issue 9, "Never a traceback").

A file written with binlog_checksum=NONE has nothing that shows flipped bytes before an event
stops decoding. Whatever the damage, `restore-bot plan` and `restore-bot restore` must end with
exit 0 (the damage decoded into something plausible) or 2 (refused, naming file and position),
never with a Python traceback. The inputs are real checksum-less binlogs: one set written here by a
MariaDB sandbox with --binlog-checksum=NONE, and files written by MySQL 5.0-5.5 and MariaDB 5.5/10.0
servers taken from the MariaDB test suite (Debian package mariadb-test-data, installed by ./dev setup;
tests/binlog_corpus.py, tests/corpus/SOURCES.md), mutated by hypothesis: byte flips, truncations,
splices. Without that package the tests fail, saying to run ./dev setup.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from restore.binlog import events as be
from restore.binlog.files import BinlogDirectory
from restore.mysql.sandbox import Sandbox
from tests.support import binlog_corpus as corpus
from tests.support.db import clean, dump, target_url

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server

# Checksum-less files of the corpus (their format description announces no checksum; servers
# before MySQL 5.6.1 / MariaDB 5.3 had none): set name -> (file under the corpus root, the
# databases its events use). Each becomes a set of one file, binlog.000001.
CORPUS = {
    "mysql-5.0.16": ("std_data/bug16266.000001", ["test"]),                    # statements, a trigger
    "mysql-5.0.86": ("std_data/binlog_transaction.000001", ["test", "mysql"]),  # BEGIN..COMMIT/ROLLBACK
    "mysql-5.1.37-rows": ("suite/binlog/std_data/write-full-row.binlog", ["test", "mysql"]),  # v1 row events
    "mysql-5.1.63": ("std_data/mdev-4645-binlog_none.binlog", ["test"]),
    "mysql-5.1.23-rc": ("suite/binlog/std_data/ver_5_1_23.001", ["test"]),     # rows, then LOAD DATA
    "mysql-5.5.17-truncated": ("std_data/bug11747416_32228_binlog.000001", ["test"]),
    "mariadb-5.5.36": ("std_data/mariadb-5.5-binlog.000001", ["test"]),
    "mariadb-10.0.11-rows": ("std_data/mdev6020-mysql-bin.000001", ["test"]),  # 1381 row transactions
}
# What plan says of each unmutated corpus set (tests/corpus/SOURCES.md documents the same).
CORPUS_PLAN = {
    "mysql-5.1.23-rc": 2,   # LOAD DATA in statement format at binlog.000001:1480: refused
}
_WHERE = re.compile(r"^binlog\.\d{6}:\d+$")
_SETTINGS = dict(derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class BinlogSet:
    name: str
    files: dict[str, bytes]     # binlog.00000N -> bytes
    snapshot: Path


def _mariadb_workload(conn) -> None:
    """Statements and rows of many kinds: each decoder gets its share of bytes to be damaged."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fz.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40), d DECIMAL(12,3), "
                    "ts DATETIME(6), b BLOB, e ENUM('a','b','c'), s SET('x','y'), bits BIT(10), j JSON, "
                    "f FLOAT, g DOUBLE, y YEAR, tm TIME(3), u BIGINT UNSIGNED, c CHAR(3))")
        for fmt in ("STATEMENT", "ROW", "STATEMENT", "ROW"):
            cur.execute(f"SET SESSION binlog_format={fmt}")
            cur.execute("SET @who := 'fuzz', @n := 42, @dd := 1.5")
            cur.execute("INSERT INTO fz.t (v, d, ts, b, e, s, bits, j, f, g, y, tm, u, c) VALUES "
                        "(CONCAT(@who, RAND(7)), 12.345, '2026-01-02 03:04:05.123456', x'00ff10', 'b', 'x,y', "
                        "b'1010101010', '{\"k\": [1, 2]}', 1.25, 2.5, 2026, '-01:02:03.456', 18446744073709551615, "
                        "'abc'), (@n, @dd, NULL, NULL, 'c', '', NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL)")
            cur.execute("INSERT INTO fz.t (v) VALUES (LAST_INSERT_ID())")
            cur.execute("UPDATE fz.t SET v = CONCAT(v, '!'), d = d + 1 WHERE id % 2 = 1")
            cur.execute("BEGIN")
            cur.execute("INSERT INTO fz.u VALUES (1, 'one'), (2, 'two') ON DUPLICATE KEY UPDATE w = VALUES(w)")
            cur.execute("DELETE FROM fz.u WHERE k = 2")
            cur.execute("COMMIT")
            cur.execute("FLUSH BINARY LOGS")
        cur.execute("ALTER TABLE fz.u ADD COLUMN extra INT DEFAULT 7")
        cur.execute("DELETE FROM fz.t WHERE id > 6")


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, BinlogSet]:
    """The checksum-less binlog sets to mutate: a MariaDB one written now, and the corpus's."""
    corpus.require()
    work = tmp_path_factory.mktemp("fuzz")
    out: dict[str, BinlogSet] = {}
    with Sandbox(binlog=True, binlog_format="MIXED", extra_args=["--binlog-checksum=NONE"]) as src:
        with src.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE fz")
            cur.execute("CREATE TABLE fz.u (k INT PRIMARY KEY, w VARCHAR(10)) ENGINE=InnoDB")
            snap = dump(src, work / "fz.sql", ["fz"])
            _mariadb_workload(conn)
        files = {p.name: p.read_bytes() for p in sorted(Path(src.binlog_dir).iterdir())
                 if re.fullmatch(r"binlog\.\d{6}", p.name)}
    assert all(len(data) < 100_000 for data in files.values())
    out["mariadb-nochecksum"] = BinlogSet("mariadb-nochecksum", files, snap)
    for name, (rel, dbs) in CORPUS.items():
        files = {"binlog.000001": corpus.path(rel).read_bytes()}
        out[name] = BinlogSet(name, files, corpus.synthetic_dump(work / f"{name}.sql", dbs))
    for s in out.values():
        first = s.files["binlog.000001"]
        size = be.parse_header(first, 4)[3]
        assert not be.parse_format_description(first[4:4 + size]).checksum, f"{s.name} has checksums"
    return out


def _run(*argv) -> tuple[int, dict, str]:
    """`restore-bot ARGV --json` in-process: (exit code, JSON document, stderr)."""
    from bot.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv] + ["--json"])
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    text = out.getvalue()
    doc = json.loads(text) if text.strip() else {}
    return code, doc, err.getvalue()


def _check(code: int, doc: dict, err: str, allowed=(0, 2)) -> None:
    assert code in allowed, (code, doc.get("error"), err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    if code == 2:
        error = doc["error"]
        assert error["hint"], error
        # Named by where, and said in the message too (a human reads the message, not where).
        assert _WHERE.match(error["where"]), error
        file, pos = error["where"].split(":")
        assert file in error["message"] and pos in error["message"], error


# -- mutations -------------------------------------------------------------------------------------

KINDS = ("field", "field", "flip", "truncate", "splice", "join")


@st.composite
def mutations(draw, names: list[str], kinds=KINDS):
    """What to do to which set, with the numbers that place it (see _mutate)."""
    return draw(st.sampled_from(names)), draw(st.sampled_from(kinds)), \
        draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4)), \
        draw(st.floats(0, 1)), draw(st.floats(0, 1)), draw(st.integers(1, 600)), draw(st.integers(0, 1 << 30))


def _mutate(sets: dict[str, BinlogSet], m) -> tuple[BinlogSet, dict[str, bytes], str]:
    name, kind, flips, a, b, length, pick = m
    s = sets[name]
    files = dict(s.files)
    victim = sorted(files)[pick % len(files)]
    data = bytearray(files[victim])
    other_set = sets[sorted(sets)[pick % len(sets)]]
    other = other_set.files[sorted(other_set.files)[pick // 7 % len(other_set.files)]]
    # Offsets past the 4-byte magic (a bad magic is a simple, tested refusal).
    at = 4 + int(a * (len(data) - 4))
    if kind == "field":
        # Bytes near an event's start: its header and the fixed fields its decoder reads first.
        starts = _event_starts(data)
        for where, mask in flips:
            pos = starts[int(where * len(starts))] + int(b * 48)
            if pos < len(data):
                data[pos] ^= mask
        what = f"flip fields of {victim} near {[starts[int(w * len(starts))] for w, _ in flips]}"
    elif kind == "flip":
        for where, mask in flips:
            data[4 + int(where * (len(data) - 4))] ^= mask
        what = f"flip {victim} at {[4 + int(w * (len(data) - 4)) for w, _ in flips]}"
    elif kind == "truncate":
        del data[at:]
        what = f"truncate {victim} at {at}"
    elif kind == "splice":
        start = int(b * len(other))
        data[at:at] = other[start:start + length]
        what = f"insert {length} bytes of another file at {victim}:{at}"
    else:
        start = 4 + int(b * (len(other) - 4))
        data[at:] = other[start:]
        what = f"join {victim}[:{at}] with another file from {start}"
    files[victim] = bytes(data)
    return s, files, what


def _event_starts(data: bytes | bytearray) -> list[int]:
    """Where each event of a binlog file starts (by the sizes in the headers)."""
    starts, pos = [], 4
    while pos + be.HEADER_LEN <= len(data):
        starts.append(pos)
        size = be.parse_header(data, pos)[3]
        if size < be.HEADER_LEN:
            break
        pos += size
    return starts or [4]


def _write(files: dict[str, bytes], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def _plan(s: BinlogSet, binlogs: Path, *extra) -> tuple[int, dict, str]:
    return _run("plan", "--snapshot", s.snapshot, "--binlogs", binlogs, "--stop-before", "end", *extra)


def _bad_column_count(data: bytes, ev: be.RawEvent) -> bytes:
    """`data` with the column count of its rows event `ev` off by one: the event no longer decodes."""
    at = ev.pos + be.HEADER_LEN + 8   # v1 rows event: table id, flags, then the column count
    if ev.type not in (be.WRITE_ROWS_V1, be.UPDATE_ROWS_V1, be.DELETE_ROWS_V1):
        at += 2 + int.from_bytes(data[at:at + 2], "little") - 2   # v2: its extra-data block
    out = bytearray(data)
    out[at] += 1
    return bytes(out)


def _bad_column_type(data: bytes, ev: be.RawEvent) -> bytes:
    """`data` with the first column type of its table-map event `ev` a number no server uses."""
    at = ev.pos + be.HEADER_LEN + 8          # table id, flags
    at += 2 + data[at]                       # database name, NUL
    at += 2 + data[at]                       # table name, NUL
    assert data[at] < 0xFB                   # one-byte column count, then the types
    out = bytearray(data)
    out[at + 1] = 72
    return bytes(out)


# -- tests -----------------------------------------------------------------------------------------

def test_unmutated_sets_plan_or_refuse_cleanly(sets):
    """The files as the servers wrote them: documented outcome per set (tests/corpus/SOURCES.md)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in sets.items():
            code, doc, err = _plan(s, _write(s.files, Path(tmp) / name))
            _check(code, doc, err)
            assert code == CORPUS_PLAN.get(name, 0), (name, doc.get("error"))
            if code == 0:
                assert doc["plan"]["transactions"] > 0, name


@settings(max_examples=300, **_SETTINGS)
@given(data=st.data())
def test_mutated_binlogs_plan_exits_0_or_2(sets, data):
    m = data.draw(mutations(sorted(sets)))
    s, files, what = _mutate(sets, m)
    note(f"{s.name}: {what}")
    with tempfile.TemporaryDirectory() as tmp:
        code, doc, err = _plan(s, _write(files, Path(tmp) / "binlogs"))
    _check(code, doc, err)


def test_every_event_flipped_once_plans_or_names_it(sets):
    """Deterministic sweep: in every event of one file, a byte of the header and one of the body."""
    s = sets["mariadb-nochecksum"]
    victim = "binlog.000002"
    with tempfile.TemporaryDirectory() as tmp:
        events = list(BinlogDirectory(_write(s.files, Path(tmp) / "good")).events(victim, 4))
        for ev in events:
            if ev.file != victim:
                continue
            for offset in (4, be.HEADER_LEN + 1, len(ev.data) // 2, len(ev.data) - 1):
                data = bytearray(s.files[victim])
                data[ev.pos + offset] ^= 0x5A
                code, doc, err = _plan(s, _write({**s.files, victim: bytes(data)}, Path(tmp) / f"{ev.pos}-{offset}"))
                _check(code, doc, err)


def test_stop_before_a_corrupt_event_plans_up_to_it(sets):
    """The hint's way out: --stop-before FILE:POS of the damaged event stops before its transaction."""
    s = sets["mariadb-nochecksum"]
    with tempfile.TemporaryDirectory() as tmp:
        good = _write(s.files, Path(tmp) / "good")
        rows = [ev for ev in BinlogDirectory(good).events() if ev.type in be.ROWS_EVENTS]
        victim = rows[len(rows) // 2]
        bad = _write({**s.files, victim.file: _bad_column_count(s.files[victim.file], victim)}, Path(tmp) / "bad")
        code, doc, err = _plan(s, bad)
        _check(code, doc, err)
        assert code == 2 and doc["error"]["where"] == victim.where, doc
        assert "--stop-before " + victim.where in doc["error"]["hint"]
        assert "no checksums" in doc["error"]["hint"] and "--restart" not in doc["error"]["hint"]
        code, doc, err = _plan(s, bad, "--stop-before", victim.where)
        assert code == 0, (doc.get("error"), err)
        assert doc["plan"]["stop"]["file"] == victim.file and doc["plan"]["stop"]["pos"] == victim.pos


# -- replay ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def replay_target():
    with Sandbox() as target:
        yield target


def _restore(s: BinlogSet, binlogs: Path, target: Sandbox, *extra) -> tuple[int, dict, str]:
    return _run("restore", "--snapshot", s.snapshot, "--binlogs", binlogs, "--stop-before", "end",
                "--target", target_url(target), "--yes", "--existing", "drop", *extra)


@settings(max_examples=8, **_SETTINGS)
@given(data=st.data())
def test_mutated_binlogs_restore_exits_0_2_or_3(sets, replay_target, data):
    # Mostly damage that still plans: the replay then sends it to the server.
    m = data.draw(mutations(["mariadb-nochecksum"], ("field", "flip", "flip", "splice")))
    s, files, what = _mutate(sets, m)
    note(f"{s.name}: {what}")
    clean(replay_target)
    with tempfile.TemporaryDirectory() as tmp:
        code, doc, err = _restore(s, _write(files, Path(tmp) / "binlogs"), replay_target)
    _check(code, doc, err, allowed=(0, 2, 3))


def test_replay_meeting_damage_stops_and_resumes(sets, replay_target, monkeypatch):
    """The file goes bad between the plan and the replay (a copy being rewritten): the replay stops
    with the file and position, keeps its checkpoint, and the same command resumes once it is good."""
    from restore import api
    s = sets["mariadb-nochecksum"]
    clean(replay_target)
    with tempfile.TemporaryDirectory() as tmp:
        binlogs = _write(s.files, Path(tmp) / "binlogs")
        # The replay counts no rows, but it reads every table map: damage the last one.
        victim = [ev for ev in BinlogDirectory(binlogs).events() if ev.type == be.TABLE_MAP][-1]
        real_restore = api.restore

        def damage_then_restore(*args, **kwargs):
            (binlogs / victim.file).write_bytes(_bad_column_type(s.files[victim.file], victim))
            return real_restore(*args, **kwargs)

        monkeypatch.setattr(api, "restore", damage_then_restore)
        code, doc, err = _restore(s, binlogs, replay_target, "--batch", "1")
        _check(code, doc, err)
        assert code == 2 and doc["error"]["where"] == victim.where, doc
        assert "--restart" not in doc["error"]["hint"] and "run the same command again" in doc["error"]["hint"]
        monkeypatch.setattr(api, "restore", real_restore)
        _write(s.files, binlogs)   # copied again
        code, doc, err = _restore(s, binlogs, replay_target, "--batch", "1")
        assert code == 0, (doc.get("error"), err[-2000:])
        assert doc["restore"]["resumed"] is True
        replay = next(p for p in doc["restore"]["phases"] if p["phase"] == "replay")
        assert replay["resumed_from"], replay
