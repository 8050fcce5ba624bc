"""Pixel identity, enqueue leases, enqueue-time statuses, activation history, one retrain per night,
and a study view that counts each instance once and keeps studies none of whose images could be screened.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ_DATETIME = sa.DateTime(timezone=True)

# Per instance (SOPInstanceUID, else the file's content) the newest screened row stands for it: the same
# instance in two encodings counts once, and a re-sent instance with other pixels replaces the older score.
STUDY_VIEW = """
CREATE VIEW study_results AS
WITH ranked AS (
    SELECT r.*,
           ROW_NUMBER() OVER (
               PARTITION BY model_version_id, study_uid, COALESCE(sop_uid, sha256)
               ORDER BY CASE WHEN status = 'done' THEN 0 ELSE 1 END, id DESC
           ) AS rank_in_instance
    FROM results r
    WHERE study_uid IS NOT NULL
)
SELECT study_uid,
       model_version_id,
       COUNT(*) AS images,
       SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS images_screened,
       SUM(CASE WHEN status = 'skipped' THEN 1 ELSE 0 END) AS images_skipped,
       SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS images_failed,
       SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS images_pending,
       MAX(CASE WHEN status = 'done' THEN probability END) AS probability,
       MAX(CASE WHEN status = 'done' AND flagged THEN 1 ELSE 0 END) AS flagged
FROM ranked
WHERE rank_in_instance = 1
GROUP BY study_uid, model_version_id
"""

OLD_STUDY_VIEW = """
CREATE VIEW study_results AS
SELECT study_uid, model_version_id, COUNT(*) AS images_screened, MAX(probability) AS probability,
       MAX(CASE WHEN flagged THEN 1 ELSE 0 END) AS flagged
FROM results
WHERE status = 'done' AND study_uid IS NOT NULL
GROUP BY study_uid, model_version_id
"""


def upgrade() -> None:
    op.execute("DROP VIEW study_results")
    with op.batch_alter_table("results") as table:
        table.add_column(sa.Column("pixel_sha256", sa.String(64)))
        table.create_index("ix_results_pixel_sha256", ["pixel_sha256"])
    with op.batch_alter_table("batch_items") as table:
        table.add_column(sa.Column("enqueue_status", sa.String(10)))
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("lease_expires_at", TZ_DATETIME))
    op.create_table(
        "model_activations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("activated_at", TZ_DATETIME, nullable=False),
        sa.Column("rolled_back_at", TZ_DATETIME),
    )
    # The history so far: each version that was ever promoted, in the order it was.
    op.execute(
        "INSERT INTO model_activations (model_version_id, activated_at) "
        "SELECT id, promoted_at FROM model_versions WHERE promoted_at IS NOT NULL ORDER BY promoted_at"
    )
    op.create_table(
        "retrain_runs",
        sa.Column("night", sa.String(10), primary_key=True),
        sa.Column("task_id", sa.String(64)),
        sa.Column("started_at", TZ_DATETIME, nullable=False),
        sa.Column("finished_at", TZ_DATETIME),
        sa.Column("outcome", sa.Text),
    )
    op.execute(STUDY_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW study_results")
    op.drop_table("retrain_runs")
    op.drop_table("model_activations")
    with op.batch_alter_table("batches") as table:
        table.drop_column("lease_expires_at")
    with op.batch_alter_table("batch_items") as table:
        table.drop_column("enqueue_status")
    with op.batch_alter_table("results") as table:
        table.drop_index("ix_results_pixel_sha256")
        table.drop_column("pixel_sha256")
    op.execute(OLD_STUDY_VIEW)
