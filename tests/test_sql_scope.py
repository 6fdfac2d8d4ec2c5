"""Unit tests for restore.binlog.sql_scope: classifying binlog QUERY-event statements."""
from __future__ import annotations

import time

import pytest

from restore.binlog.sql_scope import StatementInfo, TableRef, analyze

T = TableRef


def refs(*pairs: str) -> tuple[TableRef, ...]:
    """Build TableRefs: "db.t" -> ("db", "t"); "-.t" -> (None, "t"); "db." -> ("db", None)."""
    out = []
    for p in pairs:
        db, _, name = p.partition(".")
        out.append(TableRef(None if db == "-" else db, name or None))
    return tuple(out)


# (sql, default db, kind, verb, written)
CASES = [
    # --- transaction control
    ("BEGIN", "d", "begin", "BEGIN", ()),
    ("  begin work", None, "begin", "BEGIN", ()),
    ("START TRANSACTION", "d", "begin", "BEGIN", ()),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", None, "begin", "BEGIN", ()),
    ("COMMIT", "d", "commit", "COMMIT", ()),
    ("commit work and no chain", None, "commit", "COMMIT", ()),
    ("ROLLBACK", "d", "rollback", "ROLLBACK", ()),
    ("ROLLBACK TO SAVEPOINT sp1", "d", "savepoint", "ROLLBACK TO", ()),
    ("ROLLBACK WORK TO sp1", "d", "savepoint", "ROLLBACK TO", ()),
    ("SAVEPOINT `sp 1`", "d", "savepoint", "SAVEPOINT", ()),
    ("RELEASE SAVEPOINT sp1", "d", "savepoint", "RELEASE SAVEPOINT", ()),
    ("XA START 'xid1'", "d", "xa", "XA", ()),
    ("XA END 'xid1'", "d", "xa", "XA", ()),
    ("XA PREPARE 'xid1'", "d", "xa", "XA", ()),
    ("XA COMMIT 'xid1'", "d", "xa", "XA", ()),
    ("XA ROLLBACK X'31',X'',1", "d", "xa", "XA", ()),
    # --- INSERT / REPLACE
    ("INSERT INTO t VALUES (1,'a')", "d", "dml", "INSERT", refs("d.t")),
    ("insert into `t`(`a`,`b`) values (1,2),(3,4)", "d", "dml", "INSERT", refs("d.t")),
    ("INSERT LOW_PRIORITY IGNORE INTO db2.t SET a=1", "d", "dml", "INSERT", refs("db2.t")),
    ("INSERT DELAYED t VALUES (1)", "d", "dml", "INSERT", refs("d.t")),
    ("INSERT HIGH_PRIORITY INTO `shop`.`orders` (id) VALUES (1) ON DUPLICATE KEY UPDATE id=VALUES(id)",
     None, "dml", "INSERT", refs("shop.orders")),
    ("INSERT INTO t SELECT * FROM other.s WHERE x > 1", "d", "dml", "INSERT", refs("d.t")),
    ("INSERT INTO t (a) (SELECT a FROM s)", "d", "dml", "INSERT", refs("d.t")),
    ("INSERT INTO t PARTITION (p0) VALUES (1)", "d", "dml", "INSERT", refs("d.t")),
    ("REPLACE INTO t VALUES (1)", "d", "dml", "REPLACE", refs("d.t")),
    ("REPLACE LOW_PRIORITY t SELECT 1", None, "dml", "REPLACE", refs("-.t")),
    ("INSERT INTO `한국어`.`사용자` VALUES (1, '홍길동')", None, "dml", "INSERT", refs("한국어.사용자")),
    ("INSERT INTO `we``ird`.`ta``ble` VALUES (1)", None, "dml", "INSERT", refs("we`ird.ta`ble")),
    ("INSERT INTO db . tbl VALUES (1)", None, "dml", "INSERT", refs("db.tbl")),
    ("INSERT INTO t$1 VALUES (1)", "d", "dml", "INSERT", refs("d.t$1")),
    ("INSERT INTO 1abc VALUES (1)", "d", "dml", "INSERT", refs("d.1abc")),
    # --- UPDATE
    ("UPDATE t SET a=1 WHERE id=2", "d", "dml", "UPDATE", refs("d.t")),
    ("UPDATE LOW_PRIORITY IGNORE db1.t SET a=1", "other", "dml", "UPDATE", refs("db1.t")),
    ("UPDATE t1 AS a JOIN db2.t2 b ON a.id=b.id, t3 SET a.x=b.y WHERE a.z=1", "d", "dml", "UPDATE",
     refs("d.t1", "db2.t2", "d.t3")),
    ("UPDATE t1 a LEFT OUTER JOIN t2 b USING (id) SET a.x=1", "d", "dml", "UPDATE", refs("d.t1", "d.t2")),
    ("UPDATE (t1 JOIN t2 ON t1.id=t2.id) SET t1.a=t2.a", "d", "dml", "UPDATE", refs("d.t1", "d.t2")),
    ("UPDATE t SET a=(SELECT MAX(b) FROM s) WHERE id IN (SELECT id FROM u)", "d", "dml", "UPDATE",
     refs("d.t")),
    ("UPDATE t FORCE INDEX (PRIMARY) SET a=1", "d", "dml", "UPDATE", refs("d.t")),
    ("UPDATE t1 LEFT JOIN t2 ON LEFT(t1.a, 3) = t2.b SET t1.c = 1", "d", "dml", "UPDATE", refs("d.t1", "d.t2")),
    ("UPDATE t1 JOIN t2 ON t1.full = t2.x SET t1.c = 1", "d", "dml", "UPDATE", refs("d.t1", "d.t2")),
    ("UPDATE t1 INNER JOIN (SELECT id, MAX(x) m FROM t3 GROUP BY id) d ON d.id = t1.id SET t1.m = d.m", "d", "dml",
     "UPDATE", refs("d.t1")),
    # --- DELETE
    ("DELETE FROM t WHERE id=1", "d", "dml", "DELETE", refs("d.t")),
    ("DELETE FROM homepage.attendance", "other", "dml", "DELETE", refs("homepage.attendance")),
    ("DELETE LOW_PRIORITY QUICK IGNORE FROM t WHERE a=1 ORDER BY id LIMIT 10", "d", "dml", "DELETE",
     refs("d.t")),
    ("DELETE FROM t AS x WHERE x.id=1", "d", "dml", "DELETE", refs("d.t")),
    ("DELETE FROM t PARTITION (p1) WHERE 1", "d", "dml", "DELETE", refs("d.t")),
    ("DELETE a, b FROM t1 a JOIN t2 b ON a.id=b.id JOIN t3 c ON c.id=a.id WHERE c.x=1", "d", "dml",
     "DELETE", refs("d.t1", "d.t2")),
    ("DELETE a.* FROM db1.t1 AS a INNER JOIN db2.t2 AS b ON a.id=b.id", "d", "dml", "DELETE",
     refs("db1.t1")),
    ("DELETE FROM a, b USING db1.t1 a JOIN t2 b ON a.id=b.id", "d", "dml", "DELETE",
     refs("db1.t1", "d.t2")),
    ("DELETE t1 FROM t1 LEFT JOIN t2 ON t1.id=t2.id WHERE t2.id IS NULL", "d", "dml", "DELETE",
     refs("d.t1")),
    ("DELETE db1.t1 FROM db1.t1, db2.t2 WHERE db1.t1.id=db2.t2.id", None, "dml", "DELETE",
     refs("db1.t1")),
    ("DELETE FROM t WHERE id IN (SELECT id FROM s)", "d", "dml", "DELETE", refs("d.t")),
    ("DELETE t1, t2 FROM t1 INNER JOIN t2 INNER JOIN t3 WHERE t1.id=t2.id AND t2.id=t3.id", "d", "dml", "DELETE",
     refs("d.t1", "d.t2")),
    ("DELETE FROM `db`.`t` WHERE `id` = 1 LIMIT 1", None, "dml", "DELETE", refs("db.t")),
    # --- TRUNCATE
    ("TRUNCATE TABLE `wiki`.`pages`", None, "ddl", "TRUNCATE", refs("wiki.pages")),
    ("truncate t", "d", "ddl", "TRUNCATE", refs("d.t")),
    # --- CREATE / DROP / ALTER TABLE
    ("CREATE TABLE t (id INT PRIMARY KEY)", "d", "ddl", "CREATE TABLE", refs("d.t")),
    ("CREATE TABLE IF NOT EXISTS `db`.`t` (id INT)", "x", "ddl", "CREATE TABLE", refs("db.t")),
    ("CREATE OR REPLACE TABLE t (id INT)", "d", "ddl", "CREATE TABLE", refs("d.t")),
    ("CREATE TEMPORARY TABLE tmp (id INT)", "d", "ddl", "CREATE TABLE", refs("d.tmp")),
    ("CREATE TABLE t LIKE other.src", "d", "ddl", "CREATE TABLE", refs("d.t")),
    ("CREATE TABLE t (LIKE src)", "d", "ddl", "CREATE TABLE", refs("d.t")),
    ("CREATE TABLE t SELECT * FROM s", "d", "ddl", "CREATE TABLE", refs("d.t")),
    ("CREATE TABLE t (a INT) AS SELECT a FROM s JOIN u USING (a)", "d", "ddl", "CREATE TABLE", refs("d.t")),
    ("DROP TABLE t", "d", "ddl", "DROP TABLE", refs("d.t")),
    ("DROP TABLE IF EXISTS `t1`,`db2`.`t2` /* generated by server */", "d", "ddl", "DROP TABLE",
     refs("d.t1", "db2.t2")),
    ("DROP TABLE IF EXISTS `t1` /* generated by server */", None, "ddl", "DROP TABLE", refs("-.t1")),
    ("DROP TEMPORARY TABLE IF EXISTS `tmp` /* generated by server */", "d", "ddl", "DROP TABLE",
     refs("d.tmp")),
    ("DROP TABLES a, b CASCADE", "d", "ddl", "DROP TABLE", refs("d.a", "d.b")),
    ("DROP /*!40005 TEMPORARY */ TABLE IF EXISTS `t1`", "d", "ddl", "DROP TABLE", refs("d.t1")),
    ("DROP TABLE `a`,`b` /* generated by server */", None, "ddl", "DROP TABLE", refs("-.a", "-.b")),
    ("CREATE TABLE `db`.`t` (`id` int NOT NULL AUTO_INCREMENT, `n` varchar(10) DEFAULT 'a,b', PRIMARY KEY (`id`)) "
     "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4", None, "ddl", "CREATE TABLE", refs("db.t")),
    ("/*!50001 CREATE ALGORITHM=UNDEFINED */ /*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */ "
     "/*!50001 VIEW `v` AS select `t`.`a` AS `a` from `t` */", "d", "ddl", "CREATE VIEW", refs("d.v")),
    ("ALTER TABLE t1 TRUNCATE PARTITION p0", "d", "ddl", "ALTER TABLE", refs("d.t1")),
    ("ALTER TABLE t ADD COLUMN c INT", "d", "ddl", "ALTER TABLE", refs("d.t")),
    ("ALTER ONLINE IGNORE TABLE db.t ADD INDEX (c)", "d", "ddl", "ALTER TABLE", refs("db.t")),
    ("ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE arch.t0", "d", "ddl", "ALTER TABLE",
     refs("d.t", "arch.t0")),
    ("ALTER TABLE t RENAME COLUMN a TO b, RENAME INDEX i TO j", "d", "ddl", "ALTER TABLE", refs("d.t")),
    # --- indexes
    ("CREATE INDEX i ON t (a)", "d", "ddl", "CREATE INDEX", refs("d.t")),
    ("CREATE UNIQUE INDEX i USING BTREE ON db.t (a, b(10))", "d", "ddl", "CREATE INDEX", refs("db.t")),
    ("CREATE FULLTEXT INDEX ft ON t (body)", "d", "ddl", "CREATE INDEX", refs("d.t")),
    ("CREATE OR REPLACE SPATIAL INDEX IF NOT EXISTS sp ON g (pt)", "d", "ddl", "CREATE INDEX", refs("d.g")),
    ("DROP INDEX `PRIMARY` ON db.t", "d", "ddl", "DROP INDEX", refs("db.t")),
    ("DROP INDEX IF EXISTS i ON t ALGORITHM=INPLACE LOCK=NONE", "d", "ddl", "DROP INDEX", refs("d.t")),
    # --- databases
    ("CREATE DATABASE shop", None, "ddl", "CREATE DATABASE", refs("shop.")),
    ("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */", None,
     "ddl", "CREATE DATABASE", refs("shop.")),
    ("CREATE /*!32312 IF NOT EXISTS*/ DATABASE shop", None, "ddl", "CREATE DATABASE", refs("shop.")),
    ("CREATE SCHEMA `데이터`", "x", "ddl", "CREATE DATABASE", refs("데이터.")),
    ("DROP DATABASE shop", "shop", "ddl", "DROP DATABASE", refs("shop.")),
    ("DROP SCHEMA IF EXISTS `shop`", None, "ddl", "DROP DATABASE", refs("shop.")),
    ("ALTER DATABASE shop CHARACTER SET utf8mb4", None, "ddl", "ALTER DATABASE", refs("shop.")),
    ("ALTER DATABASE DEFAULT CHARACTER SET latin1", "cur", "ddl", "ALTER DATABASE", refs("cur.")),
    ("ALTER SCHEMA CHARACTER SET latin1", None, "ddl", "ALTER DATABASE", ()),
    # --- views, triggers, routines, events
    ("CREATE VIEW v AS SELECT * FROM t", "d", "ddl", "CREATE VIEW", refs("d.v")),
    ("CREATE DEFINER=`root`@`localhost` VIEW db.v AS SELECT 1", "d", "ddl", "CREATE VIEW", refs("db.v")),
    ("CREATE ALGORITHM=UNDEFINED DEFINER=`u`@`%` SQL SECURITY DEFINER VIEW `v` AS select `t`.`a` AS `a` "
     "from `t`", "d", "ddl", "CREATE VIEW", refs("d.v")),
    ("CREATE OR REPLACE VIEW v (a, b) AS SELECT 1, 2", "d", "ddl", "CREATE VIEW", refs("d.v")),
    ("DROP VIEW IF EXISTS v1, db.v2", "d", "ddl", "DROP VIEW", refs("d.v1", "db.v2")),
    ("ALTER VIEW v AS SELECT a FROM t", "d", "ddl", "ALTER VIEW", refs("d.v")),
    ("CREATE DEFINER=`u`@`h` TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1", "d", "ddl",
     "CREATE TRIGGER", refs("d.t")),
    ("/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER `trg` AFTER UPDATE ON "
     "`shop`.`orders` FOR EACH ROW INSERT INTO log VALUES (NEW.id) */", "d", "ddl", "CREATE TRIGGER",
     refs("shop.orders")),
    ("CREATE TRIGGER shop.trg BEFORE DELETE ON orders FOR EACH ROW BEGIN END", None, "ddl",
     "CREATE TRIGGER", refs("shop.orders")),
    ("CREATE DEFINER=CURRENT_USER() TRIGGER IF NOT EXISTS trg AFTER INSERT ON t FOR EACH ROW "
     "FOLLOWS other SET @x=1", "d", "ddl", "CREATE TRIGGER", refs("d.t")),
    ("DROP TRIGGER IF EXISTS db.trg", "d", "ddl", "DROP TRIGGER", refs("db.trg")),
    ("CREATE DEFINER=`root`@`%` PROCEDURE `p`(IN x INT) BEGIN SELECT x; END", "d", "ddl",
     "CREATE PROCEDURE", refs("d.p")),
    ("CREATE FUNCTION db.f(x INT) RETURNS INT DETERMINISTIC RETURN x + 1", None, "ddl", "CREATE FUNCTION",
     refs("db.f")),
    ("CREATE AGGREGATE FUNCTION udf RETURNS STRING SONAME 'udf.so'", "d", "ddl", "CREATE FUNCTION",
     refs("-.udf")),
    ("DROP PROCEDURE IF EXISTS p", "d", "ddl", "DROP PROCEDURE", refs("d.p")),
    ("DROP FUNCTION db.f", None, "ddl", "DROP FUNCTION", refs("db.f")),
    ("CREATE DEFINER=`u`@`h` EVENT ev ON SCHEDULE EVERY 1 DAY DO DELETE FROM t", "d", "ddl",
     "CREATE EVENT", refs("d.ev")),
    ("ALTER EVENT ev RENAME TO db2.ev2", "d", "ddl", "ALTER EVENT", refs("d.ev", "db2.ev2")),
    ("DROP EVENT IF EXISTS ev", "d", "ddl", "DROP EVENT", refs("d.ev")),
    ("CREATE SEQUENCE s START WITH 1", "d", "ddl", "CREATE SEQUENCE", refs("d.s")),
    ("DROP SEQUENCE IF EXISTS s1, db.s2", "d", "ddl", "DROP SEQUENCE", refs("d.s1", "db.s2")),
    # --- RENAME
    ("RENAME TABLE a TO b", "d", "ddl", "RENAME TABLE", refs("d.a", "d.b")),
    ("RENAME TABLE `db1`.`a` TO `db2`.`a`, c TO d", "x", "ddl", "RENAME TABLE",
     refs("db1.a", "db2.a", "x.c", "x.d")),
    ("RENAME TABLES a WAIT 5 TO b", "d", "ddl", "RENAME TABLE", refs("d.a", "d.b")),
    # --- account management, misc
    ("GRANT SELECT, INSERT ON shop.* TO 'u'@'%'", None, "dcl", "GRANT", refs("shop.")),
    ("GRANT ALL PRIVILEGES ON *.* TO 'u'@'%' WITH GRANT OPTION", "d", "dcl", "GRANT", ()),
    ("GRANT SELECT (a, b) ON TABLE shop.orders TO u", None, "dcl", "GRANT", refs("shop.orders")),
    ("GRANT EXECUTE ON PROCEDURE db.p TO u", None, "dcl", "GRANT", refs("db.p")),
    ("GRANT SELECT ON * TO u", "cur", "dcl", "GRANT", refs("cur.")),
    ("GRANT SELECT ON orders TO u", "cur", "dcl", "GRANT", refs("cur.orders")),
    ("GRANT role1 TO u", "d", "dcl", "GRANT", ()),
    ("REVOKE INSERT ON shop.orders FROM 'u'@'h'", None, "dcl", "REVOKE", refs("shop.orders")),
    ("REVOKE ALL PRIVILEGES, GRANT OPTION FROM u", "d", "dcl", "REVOKE", ()),
    ("CREATE USER IF NOT EXISTS 'u'@'%' IDENTIFIED BY 'x'", "d", "dcl", "CREATE USER", ()),
    ("DROP USER 'u'@'%'", "d", "dcl", "DROP USER", ()),
    ("ALTER USER 'u'@'%' IDENTIFIED BY 'y'", "d", "dcl", "ALTER USER", ()),
    ("RENAME USER a TO b", "d", "dcl", "RENAME USER", ()),
    ("SET PASSWORD FOR 'u'@'%' = PASSWORD('x')", "d", "dcl", "SET PASSWORD", ()),
    ("FLUSH PRIVILEGES", "d", "dcl", "FLUSH", ()),
    ("FLUSH TABLES", "d", "other", "FLUSH", ()),
    ("FLUSH NO_WRITE_TO_BINLOG TABLES a, db.b WITH READ LOCK", "d", "other", "FLUSH", refs("d.a", "db.b")),
    ("ANALYZE TABLE t", "d", "other", "ANALYZE TABLE", refs("d.t")),
    ("OPTIMIZE NO_WRITE_TO_BINLOG TABLE db.t, u", "d", "other", "OPTIMIZE TABLE", refs("db.t", "d.u")),
    ("REPAIR LOCAL TABLE `x`.`y` QUICK", None, "other", "REPAIR TABLE", refs("x.y")),
    ("LOAD DATA INFILE '/tmp/x' INTO TABLE t", "d", "load", "LOAD DATA", refs("d.t")),
    ("LOAD DATA LOW_PRIORITY LOCAL INFILE '/tmp/SQL_LOAD_MB-1-2' REPLACE INTO TABLE `db`.`t` "
     "FIELDS TERMINATED BY ',' (a, b)", None, "load", "LOAD DATA", refs("db.t")),
    ("LOAD XML LOCAL INFILE 'f.xml' INTO TABLE t ROWS IDENTIFIED BY '<row>'", "d", "load", "LOAD XML",
     refs("d.t")),
    ("CALL db.p(1)", "d", "other", "CALL", ()),
    ("SELECT * FROM t", "d", "other", "SELECT", ()),
    ("SET @a = 1", "d", "other", "SET", ()),
    ("USE shop", None, "other", "USE", ()),
    ("DO RELEASE_LOCK('x')", "d", "other", "DO", ()),
    ("BEGIN NOT ATOMIC INSERT INTO t VALUES (1); END", "d", "other", "BEGIN NOT ATOMIC", ()),
    # --- MariaDB / MySQL 8 wrappers
    ("SET STATEMENT max_statement_time=10 FOR DELETE FROM db.t WHERE a=1", None, "dml", "DELETE",
     refs("db.t")),
    # WITH ... <statement> (MySQL 8 CTEs) is not analysed: "cannot tell"
    ("WITH c AS (SELECT id FROM s) DELETE t FROM t JOIN c ON t.id=c.id", "d", "other", "OTHER", ()),
    # --- comments everywhere
    ("/* leading */ -- line\n# hash\n  DELETE /* inner */ FROM t", "d", "dml", "DELETE", refs("d.t")),
    ("/*!40000 ALTER TABLE `t` DISABLE KEYS */", "d", "ddl", "ALTER TABLE", refs("d.t")),
    ("/*M!100101 DROP TABLE IF EXISTS t */", "d", "ddl", "DROP TABLE", refs("d.t")),
    ("/*!*/ INSERT INTO t VALUES (1)", "d", "dml", "INSERT", refs("d.t")),
    ("INSERT /*+ NO_RANGE_OPTIMIZATION(t) */ INTO t VALUES (1)", "d", "dml", "INSERT", refs("d.t")),
]


