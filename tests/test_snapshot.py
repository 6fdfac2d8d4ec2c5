"""restore.plan.snapshot: reading mysqldump/mariadb-dump files without executing them.

Most tests dump a real throwaway MariaDB (one server for the whole module) and compare what the
parser finds with what the server says; a few feed hand-written MySQL-style text.
"""
from __future__ import annotations

import gzip
import random
import subprocess
from pathlib import Path

import pytest
from pymysql.converters import escape_bytes, escape_string

from restore.errors import SnapshotError
from restore.mysql.quote import quote_qualified
from restore.mysql.sandbox import Sandbox
from restore.plan.snapshot import read_snapshot, read_snapshots

TRICKY = ["),(", "'", "''", "\\", "\\'", "\n", "\r", ";", "(", ")", "한국어", "😀", "\x00", "a",
          "'),('", "0x41", "NULL", '"', "\x1a", "\t", "`", "\\n", ");\n", "_binary '", " "]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A private tmpdir: servers of concurrent test runs must not share temporary-table files.
    tmpdir = tmp_path_factory.mktemp("server-tmp")
    with Sandbox(binlog=True, extra_args=[f"--tmpdir={tmpdir}"]) as s:
        conn = s.connect()
        cur = conn.cursor()
        rnd = random.Random(7)
        for db in ("db1", "db2"):
            cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
        cur.execute("USE db1")
        cur.execute("""CREATE TABLE tricky (
            id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
            s text, b blob, n bigint unsigned, d decimal(10,2),
            e enum('a','b),(c','it''s') DEFAULT 'a',
            g bigint AS (n * 2) VIRTUAL,
            p varchar(10) AS (left(s, 3)) PERSISTENT,
            KEY (n))""")
        rows = []
        for i in range(3000):
            s_ = "".join(rnd.choice(TRICKY) for _ in range(rnd.randint(0, 12)))
            b = rnd.randbytes(rnd.randint(0, 64)) + b"\x00\xff'\\"
            rows.append((None if i % 17 == 0 else s_, None if i % 13 == 0 else b,
                         None if i % 11 == 0 else rnd.randint(0, 2**63), rnd.choice(["a", "b),(c", "it's"])))
        cur.executemany("INSERT INTO tricky (s, b, n, e) VALUES (%s, %s, %s, %s)", rows)
        cur.execute("CREATE TABLE no_pk (a int, t varchar(20)) ENGINE=InnoDB")
        cur.executemany("INSERT INTO no_pk VALUES (%s, %s)", [(i, "x),(y" * (i % 3)) for i in range(50)])
        cur.execute("CREATE TABLE empty_t (a int PRIMARY KEY)")
        cur.execute("CREATE TABLE `한국어 테이블` (`we``ird` int, `이름` varchar(20), PRIMARY KEY (`we``ird`))")
        cur.executemany("INSERT INTO `한국어 테이블` VALUES (%s, %s)", [(i, "값 😀 ')") for i in range(7)])
        cur.execute("CREATE VIEW v AS SELECT id, s FROM tricky")
        cur.execute("CREATE TRIGGER tr BEFORE INSERT ON no_pk FOR EACH ROW SET NEW.t = CONCAT(NEW.t, ')')")
        cur.execute("CREATE PROCEDURE pr() BEGIN CREATE TABLE IF NOT EXISTS x (a int);\n"
                    "INSERT INTO x VALUES (1),(2); END")
        cur.execute("CREATE TABLE db2.other (id int PRIMARY KEY, j json)")
        cur.executemany("INSERT INTO db2.other VALUES (%s, %s)", [(i, '{"a": "),("}') for i in range(5)])
        s.conn = conn
        yield s


def dump(server: Sandbox, path: Path, *args: str) -> Path:
    out = subprocess.run(["mariadb-dump", *server.client_args(), *args], capture_output=True)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    path.write_bytes(out.stdout)
    return path


