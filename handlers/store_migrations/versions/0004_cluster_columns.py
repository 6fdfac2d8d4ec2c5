"""The cluster of the operators' saved choice, of an event marked expected and of an alert: one
choice per cluster (it was one row for the whole store, its cluster a `[name] ` prefix of `why`),
the same transaction position expected in two clusters kept apart, and an alert's cluster stored
beside its key. Rows written before are the `default` cluster's (a config without [clusters]), as
are choices with no `[name] ` prefix; a prefixed one becomes its cluster's, the prefix dropped.

`choice` and `expected_events` get a new primary key, so they are copied into new tables: on
MySQL/MariaDB, where DDL commits by itself, each step finds what an interrupted run left and goes on.

Revision ID: 0004
"""
import re

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LONG = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_KEY = 255
_TAG = re.compile(r"^\[([a-z0-9_-]+)\] ", re.I)


def _cluster_column() -> sa.Column:
    return sa.Column("cluster", sa.String(_KEY), nullable=False, server_default="default")


def _new_tables() -> dict[str, tuple]:
    return {
        "choice": (
            _cluster_column(),
            sa.Column("stop", sa.String(_KEY)),
            sa.Column("skips", _LONG, nullable=False),
            sa.Column("user", sa.String(_KEY), nullable=False),
            sa.Column("why", _LONG, nullable=False),
            sa.Column("ts", sa.Double, nullable=False),
            sa.PrimaryKeyConstraint("cluster", name="choice_v4_pk"),
        ),
        "expected_events": (
            _cluster_column(),
            sa.Column("tx", sa.String(_KEY), nullable=False),
            sa.Column("gtid", sa.String(_KEY)),
            sa.Column("user", sa.String(_KEY), nullable=False),
            sa.Column("reason", _LONG, nullable=False),
            sa.Column("ts", sa.Double, nullable=False),
            sa.PrimaryKeyConstraint("cluster", "tx", name="expected_events_v4_pk"),
        ),
    }


def _copy_choice(bind, old: sa.Table, new: sa.Table) -> None:
    for row in bind.execute(sa.select(old)).mappings():
        why, cluster = row["why"] or "", "default"
        if m := _TAG.match(why):
            cluster, why = m.group(1).lower(), why[m.end():]
        if bind.execute(sa.select(new.c.cluster).where(new.c.cluster == cluster)).first() is None:
            bind.execute(new.insert().values(cluster=cluster, stop=row["stop"], skips=row["skips"], user=row["user"],
                                             why=why, ts=row["ts"]))


def _copy_expected(bind, old: sa.Table, new: sa.Table) -> None:
    for row in bind.execute(sa.select(old)).mappings():
        if bind.execute(sa.select(new.c.tx).where(new.c.cluster == "default", new.c.tx == row["tx"])).first() is None:
            bind.execute(new.insert().values(cluster="default", **{k: row[k] for k in ("tx", "gtid", "user", "reason", "ts")}))


def upgrade() -> None:
    bind = op.get_bind()
    for name, columns in _new_tables().items():
        staging = f"{name}_v4"
        inspector = sa.inspect(bind)
        if inspector.has_table(name) and "cluster" in {c["name"] for c in inspector.get_columns(name)}:
            continue   # done (an interrupted run on MySQL that had renamed it already)
        if not inspector.has_table(staging):
            op.create_table(staging, *columns, mysql_charset="utf8mb4")
        if inspector.has_table(name):
            old = sa.Table(name, sa.MetaData(), autoload_with=bind)
            new = sa.Table(staging, sa.MetaData(), autoload_with=bind)
            (_copy_choice if name == "choice" else _copy_expected)(bind, old, new)
            op.drop_table(name)
        op.rename_table(staging, name)
    inspector = sa.inspect(bind)
    if "cluster" not in {c["name"] for c in inspector.get_columns("alerts")}:
        op.add_column("alerts", _cluster_column())


def downgrade() -> None:
    raise NotImplementedError("a store is never migrated back")
