"""tombstones and customers' modification time

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import deskside.insights.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("conversation_tombstones", "customer_tombstones"):
        op.create_table(
            table,
            sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("deleted_at", deskside.insights.models.UTCDateTime(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("modified_at", deskside.insights.models.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("modified_at")
    op.drop_table("customer_tombstones")
    op.drop_table("conversation_tombstones")
