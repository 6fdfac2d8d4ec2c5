"""bot.config: the settings file, the environment, validation messages, and keeping secrets secret."""
from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from bot.config import ConfigError, Secret, Settings, load_settings
from restore.binlog.server import ServerBinlogs
from restore.binlog.source import open_binlogs
from restore.errors import RestoreError
from restore.mysql.dsn import Dsn

SECRET = "Zq9-secret"

EXAMPLE = """
[source]
snapshots = ["init.sql", "init_wiki.sql"]
binlogs = "binlogs/"
[targets.stage]
dsn = "sandbox"
[targets.prod]
dsn = "mysql://restore:${PROD_DB_PASSWORD}@db:3306"
fence = "lock"
fence_users = ["app"]
[slack]
channel = "C0INCIDENT"
[access]
operators = ["U01", "U02"]
approvers = ["U03", "U02"]
[kakao]
token = "${KAKAO_TOKEN}"
webhook_url = "https://example.invalid/hook"
webhook_secret = "${KAKAO_WEBHOOK_SECRET}"
[watch]
source = "mysql://repl:${REPL_PASSWORD}@db:3306"
databases = ["homepage"]
mass_fraction = 0.9
mass_min_rows = 10
nice = -5
[oncall]
rotation = ["U01", "U02", "U03"]
rotation_start = "2026-01-05"
escalate_after_minutes = 5
usergroup = "S0ONCALL"
[store]
path = "restore-bot.sqlite3"
[server]
port = 3000
"""

ENV = {"PROD_DB_PASSWORD": SECRET, "KAKAO_TOKEN": SECRET + "-kt", "KAKAO_WEBHOOK_SECRET": SECRET + "-ws",
       "REPL_PASSWORD": SECRET + "-repl", "SLACK_BOT_TOKEN": "xoxb-" + SECRET, "SLACK_SIGNING_SECRET": SECRET + "-sig"}


def write(tmp_path: Path, text: str, name: str = "restore-bot.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error(tmp_path: Path, text: str, env: dict | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env=ENV if env is None else env)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert SECRET.lower() not in message.lower(), message
    return message


def test_example_loads(tmp_path):
    path = write(tmp_path, EXAMPLE)
    s = load_settings(str(path), env=ENV)
    assert s.config_path == path
    assert s.source.snapshots == (str(tmp_path / "init.sql"), str(tmp_path / "init_wiki.sql"))
    assert s.source.binlog_source == tmp_path / "binlogs" and s.source.binlogs == tmp_path / "binlogs"
    assert s.targets["stage"].dsn == "sandbox"
    prod = s.targets["prod"]
    assert prod.dsn == Dsn("restore", SECRET, "db", 3306) and prod.fence == "lock" and prod.fence_users == ("app",)
    assert s.slack.channel == "C0INCIDENT" and s.slack.api_url == "https://slack.com/api/"
    assert s.slack.bot_token.reveal() == "xoxb-" + SECRET and s.slack.app_token is None
    assert s.access.can_operate("U01") and not s.access.can_operate("U03")
    assert s.access.can_approve("U03") and not s.access.can_approve("U01")
    assert s.kakao.token.reveal() == SECRET + "-kt" and s.kakao.webhook_secret == Secret(SECRET + "-ws")
    assert s.kakao.webhook_url == "https://example.invalid/hook"
    assert s.watch.source.password == SECRET + "-repl" and s.watch.databases == ("homepage",)
    assert (s.watch.mass_fraction, s.watch.mass_min_rows, s.watch.nice) == (0.9, 10, -5)
    assert s.oncall.rotation == ("U01", "U02", "U03") and s.oncall.rotation_start == date(2026, 1, 5)
    assert (s.oncall.escalate_after_minutes, s.oncall.usergroup, s.oncall.fallback) == (5, "S0ONCALL", None)
    assert s.store_path == tmp_path / "restore-bot.sqlite3" and s.port == 3000


def test_no_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, env={})
    assert s.config_path is None and s.watch is None and s.port == 3000
    assert set(s.targets) == {"stage"} and s.targets["stage"].dsn == "sandbox"
    assert s.store_path == tmp_path / "restore-bot.sqlite3"
    assert s.slack.bot_token is None and s.slack.channel is None
    assert not s.access.can_operate("U01")
    with pytest.raises(RestoreError, match="no binlog source") as info:
        s.source.binlogs  # noqa: B018 - a job run without a binlog source says what to configure
    assert "[source] binlogs" in info.value.hint


