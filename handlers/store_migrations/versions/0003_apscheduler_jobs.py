"""APScheduler's job table (scheduled backups and drills, handlers/store_leader.py), so that the
migrations describe the whole store: the layout of SQLAlchemyJobStore in APScheduler 3.10-3.11
(`id` VARCHAR(191), `next_run_time` an 8-byte float, indexed, `job_state` the pickled job).

A store of revision 0002 whose scheduler already ran has the table (APScheduler makes it when it
starts): it is kept as it is.

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("apscheduler_jobs"):
        return
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25)),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
        mysql_charset="utf8mb4",
    )
    # APScheduler's own name for it (Column(index=True)): its create(checkfirst) finds it made
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])


def downgrade() -> None:
    raise NotImplementedError("a store is never migrated back")
