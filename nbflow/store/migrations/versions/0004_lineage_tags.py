"""Lineage, tags and notes: each task records the code and environment it ran with; runs get
tags and a free-text note.

``codes`` holds each distinct step body once (by hash), so a step re-run with new code in a
kernel session keeps the code of its earlier tasks.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("note", sa.Text))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("code_hash", sa.String(32)))
        batch.add_column(sa.Column("environment", sa.JSON))
    op.create_table(
        "tags",
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_tags_name", "tags", ["name"])
    op.create_table(
        "codes",
        sa.Column("hash", sa.String(32), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("codes")
    op.drop_index("ix_tags_name", "tags")
    op.drop_table("tags")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("environment")
        batch.drop_column("code_hash")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("note")
