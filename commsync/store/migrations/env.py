"""Alembic environment: commsync runs migrations itself, on a connection it passes in."""

from __future__ import annotations

from alembic import context

from commsync.store.migrate import VERSION_TABLE
from commsync.store.tables import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # pragma: no cover - commsync never migrates offline
    raise RuntimeError("commsync migrations run online only")
run_migrations_online()
