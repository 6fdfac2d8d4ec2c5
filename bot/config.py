"""Bot settings from an optional TOML file plus the environment; secrets live in `Secret` or `Dsn`, never in repr()."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: needs the tomli package
    import tomli as tomllib  # type: ignore[no-redef]

from restore.errors import RestoreError
from restore.mysql.dsn import Dsn

_VAR = re.compile(r"\$\$\{|\$\{([A-Z_][A-Z0-9_]*)\}")
_SCHEMA: dict[str, dict[str, str]] = {  # section -> key -> kind of value (see _Reader.value)
    "source": {"snapshots": "snapshots", "binlogs": "binlogs"}, "targets": {}, "slack": {"channel": "str"},
    "access": {"operators": "set", "approvers": "set"}, "store": {"path": "path", "url": "store_url"},
    "server": {"port": "port"},
    "kakao": {"token": "secret", "webhook_url": "str", "webhook_secret": "secret"},
    "watch": {"source": "!dsn", "databases": "strs", "mass_fraction": "fraction", "mass_min_rows": "count",
              "nice": "nice"},
    "oncall": {"rotation": "strs", "rotation_start": "date", "escalate_after_minutes": "minutes", "usergroup": "str"},
    "keep": {"archive_dir": "path", "keep_days": "count", "keep_bytes": "count", "backup_dir": "path",
             "backup_databases": "strs", "backup_every_hours": "minutes", "drill_every_hours": "minutes",
             "physical": "bool", "compress": "bool"},
    "worker": {"concurrency": "batch"}, "clusters": {}}
# A [clusters.NAME] table: its own keys, and these sections of the top level's shape inside it
_CLUSTER_KEYS = {"snapshots": "snapshots", "binlogs": "binlogs", "channel": "str"}
_CLUSTER_SECTIONS = ("targets", "watch", "oncall", "keep")
_PER_CLUSTER = ("source", "targets", "watch", "keep")   # top-level sections [clusters] replaces
# A cluster's name is typed after the subcommand (`/restore stage billing`), so it must never read
# as another word there: no SPEC (GTIDs and file:pos hold digits with - or :), no job id (R3), no keyword.
CLUSTER_NAME = re.compile(r"[a-z][a-z0-9_]*")
RESERVED_NAMES = frozenset({"stage", "prod", "sandbox", "approve", "clear", "auto", "end", "now", "list", "set",
                            "help", "all", "drill", "plan", "status", "cluster", "clusters"})
DEFAULT_CLUSTER = "default"     # the cluster a file without [clusters] describes
_NUMBERS = {"fraction": (lambda v: 0 < v <= 1, "a number in (0, 1]"), "minutes": (lambda v: v >= 1, "an integer >= 1"),
            "count": (lambda v: v >= 0, "an integer >= 0"), "port": (lambda v: 1 <= v <= 65535, "an integer in 1..65535"),
            "batch": (lambda v: v >= 1, "an integer >= 1"), "nice": (lambda v: -20 <= v <= 19, "an integer in -20..19")}
_LISTS = {"strs": "str", "set": "str", "snapshots": "snapshot"}  # list kind -> kind of its items
# [store] url: a database server several serve instances share (handlers/store.py opens it), or a SQLite file
_STORE_SCHEMES = ("mysql", "mariadb", "postgresql", "postgres", "sqlite")


class ConfigError(Exception):
    """A settings problem; str() is one line: `FILE: [section] key: what is wrong`."""


@dataclass(frozen=True, repr=False)
class Secret:
    """A secret string (never empty: an empty one is None): repr()/str() are '***', `.reveal()` gives the value."""
    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True)
class SourceSettings:
    snapshots: tuple[str, ...] = ()          # absolute paths (or DB=/absolute/path)
    binlog_source: Path | Dsn | None = None  # a directory, or a live server

    @property
    def binlogs(self) -> Path | Dsn:
        """What `api.open_binlogs` takes: the directory, or the live server's Dsn as it is."""
        if (s := self.binlog_source) is None:
            raise RestoreError("no binlog source is configured", hint="set [source] binlogs in the config")
        return s


@dataclass(frozen=True)
class TargetSettings:
    dsn: Dsn | str                           # a Dsn, or the string "sandbox"
    fence: str = "refuse"                    # "refuse" or "lock"
    fence_users: tuple[str, ...] = ()
    batch: int = 1000                        # stage only: source transactions per target commit (restore --batch)


