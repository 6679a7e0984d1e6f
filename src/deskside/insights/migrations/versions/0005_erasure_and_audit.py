"""erasure tombstones, their key, the erasure audit and the exports to rewrite

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import deskside.insights.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_keys",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", deskside.insights.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "erasure_tombstones",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("erased_at", deskside.insights.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "erasure_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", deskside.insights.models.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("erasure_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erasure_audit_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_erasure_audit_at"), ["at"], unique=False)
    op.create_table(
        "erased_exports",
        sa.Column("topic_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("erased_at", deskside.insights.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("topic_id", "target"),
    )


def downgrade() -> None:
    op.drop_table("erased_exports")
    with op.batch_alter_table("erasure_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_audit_at"))
        batch_op.drop_index(batch_op.f("ix_erasure_audit_action"))
    op.drop_table("erasure_audit")
    op.drop_table("erasure_tombstones")
    op.drop_table("erasure_keys")
