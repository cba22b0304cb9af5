"""Sends shared by the delivery workers, and the workers' signs of life.

`sends.by_workers`: the delivery workers send it (a scheduled broadcast they started, or any
send under `mail.delivery: workers`) rather than the apply that started it. `workers`: one row per
worker process, its heartbeat: a worker silent for `mail.worker_timeout` is gone, and what it had
claimed is given to the others.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("by_workers", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("workers")
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_column("by_workers")
