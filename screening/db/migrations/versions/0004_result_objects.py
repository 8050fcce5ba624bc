"""DICOM results made for screened studies (structured reports, heatmap captures) and their sending.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "result_objects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id"), nullable=False, index=True),
        sa.Column("study_uid", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(4), nullable=False),
        sa.Column("source_sop_uid", sa.String(64), nullable=False),
        sa.Column("sop_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("destination", sa.String(200)),
        sa.Column("status", sa.String(10), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("batch_id", "study_uid", "kind", "source_sop_uid", name="uq_result_objects"),
    )


def downgrade() -> None:
    op.drop_table("result_objects")
