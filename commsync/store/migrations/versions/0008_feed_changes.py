"""What changed for the notices feed, for the response caches of `serve` processes.

`feed_changes`: one row per customer whose feed a write changed (a dismissal, their memberships,
their record), or one row with no customer when a write changed every feed (notices applied,
an import, a product deleted), numbered by `feed_generation` in `commsync_meta`, which that
write increases in its own transaction. A `serve` process compares the generation it last saw
with the store's and drops what changed since (`store/dashboards.py`). Writers keep the newest
rows only; a reader further behind than that drops everything.

`ix_dismissals_customer`: a customer's dismissals, read when their feed is built.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_changes",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_feed_changes_seq", "feed_changes", ["seq"])
    op.execute("INSERT INTO commsync_meta (key, value) VALUES ('feed_generation', '0')")
    op.create_index("ix_dismissals_customer", "dismissals", ["customer_id", "broadcast_id"])


def downgrade() -> None:
    op.drop_index("ix_dismissals_customer", "dismissals")
    op.execute("DELETE FROM commsync_meta WHERE key = 'feed_generation'")
    op.drop_index("ix_feed_changes_seq", "feed_changes")
    op.drop_table("feed_changes")