@pytest.mark.parametrize("sql,db,kind,verb,written", CASES, ids=[c[0][:50] for c in CASES])
def test_classify(sql: str, db: str | None, kind: str, verb: str, written: tuple[TableRef, ...]) -> None:
    info = analyze(sql, db)
    assert (info.kind, info.verb, info.written) == (kind, verb, written)
    assert info.databases == frozenset(r.db for r in written if r.db is not None)


# (sql, default db, expected read)
READS = [
    ("INSERT INTO t SELECT * FROM other.s WHERE x > 1", "d", refs("other.s")),
    ("INSERT INTO t SELECT a.x FROM s a JOIN db.u b ON a.id=b.id, v", "d", refs("d.s", "db.u", "d.v")),
    ("INSERT INTO t VALUES (1)", "d", ()),
    ("INSERT INTO t SELECT EXTRACT(YEAR FROM d) FROM s", "d", refs("d.s")),
    ("INSERT INTO t SELECT 1 FROM DUAL", "d", ()),
    ("UPDATE t SET a=(SELECT MAX(b) FROM s) WHERE id IN (SELECT id FROM u)", "d", refs("d.s", "d.u")),
    ("DELETE a FROM t1 a JOIN t2 b ON a.id=b.id WHERE b.x IN (SELECT x FROM t3)", "d",
     refs("d.t2", "d.t3")),
    ("DELETE FROM a USING t1 a JOIN t2 b ON a.id=b.id", "d", refs("d.t2")),
    ("CREATE TABLE t LIKE other.src", "d", refs("other.src")),
    ("CREATE TABLE t (LIKE src)", "d", refs("d.src")),
    ("CREATE TABLE t (a INT) SELECT a FROM s JOIN u USING (a)", "d", refs("d.s", "d.u")),
    ("CREATE TABLE c (id INT, p INT, FOREIGN KEY (p) REFERENCES parent (id))", "d", refs("d.parent")),
    ("CREATE VIEW v AS SELECT * FROM t1 UNION SELECT * FROM db.t2", "d", refs("d.t1", "db.t2")),
    ("SELECT * FROM (SELECT * FROM inner_t) AS x JOIN y ON 1", "d", refs("d.inner_t", "d.y")),
    ("UPDATE t SET a = TRIM(LEADING 'x' FROM b)", "d", ()),
    ("UPDATE t1 INNER JOIN (SELECT id FROM t3) d ON d.id = t1.id SET t1.m = 1", "d", refs("d.t3")),
    ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (x) REFERENCES db.p (id) ON DELETE CASCADE", "d", refs("db.p")),
    ("INSERT INTO t (a) VALUES ((SELECT MAX(a) FROM s))", "d", refs("d.s")),
]


