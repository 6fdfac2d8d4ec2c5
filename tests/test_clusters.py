"""Named clusters: one bot for several databases, each with its own dumps, binlogs, targets and channel.

The config and the parse are checked without servers. Then one real `restore-bot serve` with two
clusters, each from its own real incident (a source whose database was dumped, written to and
dropped), driven by signed Slack requests: both staged side by side, both restored into their
own production servers after a second person's approval, each exact by CHECKSUM TABLE; a command
that names no cluster is refused listing them; `/restore clusters` shows each one.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from handlers.app import application
from handlers.commands import CommandError, parse
from handlers.dispatcher import Reply
from handlers.jobstore import JobStore
from restore.mysql.leftovers import OwnedDir
from restore.mysql.sandbox import Sandbox
from tests.support.db import checksums
from tests.support.fake_slack import FakeSlack, SlackSigner
from tests.support.incident_factory import IncidentSpec
from tests.support.slack_bot import APP1, CHANNEL, OPS1, OPS2, Bot, World, shut_down

BILL_CHANNEL = "CBILL"
TWO = """
[worker]
concurrency = 3

[slack]
channel = "CINC"

[clusters.homepage]
snapshots = ["home.sql"]
binlogs = "home-binlogs"

[clusters.homepage.targets.prod]
dsn = "mysql://restore@db1:3306"

[clusters.billing]
snapshots = ["bill.sql"]
binlogs = "mysql://repl@db2:3306"
channel = "CBILL"

[clusters.billing.watch]
source = "mysql://repl@db2:3306"
"""


# The README's two-cluster example, as it stands there.
README_EXAMPLE = """# Two databases, one bot: the homepage and billing, each on its own cluster.
[slack]
channel = "C0INCIDENTS"          # cards and alerts of a cluster without a channel of its own

[access]
operators = ["U0KIM", "U0LEE"]
approvers = ["U0PARK", "U0LEE"]

[oncall]                          # the rotation every cluster falls back to
rotation = ["U0KIM", "U0LEE"]
rotation_start = 2026-01-05
escalate_after_minutes = 5

[worker]
concurrency = 2                   # jobs at once: one per target of a cluster, clusters side by side

[store]
path = "/var/lib/restore-bot/restore-bot.sqlite3"

[clusters.homepage]
snapshots = ["/backups/homepage/home.sql"]
binlogs = "/var/lib/restore-bot/homepage-binlogs"     # the archive below: files, read offline

[clusters.homepage.targets.stage]
dsn = "sandbox"
[clusters.homepage.targets.prod]
dsn = "mysql://restore:${HOME_DB_PASSWORD}@db-home.internal:3306"
fence = "lock"
fence_users = ["homepage_app"]

[clusters.homepage.watch]
source = "mysql://repl:${HOME_REPL_PASSWORD}@db-home.internal:3306"
databases = ["home"]

[clusters.homepage.keep]
archive_dir = "/var/lib/restore-bot/homepage-binlogs"
backup_dir = "/backups/homepage"
backup_every_hours = 24
drill_every_hours = 168

[clusters.billing]
snapshots = ["/backups/billing/billing.sql"]
binlogs = "mysql://repl:${BILL_REPL_PASSWORD}@db-bill.internal:3306"   # a live server, read over replication
channel = "C0BILLING"             # billing's cards and alerts go here

[clusters.billing.targets.prod]
dsn = "mysql://restore:${BILL_DB_PASSWORD}@db-bill.internal:3306"

[clusters.billing.watch]
source = "mysql://repl:${BILL_REPL_PASSWORD}@db-bill.internal:3306"
mass_min_rows = 100

