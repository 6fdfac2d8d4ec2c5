"""The shared store's tables as the stores read and write them (SQLAlchemy Core), at the newest
migration (handlers/store_migrations/versions). The migrations write their own DDL out in full:
a migration is history and must not change when a table here does.

Types that every backend keeps exactly: identifiers and keys as bounded strings (MySQL indexes no
TEXT column), times as doubles (a MySQL FLOAT would round a Unix time to minutes), JSON and
statements as LONGTEXT on MySQL/MariaDB (its TEXT stops at 64 KB).
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

KEY = 255      # a job id, an alert key, a lease name, an instance id
SOURCE = 512   # a watched source's redacted URL

# A column of any length: TEXT on SQLite and PostgreSQL, LONGTEXT on MySQL/MariaDB.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(KEY), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("target", sa.String(KEY), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("phase", sa.String(KEY), nullable=False, default=""),
    sa.Column("requester", sa.String(KEY), nullable=False),
    sa.Column("approver", sa.String(KEY)),
    sa.Column("args", LongText, nullable=False, default="{}"),
    sa.Column("plan_id", sa.String(KEY)),
    sa.Column("stage_job", sa.String(KEY)),
    sa.Column("progress", LongText, nullable=False, default="{}"),
    sa.Column("result", LongText),
    sa.Column("error", LongText),
    sa.Column("abort_requested", sa.Integer, nullable=False, default=0),
    sa.Column("worker_pid", sa.Integer),
    sa.Column("origin", sa.String(32), nullable=False, default="console"),
    sa.Column("channel", sa.String(KEY)),
    sa.Column("card_ts", sa.String(64)),
    sa.Column("card_version", sa.Integer, nullable=False, default=0),
    sa.Column("posted_version", sa.Integer, nullable=False, default=0),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("updated", sa.Double, nullable=False),
    sa.Column("owner", sa.String(KEY)),          # the serve instance running it (claim_next)
    sa.Column("heartbeat_at", sa.Double),        # the store's clock when its owner last said it lives
    sqlite_autoincrement=True,
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(KEY), nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("text", LongText, nullable=False),
    sa.Column("posted", sa.Integer, nullable=False, default=0),
    sqlite_autoincrement=True,
)

DEFAULT_CLUSTER = "default"   # a config without [clusters]; rows written before clusters had names

# One saved choice per cluster (a plan card's buttons, an alert's *This is the incident*).
choice = sa.Table(
    "choice", metadata,
    sa.Column("cluster", sa.String(KEY), primary_key=True),
    sa.Column("stop", sa.String(KEY)),
    sa.Column("skips", LongText, nullable=False, default="[]"),
    sa.Column("user", sa.String(KEY), nullable=False),
    sa.Column("why", LongText, nullable=False, default=""),
    sa.Column("ts", sa.Double, nullable=False),
)

expected_events = sa.Table(
    "expected_events", metadata,
    sa.Column("cluster", sa.String(KEY), primary_key=True),
    sa.Column("tx", sa.String(KEY), primary_key=True),
    sa.Column("gtid", sa.String(KEY)),
    sa.Column("user", sa.String(KEY), nullable=False),
    sa.Column("reason", LongText, nullable=False, default=""),
    sa.Column("ts", sa.Double, nullable=False),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("actor", sa.String(KEY), nullable=False),
    sa.Column("action", LongText, nullable=False),
    sa.Column("job", sa.String(KEY)),
    sa.Column("detail", LongText, nullable=False, default=""),
    sqlite_autoincrement=True,
)

watch_position = sa.Table(
    "watch_position", metadata,
    sa.Column("source", sa.String(SOURCE), primary_key=True),
    sa.Column("file", sa.String(KEY), nullable=False),
    sa.Column("pos", sa.BigInteger, nullable=False),
)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("key", sa.String(SOURCE), primary_key=True),   # unique: a second claim of an event fails
    sa.Column("source", sa.String(SOURCE), nullable=False),
    sa.Column("reason", LongText, nullable=False),
    sa.Column("oncall", sa.String(KEY)),
    sa.Column("ts", sa.String(64)),
    sa.Column("channel", sa.String(KEY)),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("acked_by", sa.String(KEY)),
    sa.Column("escalations", sa.Integer, nullable=False, default=0),
    sa.Column("body", LongText),
    sa.Column("severity", sa.String(32), nullable=False, default="certain"),
    sa.Column("marked", sa.String(32)),
    sa.Column("marked_by", sa.String(KEY)),
    sa.Column("claimed_by", sa.String(KEY)),     # the instance posting it now
    sa.Column("claimed_at", sa.Double),          # the store's clock at that claim
    sa.Column("cluster", sa.String(KEY), nullable=False, default=DEFAULT_CLUSTER),   # also in `key` (alerts.py)
)

oncall_override = sa.Table(
    "oncall_override", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user", sa.String(KEY), nullable=False),
    sa.Column("since", sa.Double),
)

leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(KEY), primary_key=True),
    sa.Column("owner", sa.String(KEY), nullable=False),
    sa.Column("expires", sa.Double, nullable=False),   # the store's clock
)
