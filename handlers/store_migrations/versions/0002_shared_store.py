"""Several serve instances on one store: who runs a job and when it last said so, who is posting an
alert, and leases (which instance watches a cluster).

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: SQLite adds them with ALTER TABLE, no table rebuild.
    op.add_column("jobs", sa.Column("owner", sa.String(255)))
    op.add_column("jobs", sa.Column("heartbeat_at", sa.Double))
    op.create_index("jobs_by_state", "jobs", ["state", "seq"])
    op.add_column("alerts", sa.Column("claimed_by", sa.String(255)))
    op.add_column("alerts", sa.Column("claimed_at", sa.Double))
    op.create_table(
        "leases",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    raise NotImplementedError("a store is never migrated back")
