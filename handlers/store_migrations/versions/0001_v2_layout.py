"""The layout of a store file at `PRAGMA user_version` 2, the last version before Alembic.

A file of that version (or an older one, first brought to 2 by handlers/sqlite_store.py) is stamped
with this revision; an empty store gets its tables here.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_LONG = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_KEY = 255
_SOURCE = 512


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(_KEY), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target", sa.String(_KEY), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("phase", sa.String(_KEY), nullable=False, server_default=""),
        sa.Column("requester", sa.String(_KEY), nullable=False),
        sa.Column("approver", sa.String(_KEY)),
        sa.Column("args", _LONG, nullable=False),
        sa.Column("plan_id", sa.String(_KEY)),
        sa.Column("stage_job", sa.String(_KEY)),
        sa.Column("progress", _LONG, nullable=False),
        sa.Column("result", _LONG),
        sa.Column("error", _LONG),
        sa.Column("abort_requested", sa.Integer, nullable=False, server_default="0"),
        sa.Column("worker_pid", sa.Integer),
        sa.Column("origin", sa.String(32), nullable=False, server_default="console"),
        sa.Column("channel", sa.String(_KEY)),
        sa.Column("card_ts", sa.String(64)),
        sa.Column("card_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("posted_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("updated", sa.Double, nullable=False),
        sqlite_autoincrement=True, mysql_charset="utf8mb4",
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(_KEY), nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("text", _LONG, nullable=False),
        sa.Column("posted", sa.Integer, nullable=False, server_default="0"),
        sqlite_autoincrement=True, mysql_charset="utf8mb4",
    )
    op.create_table(
        "choice",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stop", sa.String(_KEY)),
        sa.Column("skips", _LONG, nullable=False),
        sa.Column("user", sa.String(_KEY), nullable=False),
        sa.Column("why", _LONG, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.CheckConstraint("id = 1", name="choice_one_row"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "expected_events",
        sa.Column("tx", sa.String(_KEY), primary_key=True),
        sa.Column("gtid", sa.String(_KEY)),
        sa.Column("user", sa.String(_KEY), nullable=False),
        sa.Column("reason", _LONG, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("actor", sa.String(_KEY), nullable=False),
        sa.Column("action", _LONG, nullable=False),
        sa.Column("job", sa.String(_KEY)),
        sa.Column("detail", _LONG, nullable=False),
        sqlite_autoincrement=True, mysql_charset="utf8mb4",
    )
    op.create_table(
        "watch_position",
        sa.Column("source", sa.String(_SOURCE), primary_key=True),
        sa.Column("file", sa.String(_KEY), nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "alerts",
        sa.Column("key", sa.String(_SOURCE), primary_key=True),
        sa.Column("source", sa.String(_SOURCE), nullable=False),
        sa.Column("reason", _LONG, nullable=False),
        sa.Column("oncall", sa.String(_KEY)),
        sa.Column("ts", sa.String(64)),
        sa.Column("channel", sa.String(_KEY)),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("acked_by", sa.String(_KEY)),
        sa.Column("escalations", sa.Integer, nullable=False, server_default="0"),
        sa.Column("body", _LONG),
        sa.Column("severity", sa.String(32), nullable=False, server_default="certain"),
        sa.Column("marked", sa.String(32)),
        sa.Column("marked_by", sa.String(_KEY)),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "oncall_override",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("user", sa.String(_KEY), nullable=False),
        sa.Column("since", sa.Double),
        sa.CheckConstraint("id = 1", name="oncall_override_one_row"),
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    raise NotImplementedError("a store is never migrated back")
