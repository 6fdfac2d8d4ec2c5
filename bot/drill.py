"""The demo incident drill: `restore-bot drill` (`run`), the whole story on local servers.

No accounts, no configuration. A source server with a binlog gets the club's schema (members,
attendance, posts and a wiki in a second database), two dumps taken at different moments, a
day of traffic, then the disaster. The engine plans the restore on its own and restores into a
fresh server acting as production; the result is checked against checksums taken just before
the disaster.

The backup drill that proves real backups restore (`/restore drill`) is restore.live.drill.
"""
from __future__ import annotations

import queue
import random
import subprocess
import threading
import time
from pathlib import Path

from rich.console import Console

from bot.config import load_settings
from bot.console import ConsoleSession, OpenAccess
from handlers.alerts import AlertStore
from handlers.jobstore import JobState, JobStore
from restore.live.watcher import Alert, Watcher
from restore.mysql.leftovers import OwnedDir
from restore.mysql.sandbox import Sandbox
from restore.replay.verify import table_checksums

console = Console()

SCHEMA = [
    "CREATE DATABASE homepage CHARACTER SET utf8mb4",
    """CREATE TABLE homepage.members (
        id INT AUTO_INCREMENT PRIMARY KEY, login VARCHAR(32) NOT NULL UNIQUE,
        name VARCHAR(50) NOT NULL, joined DATE NOT NULL, role ENUM('member','admin') DEFAULT 'member')""",
    """CREATE TABLE homepage.attendance (
        id INT AUTO_INCREMENT PRIMARY KEY, member_id INT NOT NULL, day DATE NOT NULL,
        checked_at DATETIME(3) NOT NULL, UNIQUE KEY one_per_day (member_id, day))""",
    """CREATE TABLE homepage.posts (
        id INT AUTO_INCREMENT PRIMARY KEY, author INT NOT NULL, title VARCHAR(200) NOT NULL,
        body TEXT, created TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3))""",
    "CREATE DATABASE wiki CHARACTER SET utf8mb4",
    """CREATE TABLE wiki.pages (
        id INT AUTO_INCREMENT PRIMARY KEY, slug VARCHAR(100) NOT NULL UNIQUE, content MEDIUMTEXT,
        revision INT UNSIGNED NOT NULL DEFAULT 1)""",
]
NAMES = ["김키퍼", "이해커", "박보안", "최리버싱", "정포렌식", "강웹", "조시스템", "윤암호"]


def _dump(src: Sandbox, path: Path, db: str) -> None:
    with open(path, "wb") as fh:
        subprocess.run(["mariadb-dump", *src.client_args(), "--master-data=2", "--gtid",
                        "--single-transaction", "--databases", db], stdout=fh, check=True)


def _traffic(cur, rng: random.Random, rounds: int) -> None:
    for i in range(rounds):
        member = rng.randint(1, len(NAMES))
        cur.execute("INSERT IGNORE INTO homepage.attendance (member_id, day, checked_at) "
                    "VALUES (%s, CURDATE() - INTERVAL %s DAY, NOW(3))", (member, rng.randint(0, 30)))
        if i % 3 == 0:
            cur.execute("INSERT INTO homepage.posts (author, title, body) VALUES (%s, %s, %s)",
                        (member, f"세미나 후기 #{i} 🎉", "오늘 배운 것: binlog 복구 🔥" * rng.randint(1, 5)))
        if i % 5 == 0:
            cur.execute("INSERT INTO wiki.pages (slug, content) VALUES (%s, %s) "
                        "ON DUPLICATE KEY UPDATE content = VALUES(content), revision = revision + 1",
                        (f"page-{rng.randint(1, 40)}", f"위키 문서 {i} ✍️"))
        if i % 17 == 0:
            cur.execute("UPDATE homepage.members SET role = 'admin' WHERE id = %s", (member,))


class _Watching:
    """The watcher on the source, as `serve` runs it, with the alert kept for the console."""

    def __init__(self, src: Sandbox, work: Path) -> None:
        self.store = AlertStore(str(work / "watch.sqlite3"), src.url)
        self.alerts: queue.Queue = queue.Queue()
        self.watcher = Watcher(src.dsn, self.store, self._seen, databases=("homepage", "wiki"))
        self.seen_at = 0.0

    def _seen(self, alert: Alert) -> None:
        self.seen_at = time.time()
        self.alerts.put(alert)

    def __enter__(self) -> "_Watching":
        threading.Thread(target=self.watcher.run_forever, daemon=True).start()
        deadline = time.monotonic() + 10
        while self.store.load() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # connected and streaming from the current end
        return self

    def wait(self, timeout: float = 10.0) -> Alert | None:
        try:
            return self.alerts.get(timeout=timeout)
        except queue.Empty:
            return None

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop()


