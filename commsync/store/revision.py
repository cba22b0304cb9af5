"""The store's schema revision, named without loading SQLAlchemy or Alembic."""

from __future__ import annotations

HEAD = "0008"  # kept equal to the newest revision in migrations/versions (a test checks it)
VERSION_TABLE = "commsync_schema_version"