def master_status(server: Sandbox) -> tuple[str, int, str]:
    cur = server.conn.cursor()
    cur.execute("SHOW MASTER STATUS")
    file, pos = cur.fetchone()[:2]
    cur.execute("SELECT @@gtid_binlog_pos")
    return file, pos, cur.fetchone()[0]


def server_tables(server: Sandbox, *dbs: str) -> dict[tuple[str, str], int]:
    cur = server.conn.cursor()
    cur.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = "
                "'BASE TABLE' AND table_schema IN %s", (dbs,))
    counts = {}
    for db, name in cur.fetchall():
        cur.execute(f"SELECT COUNT(*) FROM {quote_qualified(db, name)}")
        counts[(db, name)] = cur.fetchone()[0]
    return counts


def rows_of(snap) -> dict[tuple[str, str], int]:
    return {key: t.rows for key, t in snap.tables.items()}


@pytest.mark.mysql
def test_databases_dump_with_gtid(server, tmp_path):
    file, pos, gtid = master_status(server)
    path = dump(server, tmp_path / "d.sql", "--master-data=2", "--gtid", "--single-transaction",
                "--routines", "--triggers", "--events", "--net-buffer-length=16384",
                "--databases", "db1", "db2")
    snap = read_snapshot(str(path))
    assert snap.flavor == "mariadb"
    assert snap.databases == ["db1", "db2"]
    assert snap.named_db is None
    assert rows_of(snap) == server_tables(server, "db1", "db2")
    assert snap.tables[("db1", "tricky")].rows == 3000
    assert (snap.binlog_file, snap.binlog_pos, snap.gtid) == (file, pos, gtid)
    assert snap.gtid and snap.binlog_pos > 4
    line = path.read_bytes().split(b"\n")[snap.coordinates_line - 1]
    assert b"CHANGE MASTER TO MASTER_LOG_FILE" in line


@pytest.mark.mysql
def test_columns_and_keys(server, tmp_path):
    snap = read_snapshot(str(dump(server, tmp_path / "d.sql", "--databases", "db1")))
    cols = {c.name: c for c in snap.tables[("db1", "tricky")].columns}
    assert list(cols) == ["id", "s", "b", "n", "d", "e", "g", "p"]
    assert cols["id"].definition == "int(10) unsigned" and cols["id"].unsigned
    assert cols["n"].unsigned and not cols["d"].unsigned
    assert cols["d"].definition == "decimal(10,2)"
    assert cols["e"].definition == "enum('a','b),(c','it''s')" and not cols["e"].unsigned
    assert [c for c in cols if cols[c].generated] == ["g", "p"]
    assert snap.tables[("db1", "tricky")].has_primary_key
    assert not snap.tables[("db1", "no_pk")].has_primary_key
    korean = snap.tables[("db1", "한국어 테이블")]
    assert [c.name for c in korean.columns] == ["we`ird", "이름"] and korean.has_primary_key
    assert ("db1", "v") not in snap.tables and ("db1", "x") not in snap.tables
    assert (snap.binlog_file, snap.binlog_pos, snap.gtid, snap.coordinates_line) == (None,) * 4


@pytest.mark.parametrize("options", [
    ["--master-data=2"],
    ["--master-data=1", "--gtid", "--skip-extended-insert", "--complete-insert"],
    ["--master-data=2", "--hex-blob", "--insert-ignore", "--skip-comments"],
    ["--master-data=2", "--replace", "--net-buffer-length=4096", "--compact"],
])
@pytest.mark.mysql
def test_dump_without_databases_needs_name(server, tmp_path, options):
    file, pos, gtid = master_status(server)
    path = dump(server, tmp_path / "d.sql", "--single-transaction", *options, "db1")
    snap = read_snapshot(str(path), "db1")
    assert snap.databases == ["db1"] and snap.named_db == "db1"
    assert rows_of(snap) == server_tables(server, "db1")
    assert (snap.binlog_file, snap.binlog_pos) == (file, pos)
    # mariadb-dump notes the GTID position (as a comment) even without --gtid.
    assert snap.gtid == gtid
    with pytest.raises(SnapshotError) as e:
        read_snapshot(str(path))
    assert str(path) in str(e.value) and f"--snapshot DB={path}" in e.value.hint


