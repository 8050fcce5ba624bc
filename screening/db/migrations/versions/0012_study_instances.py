"""One definition of a study: the view study_instances holds each DICOM instance of a study once per model
version (its latest result, a screened one first), and study_results, the study's figures, is made from it. The
worklist, the results and the DICOM report all read a study from these two.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INSTANCES = """
SELECT id AS result_id, study_uid, model_version_id, sop_uid, path, status, probability, flagged
FROM (
    SELECT r.*,
           ROW_NUMBER() OVER (
               PARTITION BY model_version_id, study_uid, COALESCE(sop_uid, sha256)
               ORDER BY CASE WHEN status = 'done' THEN 0 ELSE 1 END, id DESC
           ) AS rank_in_instance
    FROM results r
    WHERE study_uid IS NOT NULL
) ranked
WHERE rank_in_instance = 1
"""

FIGURES = """
SELECT study_uid,
       model_version_id,
       COUNT(*) AS images,
       SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS images_screened,
       SUM(CASE WHEN status = 'skipped' THEN 1 ELSE 0 END) AS images_skipped,
       SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS images_failed,
       SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS images_pending,
       MAX(CASE WHEN status = 'done' THEN probability END) AS probability,
       MAX(CASE WHEN status = 'done' AND flagged THEN 1 ELSE 0 END) AS flagged
FROM {instances}
GROUP BY study_uid, model_version_id
"""


def upgrade() -> None:
    op.execute("DROP VIEW study_results")
    op.execute(f"CREATE VIEW study_instances AS {INSTANCES}")
    op.execute(f"CREATE VIEW study_results AS {FIGURES.format(instances='study_instances')}")


def downgrade() -> None:
    op.execute("DROP VIEW study_results")
    op.execute("DROP VIEW study_instances")
    op.execute(f"CREATE VIEW study_results AS {FIGURES.format(instances=f'({INSTANCES}) instances')}")