@pytest.mark.parametrize("sql,db,read", READS, ids=[c[0][:50] for c in READS])
def test_reads(sql: str, db: str | None, read: tuple[TableRef, ...]) -> None:
    assert analyze(sql, db).read == read


# (sql, has_where, trivial_where, has_limit)
WHERES = [
    ("DELETE FROM t", False, False, False),
    ("DELETE FROM t WHERE id = 5", True, False, False),
    ("DELETE FROM t WHERE 1", True, True, False),
    ("DELETE FROM t WHERE TRUE", True, True, False),
    ("DELETE FROM t WHERE 1=1", True, True, False),
    ("delete from t where 1 = 1;", True, True, False),
    ("DELETE FROM t WHERE 'a'='a'", True, True, False),
    ("DELETE FROM t WHERE 'a' = 'A '", True, True, False),
    ("DELETE FROM t WHERE _utf8mb4'x' = _utf8mb4'x' COLLATE utf8mb4_bin", True, False, False),
    ("DELETE FROM t WHERE _utf8mb4'x' = _utf8mb4'x'", True, True, False),
    ("DELETE FROM t WHERE 1<>0", True, True, False),
    ("DELETE FROM t WHERE 2 > 1 AND 'b' != 'c'", True, True, False),
    ("DELETE FROM t WHERE (1=1)", True, True, False),
    ("DELETE FROM t WHERE id = 3 OR 1 = 1", True, True, False),
    ("DELETE FROM t WHERE 1 = 1 AND id = 3", True, False, False),
    ("DELETE FROM t WHERE 0", True, False, False),
    ("DELETE FROM t WHERE 1 = 0", True, False, False),
    ("DELETE FROM t WHERE '1' = 1", True, True, False),
    ("DELETE FROM t WHERE -1", True, True, False),
    ("DELETE FROM t WHERE 1.5 >= 1.5", True, True, False),
    ("DELETE FROM t WHERE 0x10 = 16", True, True, False),
    ("DELETE FROM t WHERE id", True, False, False),
    ("DELETE FROM t WHERE 1 LIMIT 10", True, True, True),
    ("DELETE FROM t WHERE a = 1 ORDER BY id LIMIT 10", True, False, True),
    ("DELETE FROM t ORDER BY id LIMIT 10", False, False, True),
    ("DELETE FROM t WHERE id IN (SELECT id FROM s WHERE 1 LIMIT 1)", True, False, False),
    ("DELETE FROM t WHERE 1 /* always */ -- yes\n", True, True, False),
    ("DELETE FROM t WHERE a = \"x\" OR 1", True, True, False),
    ("DELETE FROM t WHERE ((1 = 1) AND (TRUE))", True, True, False),
    ("DELETE FROM t WHERE (1 = 1) AND (x)", True, False, False),
    ("DELETE FROM t WHERE 1abc = 1", True, False, False),
    ("DELETE FROM t WHERE 'abc'", True, False, False),
    ("DELETE FROM t WHERE NULL", True, False, False),
    ("DELETE FROM t WHERE 1 = 1 RETURNING id", True, True, False),
    ("UPDATE t SET a = 1", False, False, False),
    ("UPDATE t SET a = 1 WHERE 1=1", True, True, False),
    ("UPDATE t SET a = (SELECT 1 FROM s WHERE x = 2 LIMIT 1)", False, False, False),
    ("UPDATE t SET a = 1 WHERE id = 1 LIMIT 1", True, False, True),
    ("UPDATE t1 JOIN t2 ON t1.id = t2.id SET t1.a = 1", False, False, False),
    ("DELETE a FROM t1 a JOIN t2 b ON 1=1 WHERE 1", True, True, False),
    ("INSERT INTO t SELECT * FROM s WHERE 1", False, False, False),
]