def _second_operator(prompt: str) -> str:
    """The drill's stand-in for a second person at the approval prompt."""
    console.print(prompt + "second-operator")
    return "second-operator"


def run(rounds: int = 600, seed: int = 7) -> int:
    """Returns 0 when the restored data equals the state just before the disaster."""
    # restore-bot-drill-<pid>-<hex>: removed at the end, or by the next start's sweep if we are killed
    with OwnedDir("restore-bot-drill") as work:
        return _run(work.path, rounds, seed)


def _run(work: Path, rounds: int, seed: int) -> int:
    rng = random.Random(seed)
    t0 = time.monotonic()
    with Sandbox(binlog=True, binlog_format="MIXED") as src, Sandbox() as prod:
        console.print(f"[bold]1. source[/] MariaDB with binlog (MIXED) on port {src.port}")
        with src.connect() as conn, conn.cursor() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)
            for i, name in enumerate(NAMES):
                cur.execute("INSERT INTO homepage.members (login, name, joined) VALUES (%s, %s, '2023-03-02')",
                            (f"user{i}", name))
            _traffic(cur, rng, rounds // 3)
            _dump(src, work / "init.sql", "homepage")
            _traffic(cur, rng, rounds // 3)
            _dump(src, work / "init_wiki.sql", "wiki")
            console.print("[bold]2. dumps[/] init.sql and init_wiki.sql taken at different moments")
            _traffic(cur, rng, rounds)
            before = table_checksums(conn, ["homepage", "wiki"])
            with _Watching(src, work) as watching:
                cur.execute("USE wiki")
                sent = time.time()
                cur.execute("DROP DATABASE homepage")
                console.print("[bold red]3. disaster[/] DROP DATABASE homepage (run from another database)")
                alert = watching.wait()
            if alert is None:
                console.print("[red]   the watcher raised no alert within 10 s[/]")
            else:
                console.print(f"   [bold]🚨 alert[/] {alert.reason} at binlog {alert.file}:{alert.pos} "
                              f"(GTID {alert.gtid}) — raised {1000 * (watching.seen_at - sent):.0f} ms after "
                              "the statement was sent")
        with prod.connect() as conn, conn.cursor() as cur:  # production, where the app kept running
            cur.execute("CREATE DATABASE IF NOT EXISTS homepage")
            cur.execute("CREATE TABLE homepage.attendance (id INT AUTO_INCREMENT PRIMARY KEY, member_id INT, day DATE)")
            cur.execute("INSERT INTO homepage.attendance (member_id, day) VALUES (3, CURDATE())")
            console.print("   on production the application kept writing: it recreated attendance and inserted a row")
        # Steps 4-6 go through the console transport, exactly as an operator would type them.
        config = work / "restore-bot.toml"
        config.write_text(
            f'[source]\nsnapshots = ["{work / "init.sql"}", "{work / "init_wiki.sql"}"]\n'
            f'binlogs = "{src.binlog_dir}"\n'
            f'[targets.prod]\ndsn = "mysql://root@127.0.0.1:{prod.port}?unix_socket={prod.socket}"\n'
            f'[store]\npath = "{work / "jobs.sqlite3"}"\n')
        settings = load_settings(str(config), env={})
        session = ConsoleSession(settings, JobStore(settings.store_path), OpenAccess(), user="first-operator",
                                 console=console, ask=_second_operator)
        with session:
            jobs = {}
            for step, line in enumerate(("plan", "stage", "prod"), start=4):
                console.print(f"[bold]{step}. restore> /restore {line}[/]")
                jobs[line] = session.wait(session.run_line(line), timeout=600)
                if jobs[line] is None or jobs[line].state != JobState.SUCCEEDED:
                    break
        ok = all(j is not None and j.state == JobState.SUCCEEDED for j in jobs.values()) and len(jobs) == 3
        with prod.connect() as conn:
            after = table_checksums(conn, ["homepage", "wiki"])
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES LIKE '%\\_\\_before\\_%'")
                aside = [r[0] for r in cur.fetchall()]
    same = after == before
    console.print(f"[bold]7. verify[/] {len(after)} tables; CHECKSUM TABLE equals the pre-disaster state: "
                  + ("[green]yes[/]" if same else "[red]NO[/]"))
    for name, (rows, checksum) in sorted(after.items()):
        console.print(f"   {name:24} {rows:6} rows  checksum {checksum}")
    if aside:
        console.print(f"   kept aside on prod (the application's writes after the disaster): {', '.join(aside)}")
    console.print(f"Drill {'[green]succeeded[/]' if same and ok else '[red]failed[/]'} "
                  f"in {time.monotonic() - t0:.1f}s")
    return 0 if same and ok else 1
