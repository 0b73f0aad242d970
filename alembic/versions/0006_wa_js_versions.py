"""wa-js versions: installed releases, per-tenant overrides (canaries), the fleet default

Three new tables and no change to existing ones: a column on `tenant` would make
SQLite's batch mode rebuild that table (drop and copy), and dropping `tenant` cascades
to every row that references it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wajs_release",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("integrity", sa.String(length=200), nullable=False),
        sa.Column("bundle_sha256", sa.String(length=64), nullable=False),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_wajs_release")),
    )
    op.create_table(
        "wajs_fleet_default",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_wajs_fleet_default_one_row")),
        sa.ForeignKeyConstraint(
            ["version"],
            ["wajs_release.version"],
            name=op.f("fk_wajs_fleet_default_version_wajs_release"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wajs_fleet_default")),
    )
    with op.batch_alter_table("wajs_fleet_default", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wajs_fleet_default_version"), ["version"])
    op.create_table(
        "wajs_tenant_override",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_wajs_tenant_override_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version"],
            ["wajs_release.version"],
            name=op.f("fk_wajs_tenant_override_version_wajs_release"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_wajs_tenant_override")),
    )
    with op.batch_alter_table("wajs_tenant_override", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wajs_tenant_override_version"), ["version"])


def downgrade() -> None:
    with op.batch_alter_table("wajs_tenant_override", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wajs_tenant_override_version"))
    op.drop_table("wajs_tenant_override")
    with op.batch_alter_table("wajs_fleet_default", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wajs_fleet_default_version"))
    op.drop_table("wajs_fleet_default")
    op.drop_table("wajs_release")
