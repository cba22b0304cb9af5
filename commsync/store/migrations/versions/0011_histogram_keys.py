"""Kept audience histograms carry their generation once, and writers keep them current.

`audience_histogram_keys`: one row per kept histogram (its qualifying statuses, joined by commas)
with the `memberships_generation` it is current at. A write to the memberships of a few customers
adjusts every current histogram by what changed for them and moves its generation along in the
same transaction (store/histograms.py), so the next plan still reads it instead of counting
1.5M memberships again; a larger write leaves it behind, and the next plan counts it. The
generation moved from every row of `audience_histograms` to this one row, so a write touches a
histogram's few changed rows, not all of them. The table was a cache: it is recreated empty,
and its product sets are now written in one order (slugs sorted), which writers look them up by.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("audience_histograms")
    op.create_table(
        "audience_histograms",
        sa.Column("statuses", sa.String(512), nullable=False),
        sa.Column("products", sa.Text(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("statuses", "products"),
    )
    op.create_table(
        "audience_histogram_keys",
        sa.Column("statuses", sa.String(512), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("statuses"),
    )


def downgrade() -> None:
    op.drop_table("audience_histogram_keys")
    op.drop_table("audience_histograms")
    op.create_table(
        "audience_histograms",
        sa.Column("statuses", sa.String(512), nullable=False),
        sa.Column("products", sa.Text(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("statuses", "products"),
    )
