"""What customers do, in SQL: the notices feed (its hot path), dismissals, unsubscribes; and
the suppression list operators keep.

Implements the `Dashboards` and `Suppressions` roles of `SqlStore`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from commsync.model import (
    BroadcastKind,
    BroadcastSpec,
    BroadcastStatus,
    CustomerRecord,
    Suppression,
    SuppressionRecord,
    SuppressionScope,
)
from commsync.store import tables as t
from commsync.store.plainsql import driver_sql
from commsync.store.sqlutil import FEED_CHANGES_KEPT, feed_changed, insert_for

_CUSTOMER_SQL = (
    "SELECT id, email, username, first_name, last_name, display_name, locale"
    " FROM customers WHERE id = ? AND deleted_at IS NULL"  # deleted: `import --sync`
)
# Newest first (the feed then puts them in order of severity, keeping this order within one).
_NOTICES_SQL = """
SELECT b.id, b.spec_hash, b.created_at FROM broadcasts b
WHERE b.kind = 'notice' AND b.status = 'active'
  AND b.id IN (
    SELECT broadcast_id FROM broadcast_targets WHERE target_type = 'all'
    UNION
    SELECT broadcast_id FROM broadcast_targets WHERE target_type = 'customer' AND value = ?
    UNION
    SELECT bt.broadcast_id FROM broadcast_targets bt
    JOIN memberships m ON m.product_slug = bt.value
    WHERE bt.target_type = 'product' AND m.customer_id = ? AND m.status IN ({statuses})
  )
  AND NOT EXISTS (
    SELECT 1 FROM dismissals d WHERE d.broadcast_id = b.id AND d.customer_id = ?
  )
ORDER BY b.created_at DESC, b.id
"""


_HELD_SQL = "SELECT product_slug FROM memberships WHERE customer_id = ? AND status IN ({marks})"
_DISMISSED_SQL = "SELECT broadcast_id FROM dismissals WHERE customer_id = ?"
_FEED_CUSTOMER_PG = (
    "SELECT c.id, c.email, c.username, c.first_name, c.last_name, c.display_name, c.locale,"
    " ARRAY(SELECT m.product_slug FROM memberships m"
    "  WHERE m.customer_id = c.id AND m.status = ANY(%s)),"
    " ARRAY(SELECT d.broadcast_id FROM dismissals d WHERE d.customer_id = c.id)"
    " FROM customers c WHERE c.id = %s AND c.deleted_at IS NULL"
)


@functools.cache
def _notices_sql(statuses: int, pg: bool) -> str:
    """`_NOTICES_SQL` for that many statuses, with the driver's parameters in text order."""
    marks = ", ".join("?" * statuses) if statuses else "NULL"
    return driver_sql(_NOTICES_SQL.format(statuses=marks), pg)


_GENERATION_SQL = "SELECT value FROM commsync_meta WHERE key = 'feed_generation'"
_CHANGES_SQL = "SELECT DISTINCT customer_id FROM feed_changes WHERE seq > ? AND seq <= ?"
# Further behind than this, a reader cannot know whose feeds changed (writers prune older rows).
_BEHIND = FEED_CHANGES_KEPT // 2


class _FeedWatch:
    """One connection kept for `feed_changes`, so the question costs no pool checkout. On a
    SQLite file `PRAGMA data_version` changes on it exactly when another connection committed,
    so "nothing changed" costs one pragma; on PostgreSQL it is one single-row read (in
    autocommit: no transaction is left open between questions)."""

    def __init__(self, engine: Engine, pg: bool) -> None:
        self.lock = threading.Lock()
        self.pg = pg
        self.conn = engine.raw_connection()
        driver: Any = self.conn.driver_connection
        if pg:
            driver.autocommit = True
        self.cursor: Any = driver.cursor()
        self.data_version: int | None = None
        self.generation: int | None = None

    def changes(self, since: int | None) -> tuple[int, frozenset[str] | None]:
        with self.lock:
            cursor = self.cursor
            if not self.pg:
                version = cursor.execute("PRAGMA data_version").fetchone()[0]
                if version == self.data_version and since is not None and since == self.generation:
                    return since, frozenset()
                self.data_version = None  # set again once the generation is read
            cursor.execute(_GENERATION_SQL)
            generation = int(cursor.fetchone()[0])
            if not self.pg:
                self.data_version = version
            self.generation = generation
            return generation, _changed(cursor, since, generation, self.pg)

    def close(self, broken: bool = False) -> None:
        with contextlib.suppress(Exception):  # a broken connection may fail to close
            self.cursor.close()
        if broken:
            self.conn.invalidate()  # the pool makes a new one
        else:
            self.conn.close()  # back to its pool


