"""Broadcast files as a plan parsed them, kept for the next plan.

`parsed_files`: one row per broadcast file a plan parsed and checked, keyed by a digest of its
bytes, its path, the limits and the code of the commsync that parsed it; the row holds what the
loader made of it (fields, refs with their positions, diagnostics). The next plan reads files it
has seen from here instead of parsing them again. Rows are pruned after 30 days; a store that
refuses the write only costs the next plan the parse.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parsed_files",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("parsed_files")
