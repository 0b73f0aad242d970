"""worker identity (create_time) and heartbeat for the supervisor

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("worker_process", schema=None) as batch_op:
        batch_op.add_column(sa.Column("create_time", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("worker_process", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("create_time")
