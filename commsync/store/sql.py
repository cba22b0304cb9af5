"""The SQL store (SQLite or PostgreSQL through SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError
from sqlalchemy.pool import StaticPool

from commsync.errors import ConfigError, StoreError
from commsync.store import tables as t
from commsync.store.control import ControlMixin
from commsync.store.dashboards import DashboardsMixin
from commsync.store.events import EventsMixin
from commsync.store.imports import ImportsMixin
from commsync.store.managed import ManagedMixin
from commsync.store.migrate import ensure_schema
from commsync.store.parsed import ParsedFilesMixin
from commsync.store.plainsql import Sql
from commsync.store.platform import PlatformMixin
from commsync.store.revision import BUSY_TIMEOUT_MS
from commsync.store.schedules import SchedulesMixin
from commsync.store.sends import SendsMixin
from commsync.store.sqlutil import ConnectionSql

CONNECT_TIMEOUT = 10  # seconds to reach PostgreSQL before a connection counts as failed
# A PostgreSQL peer that goes silent (a network partition, a host that vanished without a reset)
# must not hold a request or a worker forever: libpq's TCP keepalives find an idle connection dead
# after about 10 + 3 × 5 s, and tcp_user_timeout drops one whose sent data stays unacknowledged
# for 30 s. Without them a blocked read waits as long as the kernel's defaults (over two hours).
PG_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Take transactions out of pysqlite's hands (it would run DDL outside them); `_sqlite_begin`
    # emits BEGIN itself. SQLAlchemy documents this recipe for SQLite.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """BEGIN, or BEGIN IMMEDIATE (take the write lock now) when the connection asks for it."""
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_store_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for a store URL; `postgresql://` uses psycopg 3.

    `pool_size` connections stay open; as many again may open under load (`commsync serve`
    asks for more than the CLI: its thread pool runs many requests at once).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid store URL {url!r}: {exc}") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "a PostgreSQL store needs `pip install 'commsync[postgres]'`"
            ) from exc
        t.declare_postgresql()
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=pool_size * 2,
            connect_args={"connect_timeout": CONNECT_TIMEOUT, **PG_LIVENESS},
        )
    if parsed.drivername != "sqlite":
        raise ConfigError(f"unsupported store URL {url!r}: use sqlite:/// or postgresql://")
    if parsed.database in (None, "", ":memory:"):
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store's directory for {url}: {exc.strerror}"
            ) from exc
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=pool_size * 2)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


class SqlStore(
    PlatformMixin,
    ImportsMixin,
    ManagedMixin,
    SendsMixin,
    SchedulesMixin,
    DashboardsMixin,
    EventsMixin,
    ControlMixin,
    ParsedFilesMixin,
):
    """A Store on SQLite or PostgreSQL, every role of `roles.Store`; one mixin per role.

    Migrates the schema on first use.
    """

    def __init__(
        self,
        engine: Engine,
        display_url: str,
        read_timeout: float | None = None,
        pool_size: int = 5,
    ) -> None:
        self.engine = engine
        # Single-statement reads (the feed's hot path) need no transaction: on PostgreSQL that
        # saves the BEGIN and ROLLBACK round trips, more than half of a feed request's time.
        # With `read_timeout` (serve, whose feed reads on its event loop) they run on their own
        # connections, which give up after that many seconds instead of waiting on the store.
        self.reader = _reader(engine, read_timeout, pool_size)
        self._display_url = display_url
        try:
            ensure_schema(engine, display_url)
            with engine.connect() as conn:
                value = conn.execute(
                    select(t.meta.c.value).where(t.meta.c.key == "store_id")
                ).scalar_one()
        except DatabaseError as exc:  # unreachable, not a database, not readable
            engine.dispose()
            raise StoreError(f"cannot open the store {display_url}: {exc.orig}") from exc
        self._store_id = str(value)

    @property
    def store_id(self) -> str:
        return self._store_id

    @property
    def display_url(self) -> str:
        return self._display_url

    @contextmanager
    def plain_sql(self) -> Iterator[Sql]:
        """A connection for the plain SQL the light reader shares (store/plainsql.py)."""
        with self.engine.connect() as conn:
            yield ConnectionSql(conn)

    def close(self) -> None:
        self.close_feed_watch()
        self.reader.dispose()  # the engine's own pool, or the reader's (disposing twice is fine)
        self.engine.dispose()


def _reader(engine: Engine, timeout: float | None, pool_size: int) -> Engine:
    pg = engine.dialect.name == "postgresql"
    if timeout is None or (not pg and engine.url.database in (None, "", ":memory:")):
        return engine.execution_options(isolation_level="AUTOCOMMIT") if pg else engine
    millis = int(timeout * 1000)
    if pg:
        reader = create_engine(
            engine.url,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=pool_size,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": max(1, int(timeout)), **PG_LIVENESS},
        )

        def limit(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {millis}")
            dbapi_conn.commit()

        event.listen(reader, "connect", limit)
        return reader
    reader = create_engine(engine.url, pool_size=pool_size, max_overflow=pool_size)

    def pragmas(dbapi_conn: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_conn, record)
        dbapi_conn.execute(f"PRAGMA busy_timeout={millis}")

    event.listen(reader, "connect", pragmas)
    event.listen(reader, "begin", _sqlite_begin)
    return reader


def open_store(url: str, pool_size: int = 5, read_timeout: float | None = None) -> SqlStore:
    """Open (and migrate on first use) the store at `url`."""
    try:
        display = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise ConfigError(f"invalid store URL {url!r}: {exc}") from exc
    return SqlStore(create_store_engine(url, pool_size), display, read_timeout, pool_size)