@pytest.mark.mysql
def test_named_database_must_match_dump(server, tmp_path):
    path = str(dump(server, tmp_path / "d.sql", "--databases", "db1", "db2"))
    with pytest.raises(SnapshotError, match="'db1', 'db2'"):
        read_snapshot(path, "db1")
    with pytest.raises(SnapshotError, match="'db1'"):
        read_snapshot(path, "other")
    path = str(dump(server, tmp_path / "one.sql", "--databases", "db1"))
    assert read_snapshot(path, "db1").databases == ["db1"]


@pytest.mark.mysql
def test_truncated_in_insert(server, tmp_path):
    data = dump(server, tmp_path / "d.sql", "--databases", "db1").read_bytes()
    start = data.index(b"INSERT INTO `tricky`")
    cut = tmp_path / "cut.sql"
    cut.write_bytes(data[:start + 5000])
    with pytest.raises(SnapshotError, match="truncated") as e:
        read_snapshot(str(cut))
    line = data[:start].count(b"\n") + 1
    assert e.value.where == f"{cut}:{line}" and "complete dump" in e.value.hint
    cut.write_bytes(data[:data.index(b"-- Dump completed")])  # cut between statements
    with pytest.raises(SnapshotError, match="Dump completed"):
        read_snapshot(str(cut))


def test_missing_binary_and_empty_files(tmp_path):
    with pytest.raises(SnapshotError, match="no such file") as e:
        read_snapshot(str(tmp_path / "nope.sql"))
    assert str(tmp_path / "nope.sql") in str(e.value)
    with pytest.raises(SnapshotError, match="directory"):
        read_snapshot(str(tmp_path))
    (tmp_path / "b.sql").write_bytes(b"\xfebin\x00\x01\x02" * 100)
    with pytest.raises(SnapshotError, match="binlog"):
        read_snapshot(str(tmp_path / "b.sql"))
    (tmp_path / "z.sql.gz").write_bytes(gzip.compress(b"CREATE TABLE `t` (\n"))
    with pytest.raises(SnapshotError, match="gzip") as e:
        read_snapshot(str(tmp_path / "z.sql.gz"))
    assert "decompress" in e.value.hint
    for name, text in [("e.sql", b""), ("t.txt", b"hello\nworld\n")]:
        (tmp_path / name).write_bytes(text)
        with pytest.raises(SnapshotError, match="not a SQL dump"):
            read_snapshot(str(tmp_path / name), "db")


MYSQL_DUMP = b"""-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)
--
-- Host: localhost    Database: shop
/*!40101 SET NAMES utf8mb4 */;
SET @@SESSION.SQL_LOG_BIN= 0;

--
-- GTID state at the beginning of the backup
--

SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,
8a94f357-aab4-11df-86ab-c80aa9429562:1-3:7-9';

--
-- Position to start replication or point-in-time recovery from
--

-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000042', SOURCE_LOG_POS=157;
-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000099', SOURCE_LOG_POS=1;

CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */ /*!80016 DEFAULT ENCRYPTION='N' */;

USE `shop`;
DROP TABLE IF EXISTS `orders`;
CREATE TABLE `orders` (
  `id` int unsigned NOT NULL AUTO_INCREMENT,
  `note` varchar(50) COLLATE utf8mb4_bin DEFAULT 'a;',
  `total` decimal(9,2) GENERATED ALWAYS AS ((`id` * 2)) STORED,
  `tag` set('x','y(') NOT NULL COMMENT 'the tag;'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
/*!50100 PARTITION BY HASH (`id`)
PARTITIONS 4 */;
LOCK TABLES `orders` WRITE;
INSERT INTO `orders` (`id`, `note`, `tag`) VALUES (1,'a),(b','x'),(2,'it''s \\'q\\' \\\\','y('),(3,NULL,'x');
INSERT INTO `orders` (`id`, `note`, `tag`) VALUES (4,'raw
newline ),( ;
',''),(5,_binary 'x\\\\',''),(6,0x00FF,'');
UNLOCK TABLES;
--
-- Temporary view structure for view `v`
--
/*!50001 CREATE TABLE `v` (
  `id` tinyint NOT NULL
) ENGINE=MyISAM */;
DELIMITER ;;
CREATE DEFINER=`root`@`%` PROCEDURE `p`()
BEGIN
CREATE TABLE `inproc` (
  `a` int
);
INSERT INTO `inproc` VALUES (1);
END ;;
DELIMITER ;
SET @@SESSION.SQL_LOG_BIN = @MYSQLDUMP_TEMP_LOG_BIN;
-- Dump completed on 2024-01-01  0:00:00
"""


