"""DDL mid-stream applies in order, with USE and without it (qualified names, or another default db).

The story's incident already mixes DDL into its workload (see incident.py, checked in every
format by test_restore_types); this test packs many more DDL kinds into a small database, with
rows changed between each step so that replaying a row or statement against the wrong table
shape shows up in CHECKSUM TABLE, and compares table definitions too.
"""
from __future__ import annotations

import pytest

from tests.support.db import assert_restored, format_id, restore_args
from tests.support.incident_factory import In, IncidentSpec, Mark

# (default db or None, statement); `blog` is restored, `other` is not.
STEPS = [
    # without USE: qualified names
    (None, "ALTER TABLE blog.posts ADD COLUMN summary VARCHAR(50) DEFAULT '요약' AFTER title"),
    ("blog", "UPDATE posts SET summary = CONCAT('s', id) WHERE id % 2 = 0"),
    ("blog", "INSERT INTO posts (title, summary, body) VALUES ('added', 'after add', '😀')"),
    (None, "ALTER TABLE blog.posts DROP COLUMN body"),
    ("blog", "UPDATE posts SET title = CONCAT(title, ' ✔') WHERE id <= 3"),
    (None, "CREATE INDEX ix_summary ON blog.posts (summary)"),
    ("blog", "DELETE FROM posts WHERE id = 4"),
    (None, "RENAME TABLE blog.posts TO blog.articles"),
    ("blog", "INSERT INTO articles (title, summary) VALUES ('renamed', 'x')"),
    (None, "CREATE TABLE blog.tags (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(30) NOT NULL, UNIQUE KEY (name))"),
    (None, "INSERT INTO blog.tags (name) VALUES ('mysql'), ('복구'), ('binlog')"),
    # from another default database
    ("other", "ALTER TABLE blog.comments ADD COLUMN score DECIMAL(5,2) NOT NULL DEFAULT 0"),
    ("other", "UPDATE blog.comments SET score = id * 1.25 WHERE id <= 2"),
    ("other", "ALTER TABLE blog.comments MODIFY COLUMN note VARCHAR(100) CHARACTER SET latin1"),
    ("other", "INSERT INTO blog.comments (post_id, note, score) VALUES (1, 'é longer note now', -3.5)"),
    ("other", "ALTER TABLE other.t ADD COLUMN y INT"),              # not ours: left out
    ("other", "INSERT INTO other.t VALUES (5, 6)"),
    # with USE
    ("blog", "ALTER TABLE comments CHANGE COLUMN note remark VARCHAR(120) CHARACTER SET utf8mb4"),
    ("blog", "UPDATE comments SET remark = CONCAT(remark, ' 한글') WHERE id <= 2"),
    ("blog", "ALTER TABLE comments ADD COLUMN first_col INT NOT NULL DEFAULT 9 FIRST, ADD INDEX ix_post (post_id)"),
    ("blog", "INSERT INTO comments (post_id, remark) VALUES (2, 'after first_col')"),
    ("blog", "DROP INDEX ix_summary ON articles"),
    ("blog", "ALTER TABLE articles ADD COLUMN views BIGINT UNSIGNED NOT NULL DEFAULT 18446744073709551615"),
    ("blog", "UPDATE articles SET views = id WHERE id > 5"),
    ("blog", "ALTER TABLE articles MODIFY COLUMN title VARCHAR(300) NOT NULL"),
    ("blog", "RENAME TABLE tags TO labels, comments TO replies"),
    ("blog", "INSERT INTO labels (name) VALUES ('renamed twice')"),
    ("blog", "UPDATE replies SET score = score + 1 WHERE id >= 2"),
    ("blog", "CREATE TABLE archive LIKE articles"),
    ("blog", "INSERT INTO archive SELECT * FROM articles WHERE id <= 2"),
    ("blog", "CREATE TABLE stats (k VARCHAR(10) PRIMARY KEY, n INT) SELECT 'articles' AS k, COUNT(*) AS n FROM articles"),
    ("blog", "ALTER TABLE archive ENGINE=InnoDB, COMMENT 'rebuilt'"),
    ("blog", "ALTER TABLE replies DROP COLUMN first_col"),
    ("blog", "DELETE FROM replies WHERE id = 1"),
    # an ENUM column added without USE, then written
    (None, "ALTER TABLE blog.labels ADD COLUMN color ENUM('red','green') DEFAULT 'green'"),
    ("blog", "UPDATE labels SET color = 'red' WHERE name = 'mysql'"),
]


BLOG = IncidentSpec(
    databases=("blog",),
    schema=["CREATE DATABASE blog CHARACTER SET utf8mb4", "CREATE DATABASE other",
            "CREATE TABLE blog.posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(100) NOT NULL, "
            "body TEXT) DEFAULT CHARSET=utf8mb4",
            "CREATE TABLE blog.comments (id INT AUTO_INCREMENT PRIMARY KEY, post_id INT, "
            "note VARCHAR(20)) DEFAULT CHARSET=utf8mb4",
            "CREATE TABLE other.t (x INT)",
            "INSERT INTO blog.posts (title, body) VALUES " + ", ".join(
                f"('글 {i}', '본문 {i} 🎉')" for i in range(1, 9)),
            "INSERT INTO blog.comments (post_id, note) VALUES (1, 'good'), (1, 'é'), (2, NULL)"],
    traffic=[In(db, statement) for db, statement in STEPS],
    disaster=["DROP DATABASE blog"])


@pytest.mark.parametrize("combo", [("ROW", "NO_LOG"), ("MIXED", None), ("STATEMENT", None)], ids=format_id)
def test_ddl_mid_stream_with_and_without_use(combo, source_factory, target, tmp_path, cli):
    inc = BLOG.build(source_factory(*combo), tmp_path)
    res = cli(*restore_args(inc, target))
    assert res.code == 0, res
    stop = res.plan["stop"]
    assert (stop["tx_file"], stop["tx_pos"]) == (inc.disaster_file, inc.disaster_pos), stop
    assert set(inc.before) == {"blog.articles", "blog.replies", "blog.labels", "blog.archive", "blog.stats"}
    assert_restored(target, inc.before, inc.before_schema, dbs=("blog",), absent=("other",))


def test_conflict_right_after_a_ddl_is_reported_as_the_conflict(source_factory, target, tmp_path, cli):
    """A DDL then a colliding INSERT: the error names the duplicate row, not a DDL re-run
    ("Duplicate key name") on the retry that looks for the failing event."""
    # a dump holding row 5 but not the index, restored from before the CREATE INDEX
    inc = IncidentSpec(
        databases=("shop",),
        schema=["CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY, v INT)",
                "INSERT INTO shop.t VALUES (1, 1)", Mark("start"),
                "CREATE INDEX ix ON shop.t (v)", "INSERT INTO shop.t VALUES (5, 5)", "DROP INDEX ix ON shop.t"],
        coordinates=False,
    ).build(source_factory("ROW", "MINIMAL"), tmp_path)
    file, start = inc.marks["start"]
    res = cli(*restore_args(inc, target, "--start", f"{file}:{start}", "--stop-before", "end"))
    assert res.code == 2, res
    msg = res.error["message"]
    assert "Duplicate key name" not in msg, res
    assert "PRIMARY" in msg and "5" in msg and "shop.t" in msg, res
