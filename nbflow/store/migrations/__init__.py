"""Alembic migrations of the metadata schema; applied automatically when a store is opened."""
