"""The story's incident, rebuilt on a real source server.

Two databases are restored (`homepage`, `wiki`), dumped separately at different moments; a third
(`other`) lives on the same server and must be left out. Between the two dumps both databases
change (also in one transaction touching both), so a restore that starts either database at the
wrong position applies a change twice or misses one. Then a workload exercising every column type,
statement-format session context and DDL; the state just before the disaster is recorded; the
disaster (`DROP DATABASE homepage`, run from `other`); and the application keeps writing after it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from tests.support.db import checksums, copy_binlogs, dump, master_status, schemas

ATTENDANCE_COLUMNS = """(
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  member_id INT NOT NULL,
  day DATE NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE KEY uq_member_day (member_id, day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

TYPES_DDL = """CREATE TABLE homepage.types (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d10 DECIMAL(10,2), f FLOAT, dbl DOUBLE,
  dt DATE, tm TIME, tm2 TIME(2), tm6 TIME(6), dtm DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL, yr YEAR,
  c_utf CHAR(10) CHARACTER SET utf8mb4, v_utf VARCHAR(100) CHARACTER SET utf8mb4, t_utf TEXT CHARACTER SET utf8mb4,
  c_lat CHAR(10) CHARACTER SET latin1, v_lat VARCHAR(100) CHARACTER SET latin1, t_lat TEXT CHARACTER SET latin1,
  bin4 BINARY(4), vbin VARBINARY(64), bl BLOB,
  en ENUM('a','b','한글'), st SET('x','y','z'),
  b1 BIT(1), b64 BIT(64), js JSON,
  gv BIGINT AS (i * 2) VIRTUAL,
  gs VARCHAR(120) AS (CONCAT(IFNULL(v_utf, ''), '!')) STORED
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

TYPES_COLS = ("ti,tiu,si,siu,mi,miu,i,iu,bi,biu,d65,d10,f,dbl,dt,tm,tm2,tm6,dtm,ts,yr,"
              "c_utf,v_utf,t_utf,c_lat,v_lat,t_lat,bin4,vbin,bl,en,st,b1,b64,js")
_N35 = "9" * 35
_N30 = "9" * 30
TYPES_ROWS = {
    # extremes, maximum side
    1: (f"127,255,32767,65535,8388607,16777215,2147483647,4294967295,9223372036854775807,"
        f"18446744073709551615,'{_N35}.{_N30}','99999999.99',3.14159,1.7976931348623157e308,"
        f"'9999-12-31','838:59:59','838:59:59.99','838:59:59.999999','9999-12-31 23:59:59.999999',"
        f"'2038-01-19 03:14:07.999',2155,'한글😀','안녕하세요 세계 🌏🎉 ünï','{'가나다😀' * 500}',"
        f"'é','café crème brûlée ÿ','Ålborg ñ ß ©® ' ,X'01020000',X'00FF00FF00',"
        f"CONCAT(X'00FFFE00', REPEAT(X'FF00', 3000)),'한글','x,y,z',b'1',b'{'1' * 64}',"
        f"'{{\"k\": \"한글 😀\", \"n\": [1, 2.5, null, true, {{\"a\": {{}}}}]}}'"),
    # extremes, minimum side; zero TIMESTAMP, YEAR 0000, empty strings, empty SET
    2: (f"-128,0,-32768,0,-8388608,0,-2147483648,0,-9223372036854775808,0,'-{_N35}.{_N30}',"
        f"'-99999999.99',-0.000123,-2.2250738585072014e-308,'1000-01-01','-838:59:59','-00:00:01.25',"
        f"'-838:59:59.999999','1000-01-01 00:00:00.000000','0000-00-00 00:00:00.000','0000',"
        f"'','','','','','',X'00000000',X'',X'','a','',b'0',b'0','[]'"),
    # small negatives and fractions
    3: ("-1,1,-300,300,-70000,70000,-1,1,-1,9223372036854775808,'-0.000000000000000000000000000001',"
        "'-0.01',0.1,0.1,'2023-08-19','-00:00:01','-00:00:01.25','-00:00:00.000001',"
        "'2023-08-19 02:14:00.000001','2001-02-03 04:05:06.789',1901,'a ','b  ','c\\n\\t\\\\','é ',"
        "'\\'quoted\\' é','\\0nul',X'FF000000',X'00',X'00','b','y',b'1',b'1000000000000000000000000000000000000000000000000000000000000001',"
        "'{\"s\": \"\\\\u0000 é\", \"big\": 18446744073709551615, \"neg\": -1.5e-7}'"),
    # NULL in every column
    4: ", ".join(["NULL"] * 35),
}


def types_insert(ids_base: int = 0) -> str:
    values = ", ".join(f"({ids_base + k}, {v})" for k, v in TYPES_ROWS.items())
    return f"INSERT INTO homepage.types (id, {TYPES_COLS}) VALUES {values}"


@dataclass
class Incident:
    workdir: Path
    binlog_format: str
    row_metadata: str | None
    homepage_dump: Path
    wiki_dump: Path
    homepage_nocoord_dump: Path            # same moment as homepage_dump, without --master-data
    homepage_coords: tuple[str, int, str]  # SHOW MASTER STATUS / gtid_binlog_pos at that dump
    wiki_coords: tuple[str, int, str]
    binlog_dir: Path
    before: dict                           # checksums of homepage+wiki just before the disaster
    before_schema: dict
    disaster_file: str
    disaster_pos: int                      # its GTID event: the transaction's start
    disaster_event_pos: int                # the DROP DATABASE query event itself
    disaster_gtid: str
    after_wiki: dict                       # wiki checksums at the very end (after-disaster writes)
    after_attendance_ids: list[int]        # rows the application wrote after the disaster
    counts: dict = field(default_factory=dict)  # {table: {"inserted","updated","deleted"}} after its dump

    @property
    def dumps(self) -> list[Path]:
        return [self.homepage_dump, self.wiki_dump]


class _Counts:
    """Rows changed per tracked table, as the binlog's row events will show them."""

    TRACKED = ("homepage.attendance", "wiki.page_log")

    def __init__(self) -> None:
        self.on: set[str] = set()
        self.counts = {t: {"inserted": 0, "updated": 0, "deleted": 0} for t in self.TRACKED}

    def add(self, table: str, kind: str, n: int) -> None:
        if table in self.on:
            self.counts[table][kind] += n


def _x(conn, *stmts: str) -> int:
    n = 0
    with conn.cursor() as cur:
        for s in stmts:
            n = cur.execute(s)
    return n


def _connect(src, db: str | None = None, **kw) -> pymysql.connections.Connection:
    return src.connect(database=db, **kw) if db else src.connect(**kw)


def build_incident(source, workdir) -> Incident:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    c = _Counts()
    root = _connect(source)  # no default database
    _schema_and_seed(root)

    # dump 1: homepage (and the same moment without coordinates)
    home_coords = master_status(root)
    home_dump = dump(source, workdir / "init.sql", ["homepage"])
    nocoord = dump(source, workdir / "init_nocoord.sql", ["homepage"], coordinates=False)
    assert master_status(root) == home_coords
    c.on.add("homepage.attendance")

    _between_dumps(source, c)

    # dump 2: wiki
    wiki_coords = master_status(root)
    wiki_dump = dump(source, workdir / "init_wiki.sql", ["wiki"])
    c.on.add("wiki.page_log")

    _workload(source, c)
    _ddl_mid_stream(source, c)

    before = checksums(root, ["homepage", "wiki"])
    before_schema = schemas(root, ["homepage", "wiki"])

    # the disaster, from a connection whose default database is `other`
    dis_file, dis_pos, _ = master_status(root)
    app_other = _connect(source, "other")
    _x(app_other, "DROP DATABASE homepage")
    _, _, dis_gtid = master_status(root)
    with root.cursor() as cur:
        cur.execute(f"SHOW BINLOG EVENTS IN '{dis_file}' FROM {dis_pos} LIMIT 2")
        events = cur.fetchall()
    assert events[0][2] == "Gtid" and events[1][2] == "Query" and "DROP DATABASE" in events[1][5], events
    dis_event_pos = int(events[1][1])

    # the application keeps running: recreates its table and writes
    app = _connect(source)
    after_ids = [1001, 1002, 1003]
    _x(app, "CREATE DATABASE IF NOT EXISTS homepage",
       f"CREATE TABLE IF NOT EXISTS homepage.attendance {ATTENDANCE_COLUMNS}",
       "INSERT INTO homepage.attendance (id, member_id, day) VALUES "
       "(1001, 1, '2099-01-01'), (1002, 2, '2099-01-01'), (1003, 3, '2099-01-02')",
       "UPDATE wiki.pages SET views = views + 1000 WHERE id = 1",
       "INSERT INTO wiki.page_log VALUES (1, 'after', NOW())",
       "INSERT INTO other.audit (msg) VALUES ('after the disaster')")
    after_wiki = checksums(root, ["wiki"])
    for conn in (root, app, app_other):
        conn.close()

    binlogs = copy_binlogs(source, workdir / "binlogs")
    return Incident(
        workdir=workdir, binlog_format=source.binlog_format, row_metadata=source.row_metadata,
        homepage_dump=home_dump, wiki_dump=wiki_dump, homepage_nocoord_dump=nocoord,
        homepage_coords=home_coords, wiki_coords=wiki_coords, binlog_dir=binlogs,
        before=before, before_schema=before_schema, disaster_file=dis_file, disaster_pos=dis_pos,
        disaster_event_pos=dis_event_pos, disaster_gtid=dis_gtid, after_wiki=after_wiki,
        after_attendance_ids=after_ids, counts=c.counts,
    )


def _schema_and_seed(root) -> None:
    _x(root,
       "CREATE DATABASE homepage CHARACTER SET utf8mb4",
       "CREATE DATABASE wiki CHARACTER SET utf8mb4",
       "CREATE DATABASE other",
       """CREATE TABLE homepage.members (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
          name VARCHAR(64) NOT NULL, email VARCHAR(128), joined DATETIME DEFAULT CURRENT_TIMESTAMP,
          points INT NOT NULL DEFAULT 0) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
       f"CREATE TABLE homepage.attendance {ATTENDANCE_COLUMNS}",
       """CREATE TABLE homepage.posts (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, member_id INT,
          title VARCHAR(200), body TEXT, created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
          lucky DOUBLE) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
       TYPES_DDL,
       "CREATE TABLE homepage.nopk (a INT, b VARCHAR(20), c DOUBLE) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
       """CREATE TABLE wiki.pages (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, slug VARCHAR(100) UNIQUE,
          title VARCHAR(200), body MEDIUMTEXT, views INT NOT NULL DEFAULT 0,
          updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))
          ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
       "CREATE TABLE wiki.page_log (page_id INT, action VARCHAR(20), at DATETIME) ENGINE=InnoDB",
       "CREATE TABLE other.audit (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(200)) ENGINE=InnoDB",
       )
    members = ", ".join(f"('회원{i}', 'm{i}@club.ac.kr', '2023-03-0{1 + i % 9} 10:00:00', {i})" for i in range(1, 21))
    days = [f"2023-07-{d:02d}" for d in range(1, 11)]
    att = ", ".join(f"({m}, '{d}')" for m in range(1, 21) for d in days)
    posts = ", ".join(f"({i}, '공지 {i} 📢', '본문 {i}: 동아리 홈페이지 🎉 é', 0.{i})" for i in range(1, 11))
    _x(root,
       f"INSERT INTO homepage.members (name, email, joined, points) VALUES {members}",
       f"INSERT INTO homepage.attendance (member_id, day) VALUES {att}",
       f"INSERT INTO homepage.posts (member_id, title, body, lucky) VALUES {posts}",
       types_insert(0),
       "INSERT INTO homepage.nopk VALUES (1, 'dup', 1.5), (1, 'dup', 1.5), (2, 'two', NULL), (2, 'two', NULL)",
       "INSERT INTO wiki.pages (slug, title, body) VALUES " + ", ".join(
           f"('page-{i}', '위키 {i}', '{'내용 ' * 20}{i} 😀')" for i in range(1, 11)),
       "INSERT INTO wiki.page_log VALUES (1, 'create', '2023-01-01 00:00:00'), (1, 'create', '2023-01-01 00:00:00')",
       "INSERT INTO other.audit (msg) VALUES ('one'), ('two'), ('three')")


def _between_dumps(src, c: _Counts) -> None:
    """After the homepage dump, before the wiki dump: homepage changes must be replayed,
    wiki changes must not (the wiki dump already holds them)."""
    h = _connect(src, "homepage")
    w = _connect(src, "wiki")
    n = _x(h, "INSERT INTO attendance (member_id, day) VALUES (1,'2023-07-11'),(2,'2023-07-11'),(3,'2023-07-11')")
    c.add("homepage.attendance", "inserted", n)
    _x(h, "UPDATE members SET points = points + 10 WHERE id <= 3")
    _x(w, "UPDATE pages SET views = views + 1 WHERE id = 1",
       "INSERT INTO page_log VALUES (1, 'view', NOW())",
       "INSERT INTO pages (slug, title, body) VALUES ('between', '사이', 'written between the dumps')")
    # one transaction touching both databases
    _x(h, "BEGIN",
       "UPDATE members SET points = points + 1 WHERE id = 4",
       "UPDATE wiki.pages SET views = views + 100 WHERE id = 2",
       "INSERT INTO wiki.page_log VALUES (2, 'cross', NOW())")
    n = _x(h, "INSERT INTO attendance (member_id, day) VALUES (6, '2023-07-11')")
    _x(h, "COMMIT")
    c.add("homepage.attendance", "inserted", n)
    h.close()
    w.close()


def _workload(src, c: _Counts) -> None:
    nodb = _connect(src)
    h = _connect(src, "homepage")
    o = _connect(src, "other")
    w = _connect(src, "wiki")

    # every column type, written without a default database
    _x(nodb, types_insert(10))
    # NOW()/CURRENT_TIMESTAMP defaults; the seconds matter
    _x(h, "INSERT INTO posts (member_id, title, body) VALUES (1, '첫 글', '시간 기록 ⏰')")
    time.sleep(1.1)
    _x(h, "INSERT INTO posts (member_id, title, body, created_at) VALUES (2, 'now()', 'NOW(6)', NOW(6))")
    n = _x(h, "INSERT INTO attendance (member_id, day) VALUES (7, CURRENT_DATE), (8, CURRENT_DATE)")
    c.add("homepage.attendance", "inserted", n)
    # AUTO_INCREMENT, LAST_INSERT_ID() in the next statement, RAND() without a seed
    _x(h, "INSERT INTO members (name, email) VALUES ('김철수', 'kim@club.ac.kr')",
       "INSERT INTO posts (member_id, title, lucky) VALUES (LAST_INSERT_ID(), '가입 인사', RAND())",
       "INSERT INTO posts (member_id, title, lucky) VALUES (1, 'rand', RAND() * 1000)")
    # user variables: string, integer, decimal, NULL
    _x(h, "SET @x := 'héllo 한글 😀', @n := 42, @d := 3.14159265358979323846264338327950, @nul := NULL",
       "INSERT INTO posts (member_id, title, body, lucky) VALUES (@n, @x, @nul, @d)",
       "INSERT INTO types (id, v_utf, i, d65, t_lat) VALUES (30, @x, @n, @d, @nul)")
    # non-default sql_mode: silent truncation, and NO_BACKSLASH_ESCAPES
    _x(h, "SET SESSION sql_mode = ''",
       "INSERT INTO members (name) VALUES (CONCAT(REPEAT('긴이름', 30), 'end'))",
       "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'",
       r"INSERT INTO posts (member_id, title, body) VALUES (3, 'C:\new\table', 'a\0b\\c')",
       "SET SESSION sql_mode = DEFAULT")
    # auto_increment_increment / offset
    _x(h, "SET SESSION auto_increment_increment = 5, auto_increment_offset = 3")
    n = _x(h, "INSERT INTO attendance (member_id, day) VALUES (9, '2023-07-12'), (10, '2023-07-12'), (11, '2023-07-12')")
    c.add("homepage.attendance", "inserted", n)
    _x(h, "INSERT INTO members (name) VALUES ('step5')",
       "SET SESSION auto_increment_increment = 1, auto_increment_offset = 1")
    # time_zone and character set of the session
    _x(h, "SET SESSION time_zone = '+09:00'",
       "INSERT INTO types (id, ts, dtm, v_utf) VALUES (31, '2023-08-19 02:14:00.123', NOW(6), 'KST')",
       "SET SESSION time_zone = DEFAULT")
    lat = _connect(src, "homepage", charset="latin1")
    _x(lat, "INSERT INTO types (id, v_lat, c_lat, v_utf) VALUES (32, 'café naïve', 'é', 'ÿ latin1 client')")
    lat.close()
    # a temporary table living across other sessions' events
    t = _connect(src, "homepage")
    _x(t, "CREATE TEMPORARY TABLE tmp_att (member_id INT, day DATE)",
       "INSERT INTO tmp_att VALUES (12, '2023-07-13'), (13, '2023-07-13'), (14, '2023-07-13')")
    n = _x(h, "INSERT INTO attendance (member_id, day) VALUES (15, '2023-07-13')")
    c.add("homepage.attendance", "inserted", n)
    n = _x(t, "INSERT INTO attendance (member_id, day) SELECT member_id, day FROM tmp_att")
    c.add("homepage.attendance", "inserted", n)
    _x(t, "DROP TEMPORARY TABLE tmp_att")
    t.close()
    time.sleep(1.1)
    # a multi-statement transaction
    _x(h, "BEGIN",
       "INSERT INTO members (name, email) VALUES ('이영희', NULL)",
       "UPDATE posts SET body = CONCAT(body, ' (수정됨)') WHERE id <= 3")
    d1 = _x(h, "DELETE FROM attendance WHERE member_id = 20 AND day = '2023-07-10'")
    u1 = _x(h, "UPDATE attendance SET day = '2023-06-30' WHERE member_id = 19 AND day = '2023-07-10'")
    i1 = _x(h, "INSERT INTO wiki.page_log VALUES (3, 'tx', NOW())")
    _x(h, "COMMIT")
    c.add("homepage.attendance", "deleted", d1)
    c.add("homepage.attendance", "updated", u1)
    c.add("wiki.page_log", "inserted", i1)
    # a rolled-back transaction leaves nothing
    _x(h, "BEGIN",
       "INSERT INTO attendance (member_id, day) VALUES (99, '2023-07-01')",
       "UPDATE members SET points = 0",
       "DELETE FROM types",
       "ROLLBACK")
    # column types: updates (to values, to NULL, from NULL) and a delete
    _x(h, "UPDATE types SET tiu = tiu - 1, biu = biu - 1, v_utf = CONCAT(v_utf, ' 수정'), st = '', "
          "en = NULL, js = JSON_SET(js, '$.k', 'v 🎈'), tm2 = '-00:00:02.50' WHERE id = 11",
       "UPDATE types SET ti = NULL, d65 = NULL, bl = NULL, b64 = NULL, ts = NULL, yr = NULL, st = NULL WHERE id = 13",
       "UPDATE types SET ti = 5, v_lat = 'naïve', bin4 = X'FF000000', tm6 = '-00:00:00.5', yr = '0000', "
       "ts = '0000-00-00 00:00:00', st = '', vbin = X'', bl = X'' WHERE id = 14",
       "DELETE FROM types WHERE id = 12",
       "UPDATE types SET d10 = -d10, dbl = -dbl, f = f * 2 WHERE id IN (1, 3)",
       "DELETE FROM types WHERE id = 4")
    # a table without a primary key, with duplicate rows
    _x(h, "INSERT INTO nopk VALUES (1, 'dup', 1.5), (3, 'three', 3.25), (3, 'three', 3.25)",
       "UPDATE nopk SET c = 9.75 WHERE a = 3 LIMIT 1",
       "DELETE FROM nopk WHERE a = 2 LIMIT 1",
       "UPDATE nopk SET b = NULL WHERE a = 1 AND c = 1.5 LIMIT 1")
    # the application's default database is `other`, names qualified
    _x(o, "INSERT INTO homepage.posts (member_id, title, body) VALUES (5, 'from other', '다른 DB에서 ✉')",
       "UPDATE homepage.members SET points = points + 5 WHERE id BETWEEN 5 AND 8",
       "INSERT INTO wiki.pages (slug, title, body) VALUES ('from-other', '외부', 'qualified')")
    n = _x(o, "INSERT INTO wiki.page_log VALUES (4, 'other', NOW()), (4, 'other', NOW())")
    c.add("wiki.page_log", "inserted", n)
    n = _x(o, "DELETE FROM homepage.attendance WHERE member_id = 18 AND day >= '2023-07-09'")
    c.add("homepage.attendance", "deleted", n)
    # writes to `other` with homepage as the default database: must be left out
    _x(h, "INSERT INTO other.audit (msg) VALUES ('from homepage')",
       "UPDATE other.audit SET msg = CONCAT(msg, '!') WHERE id <= 2",
       "INSERT INTO other.audit (msg) SELECT name FROM homepage.members WHERE id <= 3",
       "DELETE FROM other.audit WHERE id = 3")
    # wiki's own traffic
    _x(w, "UPDATE pages SET views = views + 7, title = CONCAT(title, ' ✏') WHERE id IN (3, 4)")
    n = _x(w, "INSERT INTO page_log VALUES (3, 'view', NOW()), (3, 'view', NOW()), (5, 'view', NULL)")
    c.add("wiki.page_log", "inserted", n)
    n = _x(w, "DELETE FROM page_log WHERE action = 'create'")
    c.add("wiki.page_log", "deleted", n)
    n = _x(w, "UPDATE page_log SET action = 'seen' WHERE page_id = 5")
    c.add("wiki.page_log", "updated", n)
    for conn in (nodb, h, o, w):
        conn.close()


def _ddl_mid_stream(src, c: _Counts) -> None:
    nodb = _connect(src)
    h = _connect(src, "homepage")
    o = _connect(src, "other")
    # ADD COLUMN without USE, rows changed after it
    _x(nodb, "ALTER TABLE homepage.members ADD COLUMN nickname VARCHAR(50) NOT NULL DEFAULT '닉네임' AFTER name")
    _x(h, "UPDATE members SET nickname = CONCAT('닉', id) WHERE id % 2 = 0",
       "INSERT INTO members (name, nickname, email) VALUES ('박민수', '민수', 'park@club.ac.kr')")
    # ADD then DROP COLUMN with USE, rows changed in between
    _x(h, "ALTER TABLE posts ADD COLUMN legacy INT DEFAULT 7",
       "UPDATE posts SET legacy = id * 3 WHERE id < 5",
       "INSERT INTO posts (member_id, title, legacy) VALUES (2, 'legacy', 99)",
       "ALTER TABLE posts DROP COLUMN legacy",
       "UPDATE posts SET title = CONCAT(title, ' ✔') WHERE id = 2")
    # DROP COLUMN without USE after the column changed
    _x(h, "UPDATE members SET email = CONCAT('new-', email) WHERE id <= 5")
    _x(nodb, "ALTER TABLE homepage.members DROP COLUMN email")
    _x(h, "INSERT INTO members (name) VALUES ('after drop column')")
    # RENAME TABLE without USE, then writes under the new name
    _x(nodb, "RENAME TABLE homepage.nopk TO homepage.dupes")
    _x(o, "INSERT INTO homepage.dupes VALUES (7, 'renamed', 7.5), (7, 'renamed', 7.5)")
    # CREATE INDEX with USE, DROP INDEX without; one index kept
    _x(h, "CREATE INDEX idx_title ON posts (title)")
    _x(h, "INSERT INTO posts (member_id, title) VALUES (4, 'indexed')")
    _x(nodb, "DROP INDEX idx_title ON homepage.posts",
       "CREATE INDEX idx_day ON homepage.attendance (day)")
    n = _x(h, "INSERT INTO attendance (member_id, day) VALUES (16, '2023-07-14')")
    c.add("homepage.attendance", "inserted", n)
    # a new table created without USE, written from `other`
    _x(nodb, """CREATE TABLE homepage.comments (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, post_id INT,
             body TEXT, created_at DATETIME DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""")
    _x(o, "INSERT INTO homepage.comments (post_id, body) VALUES (1, '댓글 💬'), (1, 'second'), (2, NULL)",
       "UPDATE homepage.comments SET body = '수정된 댓글' WHERE id = 2")
    _x(h, "DELETE FROM comments WHERE body IS NULL")
    # wiki DDL without USE
    _x(nodb, "ALTER TABLE wiki.pages ADD COLUMN lang CHAR(2) NOT NULL DEFAULT 'ko'",
       "UPDATE wiki.pages SET lang = 'en' WHERE id = 3")
    for conn in (nodb, h, o):
        conn.close()
