"""What readers of the store share without loading SQLAlchemy or Alembic: the schema revision
and how long a SQLite connection waits for another's lock."""

from __future__ import annotations

HEAD = "0011"  # kept equal to the newest revision in migrations/versions (a test checks it)
VERSION_TABLE = "commsync_schema_version"
BUSY_TIMEOUT_MS = 30_000  # how long a SQLite connection waits for another's write lock