[clusters.billing.oncall]         # billing has its own rotation; the rest comes from [oncall]
rotation = ["U0CHOI", "U0JUNG"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "restore-bot.toml"
    path.write_text(text)
    return path


# -- the config --------------------------------------------------------------------------------------

def test_two_cluster_config(tmp_path):
    s = load_settings(str(_write(tmp_path, TWO)), env={})
    assert s.cluster_names == ("homepage", "billing") and s.concurrency == 3
    home, bill = s.cluster("homepage"), s.cluster("billing")
    assert home.source.snapshots == (str(tmp_path / "home.sql"),) and home.source.binlogs == tmp_path / "home-binlogs"
    assert set(home.targets) == {"stage", "prod"} and home.targets["stage"].dsn == "sandbox"
    assert set(bill.targets) == {"stage"} and bill.watch.source.redacted() == "mysql://repl@db2:3306"
    assert (home.slack.channel, bill.slack.channel) == ("CINC", BILL_CHANNEL)   # its own, else the global one
    with pytest.raises(KeyError):
        s.cluster(None)   # several: a name is needed
    assert "cluster billing: snapshots" in s.describe()


def test_the_readme_example_loads(tmp_path):
    env = {n: "pw" for n in ("HOME_DB_PASSWORD", "HOME_REPL_PASSWORD", "BILL_REPL_PASSWORD", "BILL_DB_PASSWORD")}
    s = load_settings(str(_write(tmp_path, README_EXAMPLE)), env=env)
    assert s.cluster_names == ("homepage", "billing") and s.concurrency == 2
    bill, home = s.cluster("billing"), s.cluster("homepage")
    assert bill.oncall.rotation == ("U0CHOI", "U0JUNG") and bill.oncall.escalate_after_minutes == 5
    assert home.oncall.rotation == ("U0KIM", "U0LEE") and home.keep.drill_every_hours == 168
    assert (home.slack.channel, bill.slack.channel) == ("C0INCIDENTS", "C0BILLING")
    described = s.describe()
    assert "pw" not in described and "cluster billing: " in described and "\nsource:" not in described


def test_the_old_single_source_file_is_the_cluster_default(tmp_path):
    s = load_settings(str(_write(tmp_path, '[source]\nsnapshots = ["a.sql"]\nbinlogs = "b"\n')), env={})
    assert s.cluster_names == ("default",) and s.clusters == {} and s.concurrency == 2
    assert s.cluster() is s and s.cluster("default") is s
    store = JobStore(tmp_path / "jobs.sqlite3")
    app = application(s, store, _Everyone(), channel=None)
    rec = _Rec()
    app.text("plan", "U1", "console", rec)   # no name needed, and the job carries none (as before)
    assert rec.job is not None and rec.job.args == {"stop_before": "auto", "skips": []}, rec.private
    rec = _Rec()
    app.text("plan billing", "U1", "console", rec)
    assert rec.job is None and "no cluster `billing` (choices: `default`)" in rec.private[0]


@pytest.mark.parametrize("text, where, what", [
    ('[clusters.Home]\nbinlogs = "b"', "[clusters.Home]", "must match"),
    ('[clusters.stage]\nbinlogs = "b"', "[clusters.stage]", "word of the commands"),
    ('[clusters.r3]\nbinlogs = "b"', "[clusters.r3]", "job id"),
    ('[clusters.home]\nsnapshots = ["a.sql"]', "[clusters.home] binlogs", "is required"),
    ('[clusters.home]\nbinlogs = "b"\nport = 1', "[clusters.home]", "unknown key 'port'"),
    ('[clusters.home]\nbinlogs = "b"\n[clusters.home.targets.prod]\ndsn = "sandbox"',
     "[clusters.home.targets.prod] dsn", 'prod cannot be "sandbox"'),
    ('[clusters.home]\nbinlogs = "b"\n[clusters.home.targets.stage]\nbatch = 0\ndsn = "sandbox"',
     "[clusters.home.targets.stage] batch", "an integer >= 1"),
    ('[clusters.home]\nbinlogs = "b"\n[clusters.home.watch]\ndatabases = ["x"]', "[clusters.home.watch]",
     "source is required"),
    ('[clusters.home]\nbinlogs = "b"\n[clusters.home.oncall]\nrotation = ["U1"]',
     "[clusters.home.oncall] rotation_start", "is required"),
    ('[source]\nbinlogs = "b"\n[clusters.home]\nbinlogs = "b"', "[source]", "move it into [clusters.home]"),
    ('[worker]\nconcurrency = 0', "[worker] concurrency", "an integer >= 1"),
    ('clusters = 3', "[clusters]", "must be a table"),
])
def test_config_errors_name_the_section_and_key(tmp_path, text, where, what):
    with pytest.raises(ConfigError) as err:
        load_settings(str(_write(tmp_path, text)), env={})
    assert f"restore-bot.toml: {where}" in str(err.value) and what in str(err.value), str(err.value)


# -- what is typed -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, cluster, extra", [
    ("plan homepage", "homepage", {}),
    ("stage billing stop=0-1-5 --restart", "billing", {"stop_before": "0-1-5", "restart": True}),
    ("prod --cluster wiki", "wiki", {}),
    ("stage cluster=Wiki", "wiki", {}),
    ("undo 0-1-5 prod billing", "billing", {"target": "prod", "spec": "0-1-5"}),
    ("undo mysql-bin.000002:1234 billing", "billing", {"target": "stage", "spec": "mysql-bin.000002:1234"}),
    ("undo auto", None, {"target": "stage"}),
    ("/backup now billing", "billing", {"name": "backup now"}),
    ("drill wiki", "wiki", {}),
    ("status R3", None, {"job": "R3"}),
])
def test_the_cluster_word_is_never_a_spec_a_target_or_a_job(text, cluster, extra):
    cmd = parse(text, "U1")
    assert cmd.cluster == cluster and all(getattr(cmd, k) == v for k, v in extra.items()), cmd


