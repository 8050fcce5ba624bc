"""Each DICOM file's patient ID, accession number and study date, read at enqueue, so the review app's worklist
can name a study as a reading room does (a setting hides the identifiers on shared screens).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_items") as table:
        table.add_column(sa.Column("patient_id", sa.String(64)))
        table.add_column(sa.Column("accession", sa.String(16)))
        table.add_column(sa.Column("study_date", sa.Date))
        table.create_index("ix_batch_items_study_uid", ["study_uid"])


def downgrade() -> None:
    with op.batch_alter_table("batch_items") as table:
        table.drop_index("ix_batch_items_study_uid")
        table.drop_column("study_date")
        table.drop_column("accession")
        table.drop_column("patient_id")