def test_mysql_style_dump(tmp_path):
    path = tmp_path / "my.sql"
    path.write_bytes(MYSQL_DUMP)
    snap = read_snapshot(str(path))
    assert snap.flavor == "mysql" and snap.databases == ["shop"]
    assert snap.gtid == ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,"
                         "8a94f357-aab4-11df-86ab-c80aa9429562:1-3:7-9")
    assert (snap.binlog_file, snap.binlog_pos, snap.coordinates_line) == ("binlog.000042", 157, 18)
    assert list(snap.tables) == [("shop", "orders")]
    orders = snap.tables[("shop", "orders")]
    assert orders.rows == 6 and not orders.has_primary_key
    assert [(c.name, c.definition, c.unsigned, c.generated) for c in orders.columns] == [
        ("id", "int unsigned", True, False), ("note", "varchar(50)", False, False),
        ("total", "decimal(9,2)", False, True), ("tag", "set('x','y(')", False, False)]


@pytest.mark.parametrize("text, expected", [
    (b"CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000003', MASTER_LOG_POS=73;\n",
     ("mysql-bin.000003", 73, None, 1)),
    (b"CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='b.000001', SOURCE_LOG_POS=4;\n",
     ("b.000001", 4, None, 1)),
    (b"-- CHANGE MASTER '' TO MASTER_LOG_FILE='x.000002', MASTER_LOG_POS=99;\n",
     ("x.000002", 99, None, 1)),
    (b"\nSET GLOBAL gtid_slave_pos='0-1-5,1-2-7';\n", (None, None, "0-1-5,1-2-7", 2)),
    (b"-- SET GLOBAL gtid_slave_pos='';\n", (None, None, None, None)),
    (b"SET @@GLOBAL.GTID_PURGED='aaaaaaaa-71ca-11e1-9e33-c80aa9429562:1-50';\n",
     (None, None, "aaaaaaaa-71ca-11e1-9e33-c80aa9429562:1-50", 1)),
    (b"/* SET @@GLOBAL.GTID_PURGED='+u:1-2,\nv:3';*/\n", (None, None, "u:1-2,v:3", 1)),
])
def test_coordinate_lines(tmp_path, text, expected):
    path = tmp_path / "c.sql"
    path.write_bytes(text + b"CREATE TABLE `t` (\n  `a` int\n);\nINSERT INTO `t` VALUES (1);\n")
    snap = read_snapshot(str(path), "db")
    assert (snap.binlog_file, snap.binlog_pos, snap.gtid, snap.coordinates_line) == expected
    assert snap.tables[("db", "t")].rows == 1