@pytest.mark.parametrize("text, says", [
    ("plan 0-1-5", "not a cluster name"), ("plan homepage billing", "unrecognized arguments"),
    ("stage homepage --cluster billing", "two clusters named"), ("undo 0-1-5 prod stage", "takes one SPEC"),
])
def test_bad_cluster_words_are_refused(text, says):
    with pytest.raises(CommandError) as err:
        parse(text, "U1")
    assert says in str(err.value)


class _Rec(Reply):
    def __init__(self, channel: str | None = None) -> None:
        super().__init__()
        self.channel = channel
        self.private: list[str] = []

    def ephemeral(self, text: str) -> None:
        self.private.append(text)


class _Everyone:
    def can_operate(self, user: str) -> bool:
        return True

    def can_approve(self, user: str) -> bool:
        return True


def test_several_clusters_a_command_must_name_one(tmp_path):
    s = load_settings(str(_write(tmp_path, TWO)), env={})
    store = JobStore(tmp_path / "jobs.sqlite3")
    app = application(s, store, _Everyone(), channel=CHANNEL)
    for text in ("plan", "stage", "prod", "drill", "undo 0-1-5", "/backup list"):
        rec = _Rec()
        app.text(text, "U1", "slack", rec)
        assert rec.job is None and rec.private == [
            "Several clusters are configured: name one, e.g. `/restore plan NAME` (choices: `homepage`, `billing`)."], \
            (text, rec.private)
    rec = _Rec()
    app.text("stage wiki", "U1", "slack", rec)
    assert rec.private == ["There is no cluster `wiki` (choices: `homepage`, `billing`)."]
    assert store.jobs() == []
    refused = [e for e in store.audit_log(20) if e["action"].startswith("refused")]
    assert len(refused) == 7 and "choices" in refused[0]["detail"]
    # named: each job carries its cluster, its card goes to its channel, the audit names it
    for text, channel in (("stage homepage", CHANNEL), ("stage billing", BILL_CHANNEL)):
        rec = _Rec(CHANNEL)
        app.text(text, "U1", "slack", rec)
        assert rec.job.args["cluster"] == text.split()[1] and rec.job.channel == channel, rec.private
        assert f"<#{channel}>" in rec.private[0] and f"({text.split()[1]})" in rec.private[0]
    rec = _Rec()
    app.text("stage billing", "U1", "slack", rec)   # one per target of a cluster
    assert rec.job is None and "is busy with job R2" in rec.private[0], rec.private
    assert any(e["action"] == "queued stage" and e["detail"] == "cluster=billing" for e in store.audit_log(20))