@pytest.mark.parametrize("sql,has_where,trivial,has_limit", WHERES, ids=[c[0][:50] for c in WHERES])
def test_where(sql: str, has_where: bool, trivial: bool, has_limit: bool) -> None:
    info = analyze(sql, "d")
    assert (info.has_where, info.trivial_where, info.has_limit) == (has_where, trivial, has_limit)


RENAMES = [
    ("RENAME TABLE a TO b", "d", ((T("d", "a"), T("d", "b")),)),
    ("RENAME TABLE db1.a TO db2.b, c TO d", "x", ((T("db1", "a"), T("db2", "b")), (T("x", "c"), T("x", "d")))),
    ("RENAME TABLE IF EXISTS `a` TO `b`", "d", ((T("d", "a"), T("d", "b")),)),
    ("ALTER TABLE a RENAME TO b", "d", ((T("d", "a"), T("d", "b")),)),
    ("ALTER TABLE db1.a RENAME AS db2.b", None, ((T("db1", "a"), T("db2", "b")),)),
    ("ALTER TABLE a ADD c INT, RENAME b", "d", ((T("d", "a"), T("d", "b")),)),
    ("ALTER TABLE `a` RENAME COLUMN x TO y", "d", ()),
    ("ALTER TABLE a RENAME KEY i TO j", "d", ()),
    ("DROP TABLE a", "d", ()),
]


