"""What each version scored on the reference films when it was registered (measured, beside its manifest's claims).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.add_column(sa.Column("reference_check", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.drop_column("reference_check")