# -- against real servers: two clusters from chat -----------------------------------------------------

def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _incident(db: str, rows: int, workdir: Path):
    return IncidentSpec(
        databases=(db,),
        schema=[f"CREATE DATABASE {db}",
                f"CREATE TABLE {db}.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL DEFAULT 0)",
                f"INSERT INTO {db}.t (v) VALUES ('첫째'), ('둘째 🎉')",
                f"CREATE PROCEDURE {db}.work(k INT) BEGIN DECLARE i INT DEFAULT 0; WHILE i < k DO "
                f"INSERT INTO {db}.t (v, n) VALUES (CONCAT('{db} ', i), i); "
                f"IF i % 7 = 0 THEN UPDATE {db}.t SET n = n + 1 WHERE id = 1; END IF; SET i = i + 1; END WHILE; END"],
        traffic=[f"CALL {db}.work({rows})"],
        disaster=[f"DROP DATABASE {db}"],
    ).build_on_new_source(_made(workdir))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two incidents (homepage: db `home`, billing: db `bill`), each with its production server."""
    work = tmp_path_factory.mktemp("clusters")
    home = _incident("home", 3000, work / "home")
    bill = _incident("bill", 2000, work / "bill")
    with Sandbox() as home_prod, Sandbox() as bill_prod, Sandbox(binlog=True) as live:
        yield {"homepage": (home, home_prod, "home"), "billing": (bill, bill_prod, "bill"), "work": work,
               "live": live}


def _dsn(server: Sandbox) -> str:
    return f"mysql://root@127.0.0.1:{server.port}?unix_socket={server.socket}"


def _toml(items) -> str:
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


@pytest.fixture(scope="module")
def world(fleet, tmp_path_factory):
    work = tmp_path_factory.mktemp("clusters-bot")
    owned = OwnedDir("rbt")
    store = work / "jobs.sqlite3"
    config = work / "restore-bot.toml"
    text = f'[worker]\nconcurrency = 2\n[slack]\nchannel = "{CHANNEL}"\n' \
           f'[access]\noperators = {_toml([OPS1, OPS2])}\napprovers = {_toml([APP1, OPS2])}\n' \
           f'[store]\npath = {json.dumps(str(store))}\n'
    for name in ("homepage", "billing"):
        inc, prod, _db = fleet[name]
        text += (f"[clusters.{name}]\nsnapshots = {_toml([inc.snapshot])}\nbinlogs = {json.dumps(str(inc.binlog_dir))}\n"
                 + (f'channel = "{BILL_CHANNEL}"\n' if name == "billing" else "")
                 + f'[clusters.{name}.targets.prod]\ndsn = "{_dsn(prod)}"\n')
    # billing's server is watched live too, and archived: /restore clusters shows the watcher and the lag
    text += (f'[clusters.billing.watch]\nsource = "{_dsn(fleet["live"])}"\n'
             f'[clusters.billing.keep]\narchive_dir = {json.dumps(str(work / "bill-archive"))}\n')
    config.write_text(text)
    secret, token = secrets.token_hex(16), "xoxb-test-" + secrets.token_hex(8)
    fake = FakeSlack().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RESTORE_BOT_"))}
    env.update(SLACK_BOT_TOKEN=token, SLACK_SIGNING_SECRET=secret, SLACK_API_URL=fake.api_url,
               PYTHONUNBUFFERED="1", TMPDIR=str(owned.path))
    bot = Bot(config, env, work / "serve.log", str(owned.path))
    try:
        bot.start()
        yield World(bot, fake, SlackSigner(bot.url, secret, fake), secret, token, store, fleet, None)
    finally:
        shut_down(bot, fake, work, owned)


def _queued(w: World, text: str, user: str = OPS1) -> str:
    _answer, key = w.command(text, user)
    reply = w.response(key)
    m = re.search(r"job \*(R\d+)\* queued", reply.text)
    assert m, f"/restore {text}: {reply.text!r}\n{w.bot.log_tail()}"
    return m.group(1)


def _both_running(w: World, a: str, b: str, timeout: float = 60.0) -> None:
    """Both jobs in state running at one moment: the two clusters' restores run side by side."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ja, jb = w.job(a), w.job(b)
        if ja.state == "running" and jb.state == "running":
            return
        if ja.finished and jb.finished:
            break
        time.sleep(0.02)
    raise AssertionError(f"{a} and {b} never ran at the same time: {w.job(a)} / {w.job(b)}")


