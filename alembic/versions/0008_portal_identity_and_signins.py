"""portal: users bound to the provider's issuer + sub, sign-ins used once, wider actor

- ``user.oidc_issuer`` / ``user.oidc_subject`` (unique together; NULL until the user's
  next sign-in binds them). A unique index, not a constraint: on SQLite a constraint
  would make batch mode rebuild ``user``, and dropping it would run the ON DELETE SET
  NULL of every row that references a user.
- ``portal_signin``: one row per sign-in started and not finished (state and nonce).
- ``portal_event_log.actor`` from 200 to 320 characters ("portal:" + 254).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oidc_issuer", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("oidc_subject", sa.String(length=255), nullable=True))
    op.create_index(
        op.f("ix_user_oidc_issuer_oidc_subject"),
        "user",
        ["oidc_issuer", "oidc_subject"],
        unique=True,
    )
    op.create_table(
        "portal_signin",
        sa.Column("state_sha256", sa.String(length=64), nullable=False),
        sa.Column("nonce_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_sha256", name=op.f("pk_portal_signin")),
    )
    op.create_index(op.f("ix_portal_signin_created_at"), "portal_signin", ["created_at"])
    # Nothing references portal_event_log, so SQLite's rebuild of it is safe.
    with op.batch_alter_table("portal_event_log", schema=None) as batch_op:
        batch_op.alter_column(
            "actor",
            existing_type=sa.String(length=200),
            type_=sa.String(length=320),
            existing_nullable=False,
        )


def downgrade() -> None:
    op.execute(
        "UPDATE portal_event_log SET actor = substr(actor, 1, 200) WHERE length(actor) > 200"
    )
    with op.batch_alter_table("portal_event_log", schema=None) as batch_op:
        batch_op.alter_column(
            "actor",
            existing_type=sa.String(length=320),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
    op.drop_index(op.f("ix_portal_signin_created_at"), table_name="portal_signin")
    op.drop_table("portal_signin")
    op.drop_index(op.f("ix_user_oidc_issuer_oidc_subject"), table_name="user")
    # Not batch mode: its rebuild of `user` on SQLite would set every reference to a
    # user to NULL (ON DELETE SET NULL); SQLite drops a column in place since 3.35.
    op.execute('ALTER TABLE "user" DROP COLUMN oidc_subject')
    op.execute('ALTER TABLE "user" DROP COLUMN oidc_issuer')