def test_config_path_from_environment(tmp_path):
    path = write(tmp_path, '[server]\nport = 8080\n', "other.toml")
    assert load_settings(None, env={"RESTORE_BOT_CONFIG": str(path)}).port == 8080
    assert load_settings(str(write(tmp_path, "")), env={"RESTORE_BOT_CONFIG": str(path)}).port == 3000


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=rf"^{missing}: config file not found$"):
        load_settings(str(missing), env={})
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_settings(None, env={"RESTORE_BOT_CONFIG": str(missing)})


def test_toml_syntax_error_has_line_and_column(tmp_path):
    message = error(tmp_path, '[source]\nbinlogs = "x"\nport = \n')
    assert "line 3, column 8" in message and "invalid TOML" in message


def test_unset_variable(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "PROD_DB_PASSWORD"}
    path = write(tmp_path, EXAMPLE)
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env=env)
    assert str(info.value) == f"{path}: [targets.prod] dsn: ${{PROD_DB_PASSWORD}} is not set in the environment"


def test_variables_and_escapes(tmp_path):
    path = write(tmp_path, '[slack]\nchannel = "${CHAN}-$${CHAN}-${lower}"\n[access]\noperators = ["${WHO}"]\n'
                           '[oncall]\nrotation_start = "${START}"\n')
    s = load_settings(str(path), env={"CHAN": "C1", "WHO": "U9", "START": "2026-02-02"})
    assert s.slack.channel == "C1-${CHAN}-${lower}" and s.access.operators == {"U9"}
    assert s.oncall.rotation_start == date(2026, 2, 2)


@pytest.mark.parametrize("text, where, what", [
    ("[sorce]\n", "[sorce]", "unknown section"),
    ("port = 3000\n", "[port]", "unknown section"),
    ("[slack]\nchanel = 'C1'\n", "[slack]", "unknown key 'chanel' (allowed: channel)"),
    ("[targets.prod]\ndsn = 'sandbox'\nfences = 'lock'\n", "[targets.prod]", "allowed: dsn, fence, fence_users"),
    ("slack = 3\n", "[slack]", "must be a table"),
    ("[targets]\nprod = 'mysql://u@h'\n", "[targets.prod]", "must be a table"),
    ("[targets.Prod]\ndsn = 'sandbox'\n", "[targets.Prod]", "[a-z][a-z0-9_-]*"),
    ('[targets."my target"]\ndsn = "sandbox"\n', '[targets."my target"]', "must match"),
    ("[targets.prod]\nfence = 'lock'\n", "[targets.prod]", "dsn is required"),
    ("[targets.prod]\ndsn = 'sandbox'\n", "[targets.prod] dsn", 'cannot be "sandbox"'),
    ("[targets.prod]\ndsn = 'postgres://u@h'\n", "[targets.prod] dsn", "must start with mysql://"),
    ("[targets.prod]\ndsn = 'mysql://u@h:99999'\n", "[targets.prod] dsn", "malformed"),
    ("[targets.prod]\ndsn = 'mysql://u@h'\nfence = 'block'\n", "[targets.prod] fence", '"refuse" or "lock"'),
    ("[targets.prod]\ndsn = 'mysql://u@h'\nfence = 'lock'\n", "[targets.prod] fence_users", "needs the accounts"),
    ("[targets.prod]\ndsn = 'mysql://u@h'\nfence_users = 'app'\n", "[targets.prod] fence_users", "list of strings"),
    ("[targets.stage]\ndsn = 'sandbox'\nbatch = 0\n", "[targets.stage] batch", "an integer >= 1"),
    ("[targets.stage]\ndsn = 'sandbox'\nbatch = 2.5\n", "[targets.stage] batch", "an integer >= 1"),
    ("[targets.prod]\ndsn = 'mysql://u@h'\nbatch = 10\n", "[targets.prod] batch", "only [targets.stage]"),
    ("[source]\nsnapshots = 'init.sql'\n", "[source] snapshots", "must be a list of strings"),
    ("[source]\nsnapshots = ['a.sql', '']\n", "[source] snapshots[1]", "non-empty string"),
    ("[source]\nsnapshots = ['a.sql', 3]\n", "[source] snapshots[1]", "non-empty string"),
    ("[source]\nbinlogs = ['d']\n", "[source] binlogs", "non-empty string"),
    ("[source]\nbinlogs = 'mysql://@db'\n", "[source] binlogs", "needs a user and a host"),
    ("[access]\noperators = 'U01'\n", "[access] operators", "list of strings"),
    ("[kakao]\nwebhook_url = ''\n", "[kakao] webhook_url", "non-empty string"),
    ("[watch]\ndatabases = ['x']\n", "[watch]", "source is required"),
    ("[watch]\nsource = 'mysql://u@h'\nmass_fraction = 0\n", "[watch] mass_fraction", "(0, 1]"),
    ("[watch]\nsource = 'mysql://u@h'\nmass_fraction = 1.5\n", "[watch] mass_fraction", "(0, 1]"),
    ("[watch]\nsource = 'mysql://u@h'\nmass_fraction = '0.9'\n", "[watch] mass_fraction", "a number"),
    ("[watch]\nsource = 'mysql://u@h'\nmass_min_rows = -1\n", "[watch] mass_min_rows", "an integer >= 0"),
    ("[watch]\nsource = 'mysql://u@h'\nnice = -21\n", "[watch] nice", "an integer in -20..19"),
    ("[oncall]\nrotation_start = '2026-13-01'\n", "[oncall] rotation_start", "a date like"),
    ("[oncall]\nrotation = ['U01']\n", "[oncall] rotation_start", "is required"),
    ("[oncall]\nescalate_after_minutes = 0\n", "[oncall] escalate_after_minutes", ">= 1"),
    ("[store]\npath = ''\n", "[store] path", "non-empty string"),
    ("[server]\nport = 0\n", "[server] port", "1..65535"),
    ("[server]\nport = 65536\n", "[server] port", "1..65535"),
    ("[server]\nport = true\n", "[server] port", "an integer"),
    ("[server]\nport = '3000'\n", "[server] port", "an integer"),
    ("[keep]\nphysical = 'yes'\n", "[keep] physical", "must be true or false"),
])
def test_errors_name_file_and_key(tmp_path, text, where, what):
    message = error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'restore-bot.toml'}: {where}: "), message
    assert what in message


