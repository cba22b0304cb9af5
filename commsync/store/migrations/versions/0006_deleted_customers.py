"""Customers an import with `--sync` found absent: marked deleted, kept for what refers to them.

`customers.deleted_at`: set when `customers import --sync` no longer lists the customer (their
memberships end then, so no product reaches them, and `all` and listed targets skip them);
cleared when an import or the API writes the customer again.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
