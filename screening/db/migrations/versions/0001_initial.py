"""Model registry, batches, results, and the study-level view.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("artifact_path", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("preprocessing", sa.JSON, nullable=False),
        sa.Column("training_config", sa.JSON, nullable=False),
        sa.Column("data_manifest", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.Column("promoted_at", TZ_DATETIME),
    )
    op.create_index(  # at most one active version, whatever promotes run at once
        "uq_model_versions_one_active",
        "model_versions",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.Column("roots", sa.JSON, nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("enqueue_finished_at", TZ_DATETIME),
    )
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id")),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("kind", sa.String(10)),
        sa.Column("study_uid", sa.String(64)),
        sa.Column("series_uid", sa.String(64)),
        sa.Column("sop_uid", sa.String(64)),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("probability", sa.Float),
        sa.Column("flagged", sa.Boolean),
        sa.Column("read_ms", sa.Float),
        sa.Column("preprocess_ms", sa.Float),
        sa.Column("infer_ms", sa.Float),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.Column("dispatched_at", TZ_DATETIME),
        sa.Column("screened_at", TZ_DATETIME),
        sa.UniqueConstraint("sha256", "model_version_id", name="uq_results_image_version"),
    )
    op.create_index("ix_results_model_version_id", "results", ["model_version_id"])
    op.create_index("ix_results_study_uid", "results", ["study_uid"])
    op.create_index("ix_results_status", "results", ["status"])
    op.create_index("ix_results_sop_uid", "results", ["sop_uid"])
    op.create_table(
        "batch_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("kind", sa.String(10)),
        sa.Column("study_uid", sa.String(64)),
        sa.Column("series_uid", sa.String(64)),
        sa.Column("sop_uid", sa.String(64)),
        sa.Column("enqueue_error", sa.Text),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("results.id")),
    )
    op.create_index("ix_batch_items_batch_id", "batch_items", ["batch_id"])
    op.create_index("ix_batch_items_sha256", "batch_items", ["sha256"])
    op.create_index("ix_batch_items_result_id", "batch_items", ["result_id"])
    # A study's score is its highest image probability; flagged when any image is.
    op.execute(
        """
        CREATE VIEW study_results AS
        SELECT study_uid,
               model_version_id,
               COUNT(*) AS images_screened,
               MAX(probability) AS probability,
               MAX(CASE WHEN flagged THEN 1 ELSE 0 END) AS flagged
        FROM results
        WHERE status = 'done' AND study_uid IS NOT NULL
        GROUP BY study_uid, model_version_id
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW study_results")
    op.drop_table("batch_items")
    op.drop_table("results")
    op.drop_table("batches")
    op.drop_table("model_versions")