def test_insert_edge_cases(tmp_path):
    path = tmp_path / "e.sql"
    path.write_bytes(
        b"USE `d`;\n"
        b"INSERT INTO `t` VALUES ('\\\\'),('\\\\\\''),('('),(''''),('a\\\\\\\\'),(0x28),(NULL);\n"
        b"REPLACE INTO `t` VALUES\n('),(\n',1),\n('x'),\n(_binary '\\0\\'\xff\xfe');\n"
        b"INSERT  IGNORE INTO `t` (`a``(`, `b`) VALUES (1,2);\n"
        b"INSERT INTO `t` VALUES (1);\nINSERT INTO `t` VALUES (2);\n")
    snap = read_snapshot(str(path))
    assert snap.tables[("d", "t")].rows == 7 + 3 + 1 + 2
    path.write_bytes(b"USE `d`;\nINSERT INTO `t` VALUES ('a\n);\n")
    with pytest.raises(SnapshotError, match="truncated") as e:
        read_snapshot(str(path))
    assert e.value.where.endswith(":2")


@pytest.mark.parametrize("seed", range(5))
def test_random_escaped_values(tmp_path, seed):
    """Values escaped the way the client library (and mysqldump) escape them, in both INSERT styles."""
    rnd = random.Random(seed)
    counts, lines = [], [b"USE `d`;\n", b"CREATE TABLE `t` (\n  `a` int\n);\n"]
    for _ in range(30):
        rows = []
        for _ in range(rnd.randint(1, 40)):
            text = "".join(rnd.choice(TRICKY) for _ in range(rnd.randint(0, 8)))
            blob = bytes(rnd.choice(b"\\'\x00\x1a\n\r\"(),;x") for _ in range(rnd.randint(0, 8)))
            text = b"'" + escape_string(text).encode() + b"'"
            rows.append(b"(%d,%s,%s,NULL,0x%s)" % (rnd.randint(-9, 9), text,
                                                   escape_bytes(blob).encode("latin1"), blob.hex().encode()))
        counts.append(len(rows))
        one_line = rnd.random() < 0.5  # mysqldump's style, else mariadb-dump's row per line
        lines.append(b"INSERT INTO `t` VALUES" + (b" " if one_line else b"\n")
                     + (b"," if one_line else b",\n").join(rows) + b";\n")
    path = tmp_path / "r.sql"
    path.write_bytes(b"".join(lines))
    assert read_snapshot(str(path)).tables[("d", "t")].rows == sum(counts)


def test_a_directory_that_is_no_backup_is_refused(tmp_path):
    with pytest.raises(SnapshotError, match="neither a dump file nor a mariadb-backup directory"):
        read_snapshots([str(tmp_path)])


def test_an_xbstream_archive_is_refused_with_how_to_extract_it(tmp_path):
    f = tmp_path / "backup.xb"
    f.write_bytes(b"XBSTCK01" + bytes(100))
    with pytest.raises(SnapshotError, match="mbstream") as e:
        read_snapshots([str(f)])
    assert "mbstream -x" in e.value.hint


def test_a_compressed_backup_dir_is_refused_with_how_to_decompress_it(tmp_path):
    (tmp_path / "xtrabackup_checkpoints").write_text("backup_type = full-backuped\nto_lsn = 5\n")
    (tmp_path / "xtrabackup_binlog_info").write_text("binlog.000001\t328\t0-1-1\n")
    (tmp_path / "ibdata1.qp").write_bytes(b"x")
    with pytest.raises(SnapshotError, match="ibdata1: is compressed") as e:
        read_snapshots([str(tmp_path)])
    assert "--decompress" in e.value.hint


def test_a_backup_of_a_mysql_server_is_refused(tmp_path):
    (tmp_path / "xtrabackup_checkpoints").write_text("backup_type = full-prepared\nto_lsn = 5\n")
    (tmp_path / "xtrabackup_binlog_info").write_text("binlog.000001\t328\n")
    (tmp_path / "xtrabackup_info").write_text("uuid = x\nserver_version = 8.0.36\n")
    for name in ("ibdata1", "ib_logfile0"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(SnapshotError, match="xtrabackup_info: the backup is of server 8.0.36"):
        read_snapshots([str(tmp_path)])