@pytest.mark.parametrize("sql,db,renames", RENAMES, ids=[c[0][:50] for c in RENAMES])
def test_renames(sql: str, db: str | None, renames: tuple) -> None:
    info = analyze(sql, db)
    assert info.renames == renames
    for old, new in renames:
        assert old in info.written and new in info.written


FLAGS = [
    ("CREATE TEMPORARY TABLE t (a INT)", dict(temporary=True, if_exists=False, or_replace=False)),
    ("DROP TEMPORARY TABLE IF EXISTS t", dict(temporary=True, if_exists=True)),
    ("DROP /*!40005 TEMPORARY */ TABLE IF EXISTS `t1`", dict(temporary=True, if_exists=True)),
    ("DROP TABLE IF EXISTS t", dict(temporary=False, if_exists=True)),
    ("DROP TABLE t", dict(if_exists=False)),
    ("DROP DATABASE IF EXISTS d", dict(if_exists=True)),
    ("DROP VIEW IF EXISTS v", dict(if_exists=True)),
    ("CREATE TABLE IF NOT EXISTS t (a INT)", dict(if_exists=False, or_replace=False)),
    ("CREATE OR REPLACE TABLE t (a INT)", dict(or_replace=True)),
    ("CREATE OR REPLACE DEFINER=`u`@`h` VIEW v AS SELECT 1", dict(or_replace=True)),
]