def test_stage_batch(tmp_path):
    """[targets.stage] batch: source transactions per target commit of a stage replay (restore --batch)."""
    assert load_settings(str(write(tmp_path, EXAMPLE)), env=ENV).targets["stage"].batch == 1000
    assert load_settings(None, env={}).targets["stage"].batch == 1000
    s = load_settings(str(write(tmp_path, "[targets.stage]\ndsn = 'sandbox'\nbatch = 1\n")), env={})
    assert s.targets["stage"].batch == 1 and "batch 1" in s.describe()


def test_keep_takes_physical_backups_when_asked(tmp_path):
    assert not load_settings(None, env={}).keep.physical
    s = load_settings(str(write(tmp_path, "[keep]\nbackup_dir = 'b'\nphysical = true\ncompress = false\n")), env={})
    assert s.keep.physical and not s.keep.compress


def test_valid_edge_values(tmp_path):
    path = write(tmp_path, "[watch]\nsource = 'mysql://u@h'\nmass_fraction = 1\nmass_min_rows = 0\n"
                           "[oncall]\nrotation = ['U1']\nrotation_start = 2026-01-07\n[server]\nport = 65535\n")
    s = load_settings(str(path), env={})
    assert s.watch.mass_fraction == 1.0 and s.watch.mass_min_rows == 0 and s.port == 65535
    assert s.oncall.rotation_start == date(2026, 1, 7) and s.watch.databases == ()


def test_secrets_never_shown(tmp_path):
    env = dict(ENV, SLACK_APP_TOKEN="xapp-" + SECRET)
    s = load_settings(str(write(tmp_path, EXAMPLE)), env=env)
    for text in (repr(s), str(s), s.describe(), repr(s.slack.bot_token), str(s.kakao.token), f"{s.kakao.token}"):
        assert SECRET not in text, text
    assert repr(s.slack.bot_token) == str(s.slack.bot_token) == "'***'"
    summary = s.describe()
    assert "bot_token set" in summary and "app_token set" in summary and "webhook_secret set" in summary
    assert "mysql://restore:***@db:3306" in summary and "C0INCIDENT" in summary
    assert "bot_token not set" in load_settings(None, env={}).describe()