@dataclass(frozen=True)
class SlackSettings:
    bot_token: Secret | None = None
    signing_secret: Secret | None = None
    app_token: Secret | None = None
    api_url: str = "https://slack.com/api/"
    channel: str | None = None


@dataclass(frozen=True)
class AccessSettings:
    operators: frozenset[str] = frozenset()
    approvers: frozenset[str] = frozenset()

    def can_operate(self, user: str) -> bool:
        return user in self.operators

    def can_approve(self, user: str) -> bool:
        return user in self.approvers


@dataclass(frozen=True)
class KakaoSettings:
    token: Secret | None = None
    webhook_url: str | None = None
    webhook_secret: Secret | None = None


@dataclass(frozen=True)
class KeepSettings:
    """[keep]: the binlog archive and base snapshots of the [watch] source, and restore drills."""
    archive_dir: Path | None = None
    keep_days: int | None = None
    keep_bytes: int | None = None
    backup_dir: Path | None = None
    backup_databases: tuple[str, ...] = ()
    backup_every_hours: int | None = None
    drill_every_hours: int | None = None
    physical: bool = False                   # scheduled backups with mariadb-backup (the whole server), not dumps
    compress: bool = False


@dataclass(frozen=True)
class WatchSettings:
    source: Dsn
    databases: tuple[str, ...] = ()          # empty = all
    mass_fraction: float = 0.9
    mass_min_rows: int = 10
    nice: int = 0                            # the watcher's and the alert path's CPU priority (< 0: CAP_SYS_NICE)


@dataclass(frozen=True)
class OncallSettings:
    rotation: tuple[str, ...] = ()           # weekly turns from the Monday of rotation_start's week
    rotation_start: date | None = None
    escalate_after_minutes: int = 5
    usergroup: str | None = None
    fallback: str | None = None              # $RESTORE_BOT_ONCALL


@dataclass(frozen=True)
class ClusterSettings:
    """One [clusters.NAME]: the database it protects and where it restores to."""
    name: str
    source: SourceSettings = field(default_factory=SourceSettings)
    targets: dict[str, TargetSettings] = field(default_factory=dict)
    watch: WatchSettings | None = None
    keep: KeepSettings = field(default_factory=KeepSettings)
    oncall: OncallSettings = field(default_factory=OncallSettings)
    channel: str | None = None               # its incident channel; None: the global [slack] channel


