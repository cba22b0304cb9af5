"""The delivery ledger: freezing an audience into it, and the hot path that records each send.

Freezing is one `INSERT … SELECT` in the transaction that records the send, so the audience is
exactly the customers targeted at that moment; suppressed addresses go in as `suppressed`.

The hot path (one row per message) talks to the DB-API connection directly with two or three
prepared statements per transaction: SQLAlchemy's per-statement overhead would cost more than
the SMTP exchange. On SQLite one connection, behind a lock, serves every sender thread (SQLite
has one writer at a time anyway); on PostgreSQL each sender has its own connection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, case, false, func, literal, select, true, union
from sqlalchemy.dialects import postgresql, sqlite

from commsync.model import Targets
from commsync.store import tables as t
from commsync.store.tables import UTCDateTime

TERMINAL = ("sent", "failed", "suppressed", "uncertain")


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One recipient of one send, with what personalisation needs."""

    id: int
    email: str
    email_key: str
    customer_id: str | None
    attempts: int
    first_name: str | None
    last_name: str | None
    display_name: str | None
    username: str | None


@dataclass(frozen=True, slots=True)
class Record:
    """What happened to one row: the status it ends in (`queued` again for a retry)."""

    delivery_id: int
    status: str
    detail: str = ""
    message_id: str | None = None


def _audience(targets: Targets, statuses: Sequence[str]) -> Any:
    parts: list[Select[Any]] = []
    if targets.all:
        parts.append(select(t.customers.c.id.label("customer_id")))
    if targets.products:
        parts.append(
            select(t.memberships.c.customer_id).where(
                t.memberships.c.product_slug.in_(targets.products),
                t.memberships.c.status.in_(statuses),
            )
        )
    if targets.customers:
        parts.append(
            select(t.customers.c.id.label("customer_id")).where(
                t.customers.c.id.in_(targets.customers)
            )
        )
    if not parts:
        return select(t.customers.c.id.label("customer_id")).where(false()).subquery()
    return (union(*parts) if len(parts) > 1 else parts[0].distinct()).subquery()


def freeze_audience(
    conn: Connection, send_id: int, targets: Targets, statuses: Sequence[str], now: datetime
) -> int:
    """Write one ledger row per targeted address (each address once); returns the row count."""
    audience = _audience(targets, statuses)
    c, s = t.customers, t.suppressions
    status = case((s.c.email_key.is_not(None), "suppressed"), else_="queued")
    rows = (
        select(
            literal(send_id),
            c.c.id,
            c.c.email,
            c.c.email_key,
            status,
            literal(0),
            literal(now, UTCDateTime),
            literal(now, UTCDateTime),
        )
        .select_from(
            c.join(audience, audience.c.customer_id == c.c.id).outerjoin(
                s, s.c.email_key == c.c.email_key
            )
        )
        .where(true())  # SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT
    )
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    columns = [
        "send_id",
        "customer_id",
        "email",
        "email_key",
        "status",
        "attempts",
        "due_at",
        "updated_at",
    ]
    insert = dialect.insert(t.deliveries).from_select(columns, rows).on_conflict_do_nothing()
    conn.execute(insert)
    return int(
        conn.execute(
            select(func.count()).select_from(t.deliveries).where(t.deliveries.c.send_id == send_id)
        ).scalar_one()
    )


class _Shared:
    """A raw DB-API connection and the lock that serialises its users."""

    def __init__(self, engine: Engine) -> None:
        self.raw = engine.raw_connection()
        self.lock = threading.Lock()
        self.pg = engine.dialect.name == "postgresql"
        self.closed = False
        self._second, self._text = -1, ""

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.pg else text

    def now(self) -> Any:
        """The current time as the column stores it (formatted once per second on SQLite)."""
        when = datetime.now(UTC)
        if self.pg:
            return when
        second = int(when.timestamp())
        if second != self._second:
            self._second, self._text = second, when.strftime("%Y-%m-%d %H:%M:%S.000000")
        return self._text


