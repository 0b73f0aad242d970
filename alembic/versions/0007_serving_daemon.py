"""serving_daemon: which daemon serves this database, and where its socket is

One new table: the daemon that holds the database's claim writes itself there, so a
second daemon refuses to start and the CLI finds the running one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "serving_daemon",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("process_start", sa.Float(), nullable=False),
        sa.Column("socket_path", sa.Text(), nullable=False),
        sa.Column("os_user", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("backend_pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_serving_daemon_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_daemon")),
    )


def downgrade() -> None:
    op.drop_table("serving_daemon")