@pytest.mark.parametrize("sql,flags", FLAGS, ids=[c[0][:50] for c in FLAGS])
def test_flags(sql: str, flags: dict) -> None:
    info = analyze(sql, "d")
    assert {k: getattr(info, k) for k in flags} == flags


JUNK = [
    "", "   ", ";", "/* only a comment */", "-- nothing\n", "# nothing", "garbage words here",
    "INSERT", "INSERT INTO", "UPDATE", "UPDATE t", "DELETE", "DELETE FROM", "DROP TABLE", "CREATE TABLE",
    "CREATE INDEX i", "TRUNCATE", "RENAME TABLE a", "RENAME TABLE a TO", "LOAD DATA INFILE 'x'",
    "CREATE FOOBAR x", "DROP PREPARE stmt", "DELETE FROM 123", "WITH x", "'unterminated", "`unterminated",
    "/* unterminated", "INSERT INTO t VALUES ('unterminated", "((((((((((", "))))", "CREATE DATABASE",
]


@pytest.mark.parametrize("sql", JUNK)
def test_junk_never_raises(sql: str) -> None:
    info = analyze(sql, "d")
    assert isinstance(info, StatementInfo)
    if info.kind == "other":
        assert info.written == ()


@pytest.mark.parametrize("sql", ["INSERT", "UPDATE t", "DELETE FROM", "DROP TABLE", "garbage words",
                                 "RENAME TABLE a TO", "", "CREATE FOOBAR x"])
