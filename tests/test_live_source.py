"""`--binlogs mysql://...`: reading through the replication protocol gives the same restore."""
from __future__ import annotations

from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums, target_url
from tests.support.incident_factory import IncidentSpec, each


def test_live_server_equals_offline_files(cli, tmp_path, target):
    insert = "INSERT INTO live.t (v, at) VALUES (%s, NOW(6))"
    spec = IncidentSpec(
        databases=("live",),
        schema=["CREATE DATABASE live",
                "CREATE TABLE live.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), at DATETIME(6))",
                "INSERT INTO live.t (v, at) VALUES ('a', NOW(6))"],
        traffic=[each(insert, [(f"v{i}",) for i in range(21)]), "FLUSH BINARY LOGS",
                 each(insert, [(f"v{i}",) for i in range(21, 50)]),
                 "UPDATE live.t SET v = CONCAT(v, '!') WHERE id % 3 = 0"],
        disaster=["TRUNCATE TABLE live.t"],
        after=["INSERT INTO live.t (v) VALUES ('after')"])
    with Sandbox(binlog=True, binlog_format="MIXED") as src:
        inc = spec.build(src, tmp_path, copy=False)   # the server's own files: it keeps running
        snap = inc.snapshot
        offline = cli("plan", "--snapshot", snap, "--binlogs", inc.binlog_dir)
        live = cli("plan", "--snapshot", snap, "--binlogs", src.url)
        assert offline.code == 0 and live.code == 0, (offline, live)
        for key in ("stop", "transactions", "tables", "end"):
            assert live.plan[key] == offline.plan[key], key
        assert "TRUNCATE" in live.plan["stop"]["reason"]

        res = cli("restore", "--snapshot", snap, "--binlogs", src.url, "--target", target_url(target), "--yes")
        assert res.code == 0, res
    with target.connect() as conn:
        assert checksums(conn, ["live"]) == inc.before


def test_live_server_unreachable(cli, tmp_path):
    snap = tmp_path / "x.sql"
    snap.write_text("-- MariaDB dump\n-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=4;\n"
                    "CREATE DATABASE x;\nUSE `x`;\nCREATE TABLE `t` (\n  `a` int(11) NOT NULL\n);\n-- Dump completed\n")
    res = cli("plan", "--snapshot", snap, "--binlogs", "mysql://repl:hunter2@127.0.0.1:1")
    assert res.code == 2, res
    assert "hunter2" not in res.raw and "hunter2" not in res.err, res
    assert "127.0.0.1:1" in res.error["message"]