@pytest.mark.mysql
@pytest.mark.timeout(300)
def test_two_clusters_restored_side_by_side_from_chat(world, fleet):
    w = world
    _answer, key = w.command("stage")   # several clusters: refused, naming them
    assert w.response(key).text == ("Several clusters are configured: name one, e.g. `/restore plan NAME` "
                                    "(choices: `homepage`, `billing`).")
    stages = {name: _queued(w, f"stage {name}") for name in ("homepage", "billing")}
    _both_running(w, stages["homepage"], stages["billing"])
    for name, job_id in stages.items():
        card = w.wait_outcome(job_id, "succeeded")
        assert f"cluster *{name}*" in card.text and card.channel == (BILL_CHANNEL if name == "billing" else CHANNEL)
    # prod: each asks for approval naming its cluster; a second person approves both
    prods = {}
    for name in ("homepage", "billing"):
        mark = w.fake.mark()
        w.command(f"prod {name}", OPS1)
        post = w.fake.wait_for(lambda calls: [c for c in calls[mark:] if c.method == "chat.postMessage"
                                              and "approve_prod" in c.text], 15, "the approval request")[0]
        prods[name] = re.search(r"job \*(R\d+)\*", post.text)[1]
        assert f"of cluster *{name}*" in post.text, post.text
    for job_id in prods.values():
        w.click("approve_prod", job_id, APP1)
    _both_running(w, prods["homepage"], prods["billing"])
    for name, job_id in prods.items():
        w.wait_outcome(job_id, "succeeded")
        inc, prod, db = fleet[name]
        with prod.connect() as conn:
            assert checksums(conn, [db]) == inc.before, name   # exact: as the source held it before the disaster
    history = [e for e in w.store().audit_log(100) if e["job"] in prods.values() and e["action"] == "approved prod"]
    assert sorted(e["detail"].split()[0] for e in history) == ["cluster=billing", "cluster=homepage"], history