@dataclass(frozen=True)
class Settings:
    source: SourceSettings = field(default_factory=SourceSettings)
    targets: dict[str, TargetSettings] = field(default_factory=dict)
    slack: SlackSettings = field(default_factory=SlackSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    kakao: KakaoSettings = field(default_factory=KakaoSettings)
    watch: WatchSettings | None = None
    oncall: OncallSettings = field(default_factory=OncallSettings)
    keep: KeepSettings = field(default_factory=KeepSettings)
    store_path: Path = Path("restore-bot.sqlite3")
    store_url: str | None = None             # [store] url: a shared store on a database server (wins over path)
    port: int = 3000
    config_path: Path | None = None
    concurrency: int = 2                     # [worker] concurrency: jobs run at once (different clusters)
    clusters: dict[str, ClusterSettings] = field(default_factory=dict)   # empty: one "default" from the top level

    @property
    def store(self) -> str:
        """What handlers.store.open_store opens: [store] url, else the SQLite file."""
        return self.store_url or str(self.store_path)

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(self.clusters) or (DEFAULT_CLUSTER,)

    def cluster(self, name: str | None = None) -> "Settings":
        """These settings as one cluster sees them: its source, targets, watch, keep, on-call and
        channel in the top-level fields, so code written for one database reads them as before.
        `name` None: the only cluster (a KeyError when there are several)."""
        if not self.clusters:
            if name not in (None, DEFAULT_CLUSTER):
                raise KeyError(name)
            return self
        if name is None:
            if len(self.clusters) != 1:
                raise KeyError(name)
            name = next(iter(self.clusters))
        c = self.clusters[name]
        return replace(self, source=c.source, targets=c.targets, watch=c.watch, keep=c.keep, oncall=c.oncall,
                       slack=replace(self.slack, channel=c.channel or self.slack.channel), clusters={name: c})

    def describe(self) -> str:
        """A multi-line summary that is safe to print: each secret shows only as "set" or "not set"."""
        def show(v: Any) -> str:
            if isinstance(v, (tuple, frozenset)):
                return ", ".join(sorted(v) if isinstance(v, frozenset) else v) or "none"
            return "set" if isinstance(v, Secret) else "not set" if v is None else getattr(v, "redacted", v.__str__)()

        def line(title: str, o: Any) -> str:
            return f"{title}: " + ("; ".join(f"{f.name} {show(getattr(o, f.name))}" for f in fields(o)) if o else "off")
        return "\n".join([f"config file: {self.config_path or 'none (defaults and environment)'}",
                          *([] if self.clusters else [line("source", self.source)]),
                          *([] if self.clusters else [line(f"target {n}", t) for n, t in self.targets.items()]),
                          *(line(n, getattr(self, n)) for n in ("slack", "access", "kakao", "watch", "oncall")
                            if not (n == "watch" and self.clusters)),
                          *(f"cluster {n}: snapshots {show(c.source.snapshots)}; binlogs {show(c.source.binlog_source)}; "
                            f"targets {', '.join(c.targets)}; watch {show(c.watch and c.watch.source)}; "
                            f"channel {show(c.channel)}" for n, c in self.clusters.items()),
                          f"job store: {_store_shown(self.store_url) if self.store_url else self.store_path}",
                          f"server port: {self.port}",
                          f"worker concurrency: {self.concurrency}"])


class _Reader:
    """Reads one parsed TOML document: substitutes ${VAR}, checks and converts values, fails naming file and key."""
    def __init__(self, label: str, base: Path, env: Mapping[str, str]) -> None:
        self.label, self.base, self.env, self.hidden = label, base, env, set[str]()

    def fail(self, where: str, message: str) -> NoReturn:
        for value in sorted(self.hidden, key=len, reverse=True):  # never echo a secret
            message = re.sub(re.escape(value), "***", message, flags=re.I)
        raise ConfigError(" ".join(f"{self.label}: {where}: {message}".split()))  # one line, always

    def section(self, doc: dict, name: str, schema: dict[str, str], where: str) -> dict[str, Any]:
        tab = doc.get(name, {})
        if not isinstance(tab, dict):
            self.fail(where, "must be a table")
        for key in (k for k in tab if k not in schema):
            self.fail(where, f"unknown key {key!r} (allowed: {', '.join(schema)})")
        for key in (k for k, kind in schema.items() if kind[0] == "!" and k not in tab and name in doc):
            self.fail(where, f"{key} is required")
        return {k: self.value(kind.lstrip("!"), tab[k], f"{where} {k}") for k, kind in schema.items() if k in tab}

    def value(self, kind: str, v: Any, where: str) -> Any:
        if kind == "bool":
            if not isinstance(v, bool):
                self.fail(where, "must be true or false")
            return v
        if kind in _NUMBERS:
            ok, what = _NUMBERS[kind]
            if isinstance(v, bool) or not isinstance(v, (int, float) if kind == "fraction" else int) or not ok(v):
                self.fail(where, f"must be {what}")
            return float(v) if kind == "fraction" else v
        if kind in _LISTS:
            if not isinstance(v, list):
                self.fail(where, "must be a list of strings")
            items = tuple(self.value(_LISTS[kind], x, f"{where}[{i}]") for i, x in enumerate(v))
            return frozenset(items) if kind == "set" else items
        if kind == "date" and isinstance(v, date) and not isinstance(v, datetime):
            return v
        if not isinstance(v, str) or not v.strip():
            self.fail(where, "must be a date like 2026-01-05" if kind == "date" else "must be a non-empty string")
        enc = kind in ("dsn", "target", "binlogs", "store_url") and "://" in v  # in a DSN, ${VAR} values are percent-encoded
        v = _VAR.sub(lambda m: self.var(m.group(1), where, enc), v)
        if kind == "dsn" or (kind == "binlogs" and "://" in v) or (kind == "target" and v != "sandbox"):
            self.hidden.update(re.findall(r"://[^@/?#]*?:([^@]+)@", v))  # an inline password: out of messages too
            try:
                return Dsn.parse(v, what="DSN")
            except RestoreError as exc:
                self.fail(where, exc.message + (f" ({exc.hint})" if exc.hint else ""))
        if kind == "store_url":
            return self.store_url(v, where)
        if kind == "snapshot":  # FILE, or DB=FILE for a dump taken without --databases
            db, sep, f = v.partition("=") if re.match(r"[\w$]+=", v) and not (self.base / v).exists() else ("", "", v)
            return db + sep + str(self.base / f)  # base / an absolute path = that path
        if kind == "date":
            try:
                return date.fromisoformat(v)
            except ValueError:
                self.fail(where, f"must be a date like 2026-01-05, got {v!r}")
        if kind == "fence" and v not in ("refuse", "lock"):
            self.fail(where, f'must be "refuse" or "lock", got {v!r}')
        return (Secret(v) if v else None) if kind == "secret" else self.base / v if kind in ("path", "binlogs") else v

    def store_url(self, v: str, where: str) -> str:
        scheme = v.partition("://")[0].partition("+")[0].lower()
        if "://" not in v or scheme not in _STORE_SCHEMES:
            self.fail(where, "must be a database URL: mysql://user:password@host/restore_bot (or mariadb://, "
                      "postgresql://, sqlite:///path)")
        self.hidden.update(re.findall(r"://[^@/?#]*?:([^@]+)@", v))   # an inline password: out of messages too
        try:
            _store_shown(v)
        except Exception as exc:   # sqlalchemy's ArgumentError: a URL it cannot read
            self.fail(where, f"cannot read the URL ({type(exc).__name__})")
        return v

    def var(self, name: str | None, where: str, encode: bool) -> str:
        if name is None:  # $${ escapes a literal ${
            return "${"
        if name not in self.env:
            self.fail(where, f"${{{name}}} is not set in the environment")
        value = quote(self.env[name], safe="") if encode else self.env[name]
        self.hidden.update(x for x in {self.env[name], value} if x)
        return value


def load_settings(path: str | None, env: Mapping[str, str] = os.environ) -> Settings:
    """Settings from the TOML file at `path` (else $RESTORE_BOT_CONFIG, else none) and from `env`."""
    path = path or env.get("RESTORE_BOT_CONFIG") or None
    config_path = Path(path).expanduser().absolute() if path else None
    try:
        doc: dict = tomllib.loads(Path(path).expanduser().read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        m = re.match(r"(.*?)\s*\(at (line \d+, column \d+|end of document)\)$", str(exc))
        why = ("config file not found" if isinstance(exc, FileNotFoundError) else f"{m[2]}: invalid TOML: {m[1]}" if m
               else f"cannot read it: {getattr(exc, 'strerror', None) or exc}")
        raise ConfigError(f"{path}: {why}") from None
    r = _Reader(path or "environment", config_path.parent if config_path else Path.cwd(), env)
    for name in (n for n in doc if n not in _SCHEMA):
        r.fail(f"[{name}]", f"unknown section (allowed: {', '.join(_SCHEMA)})")
    s = {name: r.section(doc, name, keys, f"[{name}]") for name, keys in _SCHEMA.items()
         if name not in ("targets", "clusters")}
    targets = _targets(r, doc, "")
    if s["oncall"].get("rotation") and "rotation_start" not in s["oncall"]:
        r.fail("[oncall] rotation_start", "is required with a rotation (a date in the rotation's first week)")
    tok = [Secret(env[n]) if env.get(n) else None for n in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")]
    oncall = OncallSettings(**s["oncall"], fallback=env.get("RESTORE_BOT_ONCALL") or None)
    return Settings(
        source=SourceSettings(s["source"].get("snapshots", ()), s["source"].get("binlogs")), targets=targets,
        slack=SlackSettings(*tok, (env.get("SLACK_API_URL") or SlackSettings.api_url).rstrip("/") + "/",
                            env.get("RESTORE_BOT_CHANNEL") or s["slack"].get("channel")),
        access=AccessSettings(**s["access"]), kakao=KakaoSettings(**s["kakao"]),
        watch=WatchSettings(**s["watch"]) if "watch" in doc else None,
        oncall=oncall, keep=KeepSettings(**s["keep"]),
        store_path=s["store"].get("path") or r.base / "restore-bot.sqlite3", store_url=_store_url(r, s["store"]),
        port=s["server"].get("port", 3000), config_path=config_path,
        concurrency=s["worker"].get("concurrency", 2), clusters=_clusters(r, doc, oncall))


def _store_url(r: _Reader, store: dict) -> str | None:
    if "url" in store and "path" in store:
        r.fail("[store]", "give either path (a SQLite file) or url (a database server), not both")
    return store.get("url")


def _store_shown(url: str) -> str:
    """The store's URL without its password, for the summary and messages."""
    from sqlalchemy import make_url   # only when a [store] url is configured: most commands never need it
    return make_url(url).render_as_string(hide_password=True)


def _where(prefix: str, name: str) -> str:
    return "[" + prefix + (name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"') + "]"


def _targets(r: _Reader, doc: dict, prefix: str) -> dict[str, TargetSettings]:
    """The [targets.NAME] tables of `doc` (the file, or one [clusters.NAME] in it: `prefix`)."""
    if not isinstance(doc.get("targets", {}), dict):
        r.fail(f"[{prefix}targets]", f"must be a table of targets, e.g. [{prefix}targets.prod]")
    targets: dict[str, TargetSettings] = {"stage": TargetSettings("sandbox")}
    for name in doc.get("targets", {}):
        w = _where(prefix + "targets.", name)
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            r.fail(w, "target names must match [a-z][a-z0-9_-]*")
        t = r.section(doc["targets"], name,
                      {"dsn": "!target", "fence": "fence", "fence_users": "strs", "batch": "batch"}, w)
        if name == "prod" and t["dsn"] == "sandbox":
            r.fail(f"{w} dsn", 'prod cannot be "sandbox": give the production server\'s mysql:// DSN')
        if name != "stage" and "batch" in t:
            r.fail(f"{w} batch", f"only [{prefix}targets.stage] takes a batch size (the stage replay's)")
        if t.get("fence") == "lock" and not t.get("fence_users"):
            r.fail(f"{w} fence_users", 'fence = "lock" needs the accounts to lock out, e.g. ["app"]')
        targets[name] = TargetSettings(**t)
    return targets


def _clusters(r: _Reader, doc: dict, oncall: OncallSettings) -> dict[str, ClusterSettings]:
    """[clusters.NAME] tables; each one's [oncall] keys fall back to the global [oncall]'s."""
    tab = doc.get("clusters", {})
    if not isinstance(tab, dict) or any(not isinstance(v, dict) for v in tab.values()):
        r.fail("[clusters]", "must be a table of clusters, e.g. [clusters.billing]")
    if tab and (top := [n for n in _PER_CLUSTER if n in doc]):
        r.fail(f"[{top[0]}]", f"with [clusters.NAME] sections each cluster has its own {top[0]}: "
               f"move it into [clusters.{next(iter(tab))}]")
    out: dict[str, ClusterSettings] = {}
    for name, body in tab.items():
        w = _where("clusters.", name)
        if not CLUSTER_NAME.fullmatch(name) or re.fullmatch(r"r\d+", name):
            r.fail(w, "cluster names must match [a-z][a-z0-9_]* and not look like a job id (r3)")
        if name in RESERVED_NAMES:
            r.fail(w, f"{name!r} is a word of the commands; name the cluster otherwise "
                   f"(not one of {', '.join(sorted(RESERVED_NAMES))})")
        keys = r.section({name: {k: v for k, v in body.items() if k not in _CLUSTER_SECTIONS}}, name,
                         _CLUSTER_KEYS, w)
        sub = {n: r.section(body, n, _SCHEMA[n], f"[clusters.{name}.{n}]") for n in ("watch", "oncall", "keep")}
        if "binlogs" not in keys:
            r.fail(f"{w} binlogs", "is required: the cluster's binlog directory or live server (mysql://...)")
        own = replace(oncall, **sub["oncall"])
        if own.rotation and own.rotation_start is None:
            r.fail(f"[clusters.{name}.oncall] rotation_start",
                   "is required with a rotation (a date in the rotation's first week)")
        out[name] = ClusterSettings(
            name, SourceSettings(keys.get("snapshots", ()), keys["binlogs"]), _targets(r, body, f"clusters.{name}."),
            WatchSettings(**sub["watch"]) if "watch" in body else None, KeepSettings(**sub["keep"]), own,
            keys.get("channel"))
    return out