def test_unparseable_is_other(sql: str) -> None:
    assert analyze(sql, "d") == StatementInfo("other", "OTHER")


def test_strings_and_comments_do_not_leak_keywords() -> None:
    info = analyze("INSERT INTO t VALUES ('x; DROP TABLE y -- ', \"FROM z\", 'it''s', 'a\\'b', X'00', 0x1F)", "d")
    assert (info.verb, info.written, info.read) == ("INSERT", refs("d.t"), ())
    info = analyze("UPDATE t SET a = 'WHERE 1' /* WHERE 1 */ # WHERE 1", "d")
    assert (info.has_where, info.written) == (False, refs("d.t"))
    info = analyze("UPDATE t SET note = _utf8mb4'LIMIT 5' COLLATE 'utf8mb4_general_ci' WHERE id = 7", "d")
    assert (info.has_where, info.trivial_where, info.has_limit) == (True, False, False)


def test_no_default_db_and_default_db_ignored_for_qualified() -> None:
    assert analyze("DELETE FROM t", None).written == (T(None, "t"),)
    assert analyze("DELETE FROM t", None).databases == frozenset()
    assert analyze("DELETE FROM t", "").written == (T(None, "t"),)
    info = analyze("UPDATE `homepage`.`attendance` SET x = 1", "other")
    assert info.databases == frozenset({"homepage"})


