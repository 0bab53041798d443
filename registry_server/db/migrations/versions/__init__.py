"""One Alembic revision per file (loaded by Alembic from this folder, never imported)."""
