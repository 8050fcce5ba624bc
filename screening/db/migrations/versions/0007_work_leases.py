"""Leases on work in flight: the worker holding each queued result (and each result object being sent), until
when, how often a worker started screening it, and which holder stopped renewing and when it was taken over.
Result objects also note the header values that were left out of them.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

RESULT_COLUMNS = ("lease_holder", "lease_token", "lease_expires_at", "screenings", "lapsed_holder", "taken_over_at")


def upgrade() -> None:
    with op.batch_alter_table("results") as table:
        table.add_column(sa.Column("lease_holder", sa.String(200)))
        table.add_column(sa.Column("lease_token", sa.String(32)))
        table.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
        table.add_column(sa.Column("screenings", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("lapsed_holder", sa.String(200)))
        table.add_column(sa.Column("taken_over_at", sa.DateTime(timezone=True)))
    op.create_index("ix_results_lease_expires_at", "results", ["lease_expires_at"])
    with op.batch_alter_table("result_objects") as table:
        table.add_column(sa.Column("lease_holder", sa.String(200)))
        table.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
        table.add_column(sa.Column("notes", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("result_objects") as table:
        table.drop_column("notes")
        table.drop_column("lease_expires_at")
        table.drop_column("lease_holder")
    op.drop_index("ix_results_lease_expires_at", "results")
    with op.batch_alter_table("results") as table:
        for column in reversed(RESULT_COLUMNS):
            table.drop_column(column)