def test_bytes_input_and_unicode() -> None:
    info = analyze("DELETE FROM `학생` WHERE 이름 = '철수'".encode(), "학교")
    assert info.written == (T("학교", "학생"),)


def test_huge_insert_is_lazy_and_correct() -> None:
    values = ",".join(f"({i},'row {i} with FROM and SELECT words')" for i in range(50_000))
    sql = f"INSERT INTO `big`.`t` (a, b) VALUES {values}"
    start = time.perf_counter()
    info = analyze(sql, None)
    assert (info.verb, info.written) == ("INSERT", refs("big.t"))
    assert time.perf_counter() - start < 1.0
    info = analyze(f"DELETE FROM t WHERE id IN ({','.join(map(str, range(20_000)))}) LIMIT 5", "d")
    assert (info.has_where, info.trivial_where, info.has_limit) == (True, False, True)


def test_tableref_and_info_are_hashable_and_frozen() -> None:
    info = analyze("DROP TABLE a", "d")
    assert hash(info.written[0]) == hash(T("d", "a"))
    with pytest.raises(AttributeError):
        info.kind = "x"  # type: ignore[misc]


def test_speed_not_pathological() -> None:
    stmts = [
        "INSERT INTO `shop`.`orders` (`id`, `customer`, `total`) VALUES (12345, 'Kim', 99.50)",
        "UPDATE `orders` SET `status` = 'shipped', `updated` = NOW() WHERE `id` = 12345",
        "DELETE FROM sessions WHERE expires < '2024-01-01 00:00:00'",
        "BEGIN",
        "COMMIT",
        "INSERT INTO log (msg) VALUES (_utf8mb4'user logged in' COLLATE 'utf8mb4_general_ci')",
        "UPDATE t1 a JOIN t2 b ON a.id = b.id SET a.x = b.y WHERE a.z > 10",
    ]
    batch = stmts * (100_000 // len(stmts) + 1)
    start = time.perf_counter()
    for sql in batch[:100_000]:
        analyze(sql, "shop")
    assert time.perf_counter() - start < 30      # generous: only catches pathological slowness