def test_secret_binlog_dsn_goes_to_the_reader_as_it_is_without_showing(tmp_path):
    path = write(tmp_path, '[source]\nbinlogs = "mysql://repl:${REPL_PASSWORD}@db:3307"\n')
    s = load_settings(str(path), env={"REPL_PASSWORD": "p@ss/" + SECRET})
    assert s.source.binlogs == s.source.binlog_source == Dsn("repl", "p@ss/" + SECRET, "db", 3307)
    reader = open_binlogs(s.source.binlogs)  # the Dsn itself: never written out as a URL and parsed again
    assert isinstance(reader, ServerBinlogs) and reader.dsn is s.source.binlog_source
    assert SECRET not in reader.describe()
    assert SECRET not in repr(s) and SECRET not in s.describe()


def test_env_values_in_a_dsn_are_percent_encoded(tmp_path):
    path = write(tmp_path, '[targets.prod]\ndsn = "mysql://restore:${PW}@db"\n[targets.qa]\ndsn = "${QA_DSN}"\n')
    s = load_settings(str(path), env={"PW": "a@b/c:d?" + SECRET, "QA_DSN": "mysql://qa:p%40ss@qa-db:3307"})
    assert s.targets["prod"].dsn == Dsn("restore", "a@b/c:d?" + SECRET, "db", 3306)
    assert s.targets["qa"].dsn == Dsn("qa", "p@ss", "qa-db", 3307)  # a whole-DSN variable is used as written


def test_error_is_one_line_even_for_odd_names(tmp_path):
    message = error(tmp_path, '["bad\\nsection"]\nx = 1\n')
    assert "unknown section" in message


@pytest.mark.parametrize("dsn", [
    "${PW}",                              # a bare password where the DSN should be: the scheme check
    "${PW}://u@h",
    "mysql://u:${PW}@h:notaport",
    "mysql://u:" + SECRET + "@h:notaport",
    "mysql://u:" + SECRET + "@",
    # an unescaped / ? # in an inline password: urlsplit reads the part before it as the port
    "mysql://u:" + SECRET + "/secretpart@h:3306",
    "mysql://u:" + SECRET + "?secretpart@h",
    "mysql://u:" + SECRET + "#secretpart@h",
])
def test_secrets_not_in_errors(tmp_path, dsn):
    message = error(tmp_path, f'[targets.prod]\ndsn = "{dsn}"\n', env={"PW": SECRET})
    assert "[targets.prod] dsn" in message
    assert "secretpart" not in message, message


@pytest.mark.parametrize("password", ["Xy7/secretpart", "Xy7?secretpart", "Xy7#secretpart"])
def test_unescaped_password_is_not_echoed_by_the_cli(cli, tmp_path, password):
    """`--target`/`--binlogs` DSNs typed on the command line: the error names the port, never the password."""
    snap = tmp_path / "shop.sql"
    snap.write_text("-- MySQL dump 10.13  Distrib 8.0.36\nSET @@GLOBAL.GTID_PURGED='3e11fa47-71ca-11e1-9e33-c80aa9429562:1';\n"
                    "CREATE DATABASE `shop`;\nUSE `shop`;\nCREATE TABLE `t` (`id` int NOT NULL, PRIMARY KEY (`id`));\n"
                    "-- Dump completed on 2023-08-19\n")
    for option in ("--target", "--binlogs"):
        args = ["restore", "--snapshot", str(snap), "--binlogs", str(tmp_path),
                "--target", "mysql://repl:pw@db:3306", "--yes"]
        args[args.index(option) + 1] = f"mysql://restore:{password}@db:3306"
        res = cli(*args)
        shown = res.raw + res.err
        assert res.code == 2 and "Xy7" not in shown and "secretpart" not in shown, shown
        assert "port is not a number" in res.error["message"] and "percent-encode" in res.error["message"], res


