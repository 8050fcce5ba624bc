"""The results store (SQLAlchemy; SQLite embedded, PostgreSQL shared): the model registry, batches, one result row
per image and model version, radiologists' labels, and the Alembic migrations that shape them."""
