"""Schema migrations (Alembic), run automatically when a store is first used."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

from commsync.errors import StoreError, StoreTooNew
from commsync.store.revision import HEAD, VERSION_TABLE

__all__ = ["HEAD", "VERSION_TABLE", "current_revision", "ensure_schema", "known_revisions"]
_SCRIPTS = Path(__file__).resolve().parent / "migrations"
_LOCK = threading.Lock()


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory(str(_SCRIPTS)).walk_revisions()}


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    # One migrator at a time: Alembic's context is process-global, and across processes
    # PostgreSQL takes an advisory lock while SQLite takes its write lock up front.
    with _LOCK, engine.connect() as conn:
        conn = conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7263548190)"))
            if current_revision(conn) == HEAD:
                return
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def ensure_schema(engine: Engine, display_url: str) -> None:
    """Migrate the store to HEAD; refuse a store written by a newer commsync."""
    with engine.connect() as conn:
        revision = current_revision(conn)
    if revision == HEAD:
        return
    if revision is not None and revision not in known_revisions():
        raise StoreTooNew(
            f"the store {display_url} has schema revision {revision!r}, which this commsync "
            f"(schema {HEAD}) does not know: it was migrated by a newer commsync. "
            "Upgrade commsync; nothing was changed."
        )
    try:
        _upgrade(engine)
    except Exception as exc:
        with engine.connect() as conn:
            if current_revision(conn) == HEAD:  # another process migrated it meanwhile
                return
        raise StoreError(f"cannot migrate the store {display_url}: {exc}") from exc
