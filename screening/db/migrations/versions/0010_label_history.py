"""Every label recorded, with who recorded it: the review page's readers sign in with a name, and a changed
verdict keeps the earlier ones. The labels recorded before this revision start the history, one entry each.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("pneumonia", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("reader", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO label_history (sha256, pneumonia, source, created_at) "
        "SELECT sha256, pneumonia, source, created_at FROM labels ORDER BY id"
    )


def downgrade() -> None:
    op.drop_table("label_history")