def _changed(cursor: Any, since: int | None, generation: int, pg: bool) -> frozenset[str] | None:
    """Whose feeds changed after `since` up to `generation`; None: everyone's, or unknown."""
    if since == generation:
        return frozenset()
    if since is None or generation < since or generation - since > _BEHIND:
        return None  # never looked, a store put back from a backup, or too far behind
    cursor.execute(driver_sql(_CHANGES_SQL, pg), (since, generation))
    who = [row[0] for row in cursor.fetchall()]
    return None if None in who else frozenset(str(c) for c in who)


class DashboardsMixin:
    engine: Engine
    reader: Engine  # the engine, in autocommit mode on PostgreSQL: reads of one statement
    _feed_watch: _FeedWatch | None = None

    def feed_changes(self, since: int | None) -> tuple[int, frozenset[str] | None]:
        """The feed generation now, and whose notices feeds changed since generation `since`
        (None: everyone's — or `since` is None, or too long ago to tell). Every write that
        changes a feed records it (`sqlutil.feed_changed`); `serve`'s response cache asks this
        once per turn of its event loop, so "nothing changed" is cheap: on a SQLite file one
        pragma, on PostgreSQL one single-row read, each on a connection kept for it."""
        pg = self.engine.dialect.name == "postgresql"
        if not pg and self.engine.url.database in (None, "", ":memory:"):
            with self.reader.connect() as conn:  # one connection for everything: ask on it
                cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.execute(_GENERATION_SQL)
                    generation = int(cursor.fetchone()[0])
                    return generation, _changed(cursor, since, generation, pg)
                finally:
                    cursor.close()
        watch = self._feed_watch
        if watch is None:
            watch = self._feed_watch = _FeedWatch(self.reader, pg)
        try:
            return watch.changes(since)
        except Exception:
            self._feed_watch = None  # the next question opens another connection
            watch.close(broken=True)
            raise

    def close_feed_watch(self) -> None:
        if self._feed_watch is not None:
            self._feed_watch.close()
            self._feed_watch = None

    def feed_customer(
        self, customer_id: str, statuses: Sequence[str]
    ) -> tuple[CustomerRecord, frozenset[str], frozenset[str]] | None:
        """The customer (None: unknown or deleted), the products they hold in one of
        `statuses`, and the notices they dismissed: what their feed needs besides the active
        notices. On PostgreSQL one round trip; on SQLite three indexed reads."""
        pg = self.engine.dialect.name == "postgresql"
        with self.reader.connect() as conn:
            # the DB-API cursor: SQLAlchemy's result layer would double the cost of this read
            cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                if pg:
                    cursor.execute(_FEED_CUSTOMER_PG, (list(statuses), customer_id))
                    row = cursor.fetchone()
                    if row is None:
                        return None
                    return CustomerRecord(*row[:7]), frozenset(row[7]), frozenset(row[8])
                cursor.execute(_CUSTOMER_SQL, (customer_id,))
                row = cursor.fetchone()
                if row is None:
                    return None
                marks = ", ".join("?" * len(statuses)) or "NULL"
                cursor.execute(_HELD_SQL.format(marks=marks), (customer_id, *statuses))
                held = frozenset(p for (p,) in cursor.fetchall())
                cursor.execute(_DISMISSED_SQL, (customer_id,))
                dismissed = frozenset(b for (b,) in cursor.fetchall())
                return CustomerRecord(*row), held, dismissed
            finally:
                cursor.close()

    def notices_for(self, customer_id: str, statuses: Sequence[str]) -> list[tuple[str, str]]:
        """(id, spec hash) of active notices targeted at the customer and not dismissed by them,
        newest first."""
        notices_sql = _notices_sql(len(statuses), self.engine.dialect.name == "postgresql")
        params = (customer_id, customer_id, *statuses, customer_id)
        with self.reader.connect() as conn:
            return [(str(i), str(h)) for i, h, _ in conn.exec_driver_sql(notices_sql, params)]

    def active_notices(self) -> list[tuple[str, BroadcastSpec]]:
        b = t.broadcasts.c
        kinds = (b.kind == BroadcastKind.NOTICE, b.status == BroadcastStatus.ACTIVE)
        query = select(b.id, b.spec).where(*kinds).order_by(b.created_at.desc(), b.id)
        with self.reader.connect() as conn:
            return [(str(i), BroadcastSpec.from_json(spec)) for i, spec in conn.execute(query)]

    def dismiss(self, notice_id: str, customer_id: str, now: datetime) -> None:
        """Idempotent: dismissing twice is dismissing once."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(t.dismissals).values(
                        broadcast_id=notice_id, customer_id=customer_id, dismissed_at=now
                    )
                )
                feed_changed(conn, [customer_id])
        except IntegrityError:
            pass

    def address_for_token(self, token: str) -> str | None:
        query = select(t.unsubscribe_tokens.c.email_key).where(
            t.unsubscribe_tokens.c.token == token
        )
        with self.reader.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        return None if value is None else str(value)

    def suppress(
        self, email_key: str, scope: SuppressionScope, reason: str, source: str, now: datetime
    ) -> None:
        """Record a suppression; an existing one for the address is kept (it is at least as strong)."""
        values = {
            "email_key": email_key,
            "scope": str(scope),
            "reason": reason,
            "source": source,
            "created_at": now,
        }
        with self.engine.begin() as conn:
            stmt = insert_for(self.engine.dialect.name, t.suppressions).values(values)
            conn.execute(stmt.on_conflict_do_nothing())

    def suppressions(self, limit: int) -> tuple[int, list[Suppression]]:
        """How many addresses are suppressed, and the newest `limit` of them."""
        s = t.suppressions.c
        query = select(s.email_key, s.scope, s.reason, s.source, s.created_at)
        query = query.order_by(s.created_at.desc(), s.email_key).limit(limit)
        with self.reader.connect() as conn:
            total = conn.execute(select(func.count()).select_from(t.suppressions)).scalar_one()
            rows = conn.execute(query).all()
        return int(total), [
            Suppression(str(k), SuppressionScope(str(sc)), str(r), src, at)
            for k, sc, r, src, at in rows
        ]

    def add_suppressions(
        self, rows: Sequence[SuppressionRecord], source: str, now: datetime
    ) -> tuple[int, int]:
        """Record each address, all in one transaction: (added, made stronger). An address
        already suppressed keeps its reason and time; a scope of `all` over `marketing` wins."""
        s = t.suppressions
        wanted = {r.email_key: r for r in rows}
        added = strengthened = 0
        with self.engine.begin() as conn:
            known: dict[str, str] = {}
            keys = list(wanted)
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                found = conn.execute(
                    select(s.c.email_key, s.c.scope).where(s.c.email_key.in_(chunk))
                ).all()
                known.update((str(k), str(scope)) for k, scope in found)
            new = [
                {
                    "email_key": key,
                    "scope": str(r.effective_scope),
                    "reason": str(r.reason),
                    "source": source,
                    "created_at": now,
                }
                for key, r in wanted.items()
                if key not in known
            ]
            if new:
                conn.execute(insert(s), new)
                added = len(new)
            stronger = [
                key
                for key, r in wanted.items()
                if known.get(key) == SuppressionScope.MARKETING
                and r.effective_scope == SuppressionScope.ALL
            ]
            if stronger:
                conn.execute(
                    update(s).where(s.c.email_key.in_(stronger)).values(scope=SuppressionScope.ALL)
                )
                strengthened = len(stronger)
        return added, strengthened

    def remove_suppressions(self, email_keys: Sequence[str]) -> list[str]:
        """Remove these addresses' suppressions — all of them, or none: the addresses that are
        not suppressed are returned, and then nothing is removed."""
        s = t.suppressions
        keys = sorted(set(email_keys))
        with self.engine.begin() as conn:
            found = set(
                conn.execute(select(s.c.email_key).where(s.c.email_key.in_(keys))).scalars()
            )
            missing = [k for k in keys if k not in found]
            if not missing:
                conn.execute(delete(s).where(s.c.email_key.in_(keys)))
        return missing

    def dismissed(self, notice_id: str, customer_id: str) -> bool:
        d = t.dismissals.c
        query = select(d.broadcast_id).where(
            d.broadcast_id == notice_id, d.customer_id == customer_id
        )
        with self.reader.connect() as conn:
            return conn.execute(query).first() is not None
