"""The audience histogram, kept between plans.

`audience_histograms`: how many customers qualify for each exact set of products, for one list of
qualifying statuses, as of `generation` — the `memberships_generation` in `commsync_meta`, which
every write to memberships increases in its own transaction. A plan whose selections need the
histogram reads it from here while the generation matches, and computes (and keeps) it otherwise.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audience_histograms",
        sa.Column("statuses", sa.String(512), nullable=False),
        sa.Column("products", sa.Text(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("statuses", "products"),
    )
    op.execute("INSERT INTO commsync_meta (key, value) VALUES ('memberships_generation', '0')")


def downgrade() -> None:
    op.execute("DELETE FROM commsync_meta WHERE key = 'memberships_generation'")
    op.drop_table("audience_histograms")
