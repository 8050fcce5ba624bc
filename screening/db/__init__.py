"""The results store (SQLAlchemy; SQLite embedded, PostgreSQL shared): the model registry, batches, one result row
per image and model version, a study as one view (study_instances, study_results), radiologists' labels, and the
Alembic migrations that shape them. It returns rows and counts; the use cases put them into words."""
