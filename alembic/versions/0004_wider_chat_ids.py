"""wider message numbers and chat ids (64): group and sandbox ids exceed 32

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {"message_log": ("from_number", "to_number", "chat"), "chat_state": ("chat",)}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(
                    column,
                    existing_type=sa.String(length=32),
                    type_=sa.String(length=64),
                    existing_nullable=False,
                )


def downgrade() -> None:
    # Values longer than 32 would not fit back; they are cut, as the old schema would
    # have refused them.
    for table, columns in COLUMNS.items():
        for column in columns:
            # Names from COLUMNS above, never from input.
            statement = f"UPDATE {table} SET {column} = SUBSTR({column}, 1, 32) "  # noqa: S608
            op.execute(sa.text(statement + f"WHERE LENGTH({column}) > 32"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(
                    column,
                    existing_type=sa.String(length=64),
                    type_=sa.String(length=32),
                    existing_nullable=False,
                )
