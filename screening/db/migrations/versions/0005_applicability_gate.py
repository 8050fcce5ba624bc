"""The applicability gate of each model version: its version and threshold, beside the classifier's.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.add_column(sa.Column("gate_version", sa.String(40)))
        table.add_column(sa.Column("gate_threshold", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.drop_column("gate_threshold")
        table.drop_column("gate_version")
