"""Each system email counts its cancelled messages (queue cancel, or the email changed).

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
    with op.batch_alter_table("system_emails", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cancelled_count", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("system_emails", schema=None) as batch_op:
        batch_op.drop_column("cancelled_count")
