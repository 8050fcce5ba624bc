"""Which screening results each DICOM object was made from, so a study keeps one current report: an identical
re-send makes nothing new, a late instance makes one report of the whole study that names the earlier one.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("result_objects") as table:
        table.add_column(sa.Column("covers", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("result_objects") as table:
        table.drop_column("covers")
