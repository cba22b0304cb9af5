"""Small SQL helpers shared by the store's modules: one spelling of each dialect difference."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

from commsync.store.plainsql import Statement, driver_sql

log = logging.getLogger(__name__)

CHUNK = 500


def now() -> datetime:
    return datetime.now(UTC)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# Writers keep this many of the newest feed_changes rows; a `serve` process further behind drops
# its whole cache. More customers than _FEED_MANY in one write are recorded as everyone's change.
FEED_CHANGES_KEPT = 10_000
_FEED_MANY = 1_000
_BUMP_FEED = (
    "UPDATE commsync_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR(32))"
    " WHERE key = 'feed_generation' RETURNING value"
)


def feed_changed(conn: Connection, customers: Collection[str] | None) -> None:
    """In the transaction that changes what notices feeds show: whose feed (`customers`; None:
    everyone's), so `serve` processes drop those responses from their caches
    (`DashboardsMixin.feed_changes`). Call it last in the transaction: on PostgreSQL it holds
    the generation's row lock until the commit, which keeps the numbers in commit order."""
    pg = conn.dialect.name == "postgresql"
    seq = int(conn.exec_driver_sql(_BUMP_FEED).scalar_one())
    who: Collection[str | None] = (
        [None] if customers is None or len(customers) > _FEED_MANY else sorted(set(customers))
    )
    if who:
        insert = driver_sql("INSERT INTO feed_changes (seq, customer_id) VALUES (?, ?)", pg)
        conn.exec_driver_sql(insert, [(seq, c) for c in who])
    if seq % 100 == 0:
        prune = driver_sql("DELETE FROM feed_changes WHERE seq <= ?", pg)
        conn.exec_driver_sql(prune, (seq - FEED_CHANGES_KEPT,))


def insert_for(dialect_name: str, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL); imported here, so a
    SQLite store never loads the PostgreSQL dialect (20 ms of start-up)."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert or update `rows` (all with the same columns): one statement, compiled once and
    executed with many parameter sets (the driver's executemany). A multi-row VALUES statement
    instead cost SQLAlchemy a compile per chunk of every bound value: 7,450 customers/s."""
    if not rows:
        return
    stmt = insert_for(conn.dialect.name, table)
    changing = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    statement = stmt.on_conflict_do_update(index_elements=list(keys), set_=changing)
    for chunk in chunks(rows, 10_000):
        conn.execute(statement, list(chunk))


class ConnectionSql:
    """`plainsql.Sql` over a SQLAlchemy connection (SQLite or PostgreSQL)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return [
            tuple(r) for r in self.conn.exec_driver_sql(driver_sql(sql, self.pg), tuple(params))
        ]

    def keep(self, statements: Sequence[Statement]) -> bool:
        conn = self.conn
        try:
            conn.commit()  # what was read so far; the write gets a transaction of its own
            for sql, many in statements:
                if many:
                    conn.exec_driver_sql(driver_sql(sql, self.pg), [tuple(p) for p in many])
            conn.commit()
        except DBAPIError as exc:
            conn.rollback()
            log.debug("not kept: %s", exc.orig)
            return False
        return True
