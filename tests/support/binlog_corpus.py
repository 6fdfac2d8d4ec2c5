"""The binlog corpus of the tests: real files written by MySQL 4.0-8.0 and MariaDB 5.5-10.6 servers.

They come from the MariaDB server's own test suite, which Debian ships as the package
`mariadb-test-data` (installed by `./dev setup`, GPLv2): /usr/share/mysql/mysql-test, files
such as std_data/*.000001 and suite/binlog/std_data/*.001. Nothing of it is copied into this
repository; tests/corpus/SOURCES.md says which files are used, what wrote each one and what
restore-bot does with it. Without the package the tests that use it fail (they do not skip):
CI installs it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from restore.binlog import events as be

ROOT = Path(os.environ.get("RESTORE_BOT_MYSQL_TEST", "/usr/share/mysql/mysql-test"))
MAGIC = b"\xfebin"


def require() -> Path:
    """The corpus root, or a test failure that says how to get it."""
    if not (ROOT / "std_data").is_dir():
        pytest.fail(f"the binlog corpus is missing: {ROOT}/std_data does not exist. Run ./dev setup "
                    "(it installs the Debian package mariadb-test-data), or point RESTORE_BOT_MYSQL_TEST "
                    "at a mysql-test directory", pytrace=False)
    return ROOT


def path(rel: str) -> Path:
    p = require() / rel
    if not p.is_file():
        pytest.fail(f"{p} is missing from the installed mariadb-test-data {package_version()}; "
                    "run ./dev setup, or update the corpus tables (tests/corpus/SOURCES.md)", pytrace=False)
    return p


def binlog_files(max_size: int = 2_000_000) -> list[str]:
    """Every binlog or relay-log file of the corpus smaller than `max_size`, relative to ROOT."""
    out = []
    for p in require().rglob("*"):
        if p.is_file() and not p.is_symlink() and p.stat().st_size < max_size:
            with p.open("rb") as fh:
                if fh.read(4) == MAGIC:
                    out.append(str(p.relative_to(ROOT)))
    return sorted(out)


def format_description(p: Path) -> be.FormatDescription | None:
    """The file's format-description event, or None (a MySQL 4.x file starts with a START_V3)."""
    data = p.read_bytes()[:4096]
    if len(data) < 4 + be.HEADER_LEN:
        return None
    _, type_, _, size, _, _ = be.parse_header(data, 4)
    if type_ != be.FORMAT_DESCRIPTION:
        return None
    return be.parse_format_description(data[4:4 + size])


def install(rel: str, directory: Path, name: str = "binlog.000001") -> Path:
    """Copy a corpus file into `directory` as `name` (the reader wants NAME.000001); the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path(rel), directory / name)
    return directory


def synthetic_dump(p: Path, dbs: list[str], start: str = "binlog.000001:4", charset: str = "utf8mb4",
                   tables: tuple[str, ...] = ()) -> Path:
    """A dump of empty databases taken at `start`: plan replays (and counts) every event after it.
    `charset` is the databases' default: for a replay, that of the server that wrote the binlog
    (latin1 before MySQL 8 and MariaDB 11.6), or a table it creates gets other column types.
    `tables`: CREATE TABLE statements run in the first database (tables the binlog's server had
    before the file starts)."""
    file, pos = start.split(":")
    text = ["-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB (synthetic: empty databases)",
            f"-- CHANGE MASTER TO MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos};"]
    for db in dbs:
        text += [f"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{db}` /*!40100 DEFAULT CHARACTER SET {charset} */;",
                 f"USE `{db}`;"]
    if tables:
        text += [f"USE `{dbs[0]}`;", *(f"{ddl};" for ddl in tables)]
    text.append("-- Dump completed on 2026-12-02 12:00:00")
    p.write_text("\n".join(text) + "\n")
    return p


def package_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "mariadb-test-data"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "(not installed as a package)"
