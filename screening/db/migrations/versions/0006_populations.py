"""Operating points per population: each version's points, each batch's `--population`, and per result the
threshold it was scored at, whose population's it is and why.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.add_column(sa.Column("populations", sa.JSON))
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("population", sa.String(10)))
    with op.batch_alter_table("results") as table:
        table.add_column(sa.Column("threshold", sa.Float))
        table.add_column(sa.Column("population", sa.String(10)))
        table.add_column(sa.Column("population_basis", sa.String(10)))
        table.add_column(sa.Column("adult_score", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("results") as table:
        for column in ("adult_score", "population_basis", "population", "threshold"):
            table.drop_column(column)
    with op.batch_alter_table("batches") as table:
        table.drop_column("population")
    with op.batch_alter_table("model_versions") as table:
        table.drop_column("populations")