def test_environment_overrides(tmp_path):
    path = write(tmp_path, '[slack]\nchannel = "C0FILE"\n')
    env = {"RESTORE_BOT_CHANNEL": "C0ENV", "SLACK_API_URL": "http://localhost:9999/api",
           "RESTORE_BOT_ONCALL": "U07", "SLACK_APP_TOKEN": "xapp-1"}
    s = load_settings(str(path), env=env)
    assert s.slack.channel == "C0ENV" and s.slack.api_url == "http://localhost:9999/api/"
    assert s.oncall.fallback == "U07" and s.slack.app_token.reveal() == "xapp-1"
    assert load_settings(str(path), env={}).slack.channel == "C0FILE"
    assert load_settings(None, env={"RESTORE_BOT_CHANNEL": "C0ENV"}).slack.channel == "C0ENV"


def test_relative_paths_resolve_against_the_file(tmp_path, monkeypatch):
    conf = tmp_path / "etc"
    conf.mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (conf / "dumps").mkdir()
    (conf / "dumps" / "a=b.sql").write_text("")
    path = write(conf, """
        [source]
        snapshots = ["dumps/init.sql", "wiki=dumps/w.sql", "dumps/a=b.sql", "/abs/x.sql"]
        binlogs = "../binlogs"
        [store]
        path = "state/jobs.sqlite3"
    """)
    s = load_settings(str(path), env={})
    assert s.source.snapshots == (str(conf / "dumps/init.sql"), f"wiki={conf / 'dumps/w.sql'}",
                                  str(conf / "dumps/a=b.sql"), "/abs/x.sql")
    assert s.source.binlog_source == conf / "../binlogs"
    assert s.store_path == conf / "state/jobs.sqlite3"
    rel = load_settings("../etc/restore-bot.toml", env={})  # a relative --config path is made absolute
    assert rel.config_path.is_absolute() and rel.store_path == rel.config_path.parent / "state/jobs.sqlite3"


def test_settings_is_frozen(tmp_path):
    s = load_settings(None, env={})
    assert isinstance(s, Settings)
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_store_url_beside_path_shows_without_its_password(tmp_path):
    path = write(tmp_path, '[store]\nurl = "mysql://bot:${PROD_DB_PASSWORD}@db.internal/restore_bot"\n')
    settings = load_settings(str(path), env=ENV)
    assert settings.store == f"mysql://bot:{SECRET}@db.internal/restore_bot"
    assert "job store: mysql://bot:***@db.internal/restore_bot" in settings.describe()
    assert SECRET not in settings.describe()
    assert load_settings(None, env={}).store == str(Path.cwd() / "restore-bot.sqlite3")   # the SQLite default


@pytest.mark.parametrize("text, what", [
    ('[store]\npath = "a.sqlite3"\nurl = "sqlite:///b.sqlite3"\n', "either path"),
    ('[store]\nurl = "oracle://bot@db/restore_bot"\n', "must be a database URL"),
    ('[store]\nurl = "restore_bot"\n', "must be a database URL"),
])
def test_store_url_errors(tmp_path, text, what):
    message = error(tmp_path, text)
    assert "[store]" in message and what in message, message


@pytest.mark.mysql
def test_store_url_opens_the_mariadb_store(tmp_path, target):
    """[store] url with its password from the environment: the job store is on the server."""
    from handlers.jobstore import JobStore
    password = "p@ss/w:rd " + SECRET   # characters a URL must escape: the ${VAR} is percent-encoded
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE rb_config_store")
        cur.execute("CREATE USER rb_store@'%%' IDENTIFIED BY %s", (password,))
        cur.execute("GRANT ALL ON rb_config_store.* TO rb_store@'%'")
    try:
        path = write(tmp_path, f'[store]\nurl = "mysql://rb_store:${{STORE_PASSWORD}}@127.0.0.1:{target.port}'
                               '/rb_config_store"\n')
        settings = load_settings(str(path), env={"STORE_PASSWORD": password})
        assert SECRET not in settings.describe()
        jobs = JobStore(settings.store)
        try:
            job = jobs.create("plan", "plan", "UOPS1")
            assert jobs.store.dialect in ("mysql", "mariadb") and "***" in jobs.path
        finally:
            jobs.store.dispose()
        with target.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM rb_config_store.jobs")
            assert [r[0] for r in cur.fetchall()] == [job.id]
    finally:
        with target.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS rb_config_store")
            cur.execute("DROP USER IF EXISTS rb_store@'%'")