_FETCH = """
SELECT d.id, d.email, d.email_key, d.customer_id, d.attempts,
       c.first_name, c.last_name, c.display_name, c.username
FROM deliveries d LEFT JOIN customers c ON c.id = d.customer_id
WHERE d.send_id = ? AND d.status = 'queued' AND d.id > ?
ORDER BY d.id LIMIT ?
"""
# Suppressions are checked here too, in the same statement: the last moment before sending.
_START = (
    "UPDATE deliveries SET status = 'sending', updated_at = ? WHERE id = ? AND status = 'queued'"
    " AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email_key = deliveries.email_key)"
)
_DONE = {
    "sent": "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, message_id = ?, last_error = NULL, sent_at = ?, updated_at = ? WHERE id = ?",
    "queued": "UPDATE deliveries SET status = 'queued', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ?",
    "failed": "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ?",
    "uncertain": "UPDATE deliveries SET status = 'uncertain', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ?",
    "suppressed": "UPDATE deliveries SET status = 'suppressed', last_error = ?, updated_at = ? WHERE id = ?",
}


def _end(db: _Shared, cursor: Any, verb: str) -> None:
    if db.pg:
        db.raw.commit() if verb == "COMMIT" else db.raw.rollback()
    else:
        cursor.execute(verb)


class SqlLedger:
    """The per-message hot path, for one event loop (or one thread) at a time.

    `transitions` commits several callers' records in one transaction: the delivery engine
    gathers what its connections have ready in one turn of the event loop (group commit).
    """

    def __init__(self, shared: _Shared) -> None:
        self.shared = shared

    def transitions(self, batch: Sequence[tuple[Sequence[Record], int | None]]) -> list[bool]:
        """Record finished rows and mark next rows `sending`, all in one commit.

        For each (done, start): False when `start` could not be marked — its address was
        suppressed meanwhile — else True.
        """
        db = self.shared
        now = db.now()
        results = []
        with db.lock:
            cursor = db.raw.cursor()
            try:
                if not db.pg:
                    cursor.execute("BEGIN")
                for done, start in batch:
                    for r in done:
                        if r.status == "sent":
                            cursor.execute(
                                db.sql(_DONE["sent"]), (r.message_id, now, now, r.delivery_id)
                            )
                        else:
                            cursor.execute(
                                db.sql(_DONE[r.status]), (r.detail[:2000], now, r.delivery_id)
                            )
                    if start is not None:
                        cursor.execute(db.sql(_START), (now, start))
                    results.append(start is None or cursor.rowcount == 1)
                _end(db, cursor, "COMMIT")
            except BaseException:
                _end(db, cursor, "ROLLBACK")
                raise
            finally:
                cursor.close()
        return results

    def transition(self, done: Sequence[Record], start: int | None) -> bool:
        return self.transitions([(done, start)])[0]

    def _run(self, statements: Iterable[tuple[str, Sequence[Any]]], fetch: bool = False) -> Any:
        """Run statements in one transaction of their own; returns the last fetch."""
        db = self.shared
        with db.lock:
            cursor = db.raw.cursor()
            try:
                if not db.pg:
                    cursor.execute("BEGIN")
                result: Any = None
                for sql, params in statements:
                    cursor.execute(db.sql(sql), tuple(params))
                    if fetch:
                        result = cursor.fetchall()
                _end(db, cursor, "COMMIT")
                return result
            except BaseException:
                _end(db, cursor, "ROLLBACK")
                raise
            finally:
                cursor.close()

    def next_batch(self, send_id: int, after_id: int, limit: int) -> list[LedgerRow]:
        rows = self._run([(_FETCH, (send_id, after_id, limit))], fetch=True) or []
        return [LedgerRow(*row) for row in rows]

    def suppressed(self, email_keys: Sequence[str]) -> set[str]:
        if not email_keys:
            return set()
        marks = ", ".join("?" for _ in email_keys)
        sql = f"SELECT email_key FROM suppressions WHERE email_key IN ({marks})"
        return {str(r[0]) for r in self._run([(sql, tuple(email_keys))], fetch=True) or []}

    def save_tokens(self, tokens: Sequence[tuple[str, str]]) -> None:
        """Remember unsubscribe tokens (token, email_key) so the unsubscribe page can find them."""
        if not tokens:
            return
        conflict = "ON CONFLICT (token) DO NOTHING"
        now = self.shared.now()
        sql = f"INSERT INTO unsubscribe_tokens (token, email_key, created_at) VALUES (?, ?, ?) {conflict}"
        self._run([(sql, (token, key, now)) for token, key in tokens])

    def close(self) -> None:
        with self.shared.lock:
            if not self.shared.closed:
                self.shared.closed = True
                self.shared.raw.close()


def open_ledger(engine: Engine) -> SqlLedger:
    """A ledger on its own DB-API connection."""
    return SqlLedger(_Shared(engine))
