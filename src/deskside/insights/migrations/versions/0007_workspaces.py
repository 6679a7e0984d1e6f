"""workspaces: their list, the workspace of each audit entry and of each person's token

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import deskside.insights.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("created_at", deskside.insights.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("erasure_audit", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("workspace", sa.String(length=40), nullable=False, server_default="default")
        )
        batch_op.create_index(batch_op.f("ix_erasure_audit_workspace"), ["workspace"])
    with op.batch_alter_table("person_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("workspace", sa.String(length=40), nullable=False, server_default="default")
        )


def downgrade() -> None:
    with op.batch_alter_table("person_tokens", schema=None) as batch_op:
        batch_op.drop_column("workspace")
    with op.batch_alter_table("erasure_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_audit_workspace"))
        batch_op.drop_column("workspace")
    op.drop_table("workspaces")
