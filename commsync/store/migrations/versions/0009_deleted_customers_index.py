"""The customers marked deleted, indexed apart.

`ix_customers_deleted`: a partial index over customers whose `deleted_at` is set (those a
`customers import --sync` found absent). A plan counts `all` as every customer less these, so it
no longer reads a million customer rows to count one target; the index holds only the few marked.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    deleted = sa.text("deleted_at IS NOT NULL")
    op.create_index(
        "ix_customers_deleted",
        "customers",
        ["deleted_at"],
        sqlite_where=deleted,
        postgresql_where=deleted,
    )


def downgrade() -> None:
    op.drop_index("ix_customers_deleted", "customers")