@pytest.mark.mysql
@pytest.mark.timeout(120)
def test_clusters_command_shows_each_cluster(world, fleet):
    w = world
    with fleet["live"].connect() as conn, conn.cursor() as cur:   # billing's watched server: a disaster
        cur.execute("CREATE DATABASE IF NOT EXISTS shop")
        cur.execute("CREATE TABLE shop.orders (id INT PRIMARY KEY)")
        cur.execute("DROP TABLE shop.orders")
    alert = w.fake.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"
                                           and "DROP TABLE" in c.text], 30, "the alert of billing's DROP TABLE")[0]
    assert alert.channel == BILL_CHANNEL and "billing · mysql://root@" in alert.text, alert.text
    deadline = time.monotonic() + 30
    while True:   # the archiver copies the live binlog to its end
        _answer, key = w.command("clusters")
        text = w.response(key).text
        if "; up to date" in text or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    blocks = {name: text.split(f"*{name}*")[1].split("\n\n")[0] for name in ("homepage", "billing")}
    home = fleet["homepage"][0]
    newest = sorted(p for p in home.binlog_dir.iterdir() if p.suffix[1:].isdigit())[-1]
    assert f"• snapshot: {home.snapshot.name}, " in blocks["homepage"] and " old" in blocks["homepage"], text
    assert f"• binlogs: {newest.name}:{newest.stat().st_size}, last written" in blocks["homepage"], text
    assert "• watch: not watched" in blocks["homepage"] and "• drill: never run" in blocks["homepage"], text
    bill = blocks["billing"]
    assert blocks["billing"].startswith(f" · <#{BILL_CHANNEL}>") and "• snapshot: bill.sql, " in bill, text
    assert re.search(r"• binlogs: \S+\.\d+:\d+, last written \d+ s ago; up to date", bill), text
    assert re.search(r"• watch: watching, read up to \S+:\d+; last alert not acknowledged: DROP TABLE", bill), text
    assert "• drill: never run" in bill, text


def test_the_command_line_takes_the_cluster(cli, tmp_path):
    config = _write(tmp_path, TWO)
    for args, says in ((("plan",), "several clusters are configured"), (("plan", "--cluster", "wiki"), "no cluster 'wiki'"),
                       (("stage",), "several clusters are configured"), (("undo", "--event", "0-1-5", "--target", "prod"),
                                                                         "several clusters are configured")):
        run = cli(*args, "--config", config)
        assert run.code == 2 and says in run.doc["error"]["message"], run
        assert "(clusters: homepage, billing)" in run.doc["error"]["message"], run
    run = cli("plan", "--config", config, "--cluster", "homepage")   # its snapshots are read: here, missing
    assert run.code == 2 and str(tmp_path / "home.sql") in json.dumps(run.doc), run
    run = cli("undo", "--config", config, "--cluster", "billing", "--event", "0-1-5", "--target", "prod")
    assert run.code == 2 and "not a kept server of cluster billing (kept targets: none)" in run.doc["error"]["message"]


@pytest.mark.mysql
@pytest.mark.timeout(120)
def test_plan_on_the_command_line_from_a_cluster(world, fleet, cli):
    run = cli("plan", "--config", world.bot.config, "--cluster", "billing")
    assert run.code == 0, run
    stop = run.doc["plan"]["stop"]
    assert "DROP DATABASE" in json.dumps(stop) and "bill" in json.dumps(stop), stop


def test_a_choice_made_on_one_clusters_plan_card_decides_only_that_clusters_plans(tmp_path):
    s = load_settings(str(_write(tmp_path, TWO)), env={})
    store = JobStore(tmp_path / "jobs.sqlite3")
    app = application(s, store, _Everyone(), channel=None)
    rec = _Rec()
    app.text("plan billing", "U1", "console", rec)
    base = rec.job
    rec = _Rec()
    app.action("candidate_stop", json.dumps({"job": base.id, "spec": "0-2-77", "where": "bin.000001:900"}), "U1",
               "console", rec)
    assert rec.job.args == {"stop_before": "0-2-77", "skips": [], "cluster": "billing"}, rec.private
    assert "bin.000001:900" in store.choice("billing")["why"] and store.choice() is None   # its own row
    for name, stop in (("billing", "0-2-77"), ("homepage", "auto")):
        rec = _Rec()
        app.text(f"plan {name}", "U1", "console", rec)
        assert rec.job.args["stop_before"] == stop and rec.job.args["cluster"] == name, (name, rec.job.args)
    rec = _Rec()
    app.text("choice clear billing", "U1", "console", rec)   # forgotten for billing only, and said so in the audit
    assert store.choice("billing") is None
    cleared = [e for e in store.audit_log() if e["action"] == "cleared choice"]
    assert [e["detail"] for e in cleared] == ["cluster=billing"], cleared
