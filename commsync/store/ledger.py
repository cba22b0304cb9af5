"""The delivery ledger's hot path: claim or read rows, mark each `sending`, record what happened.

One row per message, so this talks to the DB-API connection directly with a few prepared
statements per transaction: SQLAlchemy's per-statement overhead would cost more than the SMTP
exchange. Callers group several connections' records into one transaction (`transitions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from commsync.model import DeliveryStatus, LedgerRow, Record
from commsync.store.rawconn import Shared, transaction
from commsync.store.sendlog import FileSendLog, open_sendlog

_NAMES = ("first_name", "last_name", "display_name", "username")


_FETCH = """
SELECT d.id, d.email, d.email_key, d.customer_id, d.attempts,
       c.first_name, c.last_name, c.display_name, c.username
FROM deliveries d LEFT JOIN customers c ON c.id = d.customer_id
WHERE d.send_id = ? AND d.status = 'queued' AND d.id > ?
ORDER BY d.id LIMIT ?
"""
# Suppressions are checked here too, in the same statement: the last moment before sending.
# Broadcasts respect every suppression; transactional system emails only those of scope 'all'.
_START = (
    "UPDATE deliveries SET status = 'sending', updated_at = ? WHERE id = ? AND status = 'queued'"
    " AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email_key = deliveries.email_key)"
)
_START_CLAIMED = (
    "UPDATE deliveries SET status = 'sending', updated_at = ? WHERE id = ? AND status = 'queued' AND claimed_by = ?"
    " AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email_key = deliveries.email_key AND s.scope = 'all')"
)
# a broadcast's row claimed by a worker: every suppression counts, as for apply's sends
_START_CLAIMED_BROADCAST = (
    "UPDATE deliveries SET status = 'sending', updated_at = ? WHERE id = ? AND status = 'queued' AND claimed_by = ?"
    " AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email_key = deliveries.email_key)"
)
_DONE = {
    "sent": "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, message_id = ?, last_error = NULL, sent_at = ?, updated_at = ? WHERE id = ?",
    "queued": "UPDATE deliveries SET status = 'queued', attempts = attempts + 1, last_error = ?, due_at = ?, claimed_by = NULL, updated_at = ? WHERE id = ?",
    "failed": "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ?",
    "uncertain": "UPDATE deliveries SET status = 'uncertain', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ?",
    # only a row still queued: one cancelled meanwhile stays cancelled
    "suppressed": "UPDATE deliveries SET status = 'suppressed', last_error = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
    "cancelled": "UPDATE deliveries SET status = 'cancelled', last_error = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
}
# One update per system email and commit, in slug order: workers sharing a store then lock these
# rows in the same order and cannot deadlock.
_STATS = (
    "UPDATE system_emails SET sent_count = sent_count + ?, failed_count = failed_count + ?,"
    " cancelled_count = cancelled_count + ?,"
    " last_sent_at = CASE WHEN ? > 0 THEN ? ELSE last_sent_at END WHERE slug = ?"
)
# What the workers send: system emails, and the broadcast sends that are theirs (scheduled
# ones they started, every one under `mail.delivery: workers`).
_WORKER_SENDS = (
    "SELECT id FROM sends WHERE kind = 'system_email' OR (by_workers AND status = 'sending')"
)
_DUE = f"""
SELECT d.id FROM deliveries d
WHERE d.status = 'queued' AND d.due_at <= ? AND (d.claimed_by IS NULL OR d.claimed_at < ?)
  AND d.send_id IN ({_WORKER_SENDS})
ORDER BY d.due_at LIMIT ?
"""
_CLAIM = (
    "UPDATE deliveries SET claimed_by = ?, claimed_at = ? WHERE id IN ({due})"
    " RETURNING id, email, email_key, customer_id, attempts, message, message_id, send_id"
)


class SqlLedger:
    """The `Ledger` role: the per-message hot path, for one event loop (or thread) at a time."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # send id -> (system email slug, its version) or (None, broadcast id)
        self._sends: dict[int, tuple[str | None, str | None]] = {}
        self._broadcast_rows: set[int] = set()  # claimed rows of broadcasts, not yet started
        self.read_upto = 0  # the highest row id `next_batch` has read

    def _done(self, r: Record, now: Any) -> list[tuple[str, Sequence[Any]]]:
        db = self.shared
        if r.status == DeliveryStatus.SENT:
            out: list[tuple[str, Sequence[Any]]] = [
                (_DONE["sent"], (r.message_id, now, now, r.delivery_id))
            ]
        elif r.status == DeliveryStatus.QUEUED:
            retry = db.stamp(r.retry_at) if r.retry_at else now
            out = [(_DONE["queued"], (r.detail[:2000], retry, now, r.delivery_id))]
        else:
            out = [(_DONE[r.status], (r.detail[:2000], now, r.delivery_id))]
        return out

    @staticmethod
    def _stats(records: Sequence[Record], now: Any) -> list[tuple[str, Sequence[Any]]]:
        counted = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED)
        counts: dict[str, list[int]] = {}
        for r in records:
            if r.slug and r.status in counted:
                counts.setdefault(r.slug, [0, 0, 0])[counted.index(r.status)] += 1
        return [
            (_STATS, (sent, failed, cancelled, sent, now, slug))
            for slug, (sent, failed, cancelled) in sorted(counts.items())
        ]

    def transitions(
        self, batch: Sequence[tuple[Sequence[Record], int | None]], claimer: str | None = None
    ) -> list[bool]:
        """Record finished rows and mark next rows `sending`, all in one commit.

        For each (done, start): False when `start` could not be marked — its address was
        suppressed meanwhile — else True. With `claimer`, rows are claimed system-email rows.
        """
        db = self.shared
        now = db.now()
        results = []
        with transaction(db) as cursor:
            self.record(cursor, [r for done, _ in batch for r in done], now)
            for _, start in batch:
                if start is not None:
                    if claimer is None:
                        cursor.execute(db.sql(_START), (now, start))
                    elif start in self._broadcast_rows:
                        self._broadcast_rows.discard(start)
                        cursor.execute(db.sql(_START_CLAIMED_BROADCAST), (now, start, claimer))
                    else:
                        cursor.execute(db.sql(_START_CLAIMED), (now, start, claimer))
                results.append(start is None or cursor.rowcount == 1)
        return results

    def record(self, cursor: Any, records: Sequence[Record], now: Any) -> None:
        """Write finished rows' outcomes (and system emails' counts) in the open transaction."""
        db = self.shared
        finished: dict[str, list[Sequence[Any]]] = {}  # one statement per outcome
        for record in records:
            for sql, params in self._done(record, now):
                finished.setdefault(sql, []).append(params)
        for sql, rows in finished.items():
            if len(rows) == 1:
                cursor.execute(db.sql(sql), rows[0])
            else:
                cursor.executemany(db.sql(sql), rows)
        for sql, params in self._stats(records, now):
            cursor.execute(db.sql(sql), params)

    def transition(
        self, done: Sequence[Record], start: int | None, claimer: str | None = None
    ) -> bool:
        return self.transitions([(done, start)], claimer)[0]

    def _run(self, statements: Iterable[tuple[str, Sequence[Any]]], fetch: bool = False) -> Any:
        """Run statements in one transaction of their own; returns the last fetch, or the row count."""
        return (self._run_all(statements, fetch) or [None])[-1]

    def _run_all(
        self, statements: Iterable[tuple[str, Sequence[Any]]], fetch: bool = False
    ) -> list[Any]:
        """Run statements in one transaction of their own; each one's fetch, or row count."""
        db = self.shared
        results: list[Any] = []
        with transaction(db) as cursor:
            for sql, params in statements:
                cursor.execute(db.sql(sql), tuple(params))
                results.append(cursor.fetchall() if fetch else cursor.rowcount)
        return results

    def next_batch(self, send_id: int, after_id: int, limit: int) -> list[LedgerRow]:
        rows = self._run([(_FETCH, (send_id, after_id, limit))], fetch=True) or []
        if rows:
            self.read_upto = max(self.read_upto, int(rows[-1][0]))
        return [LedgerRow(*row) for row in rows]

    def sendlog(self) -> FileSendLog | None:
        """An apply's send log (store/sendlog.py): for a store in a SQLite file; else None."""
        return open_sendlog(self)

    def claim_due(
        self, claimer: str, now: datetime, limit: int, stale_before: datetime
    ) -> list[LedgerRow]:
        """Claim up to `limit` due system-email rows; concurrent workers never claim the same row."""
        db = self.shared
        due = _DUE + (" FOR UPDATE OF d SKIP LOCKED" if db.pg else "")
        sql = _CLAIM.format(due=due.strip())
        params = (claimer, db.stamp(now), db.stamp(now), db.stamp(stale_before), limit)
        rows = self._run([(sql, params)], fetch=True) or []
        missing = {int(r[7]) for r in rows} - set(self._sends)
        if missing:
            marks = ", ".join("?" for _ in missing)
            sql = f"SELECT id, system_email_slug, email_hash, broadcast_id FROM sends WHERE id IN ({marks})"
            found = self._run([(sql, tuple(missing))], fetch=True)
            if len(self._sends) > 100_000:  # one entry per event and email: keep it bounded
                self._sends.clear()
            self._sends.update(
                {
                    int(i): (slug, h) if bid is None else (None, bid)
                    for i, slug, h, bid in found or []
                }
            )
        out = []
        for r in rows:
            slug, extra = self._sends.get(int(r[7]), (None, None))
            broadcast = extra if slug is None else None
            out.append(
                LedgerRow(
                    int(r[0]),
                    r[1],
                    r[2],
                    r[3],
                    int(r[4]),
                    message=bytes(r[5]) if r[5] is not None else None,
                    message_id=r[6],
                    slug=slug,
                    send_id=int(r[7]),
                    email_hash=None if broadcast else extra,
                    broadcast=broadcast,
                )
            )
        out = self._with_names(out)
        self._broadcast_rows.update(r.id for r in out if r.broadcast is not None)
        return sorted(out, key=lambda r: r.id)

    def _with_names(self, rows: list[LedgerRow]) -> list[LedgerRow]:
        """A broadcast is personalised when it is built: its claimed rows get the customer's
        names (a system email's message was rendered when its event arrived)."""
        ids = {r.customer_id for r in rows if r.broadcast is not None and r.customer_id}
        if not ids:
            return rows
        marks = ", ".join("?" for _ in ids)
        sql = f"SELECT id, first_name, last_name, display_name, username FROM customers WHERE id IN ({marks})"
        names = {str(i): rest for i, *rest in self._run([(sql, tuple(ids))], fetch=True) or []}
        return [
            replace(r, **dict(zip(_NAMES, names[r.customer_id], strict=True)))
            if r.broadcast is not None and r.customer_id in names
            else r
            for r in rows
        ]

    def heartbeat(self, claimer: str, host: str, pid: int) -> None:
        """This worker is alive (its row in `workers`, created on the first beat)."""
        now = self.shared.now()
        sql = (
            "INSERT INTO workers (id, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, stopped_at = NULL"
        )
        self._run([(sql, (claimer, host, pid, now, now))])

    def stopped(self, claimer: str) -> None:
        """This worker stopped cleanly (it gave back what it had claimed). Workers stopped a
        week ago are forgotten: `deliver --once` from cron starts a new one every few minutes."""
        now = datetime.now(UTC)
        done = "UPDATE workers SET stopped_at = ? WHERE id = ?"
        forget = "DELETE FROM workers WHERE stopped_at < ?"
        stamp = self.shared.stamp
        self._run([(done, (stamp(now), claimer)), (forget, (stamp(now - timedelta(days=7)),))])

    def recover_dead(self, silent_since: datetime) -> tuple[int, int]:
        """Workers silent since `silent_since` are gone: the rows they were sending become
        uncertain (nobody knows whether the server took them), the rows they had claimed go back
        to the queue for the others. (uncertain, released)"""
        find = "SELECT id FROM workers WHERE stopped_at IS NULL AND seen_at < ?"
        dead = [
            str(r[0])
            for r in self._run([(find, (self.shared.stamp(silent_since),))], fetch=True) or []
        ]
        if not dead:  # the usual case: one small query
            return 0, 0
        marks = ", ".join("?" for _ in dead)
        uncertain = (
            "UPDATE deliveries SET status = 'uncertain',"
            " last_error = 'the worker sending it went silent before the server replied'"
            f" WHERE status = 'sending' AND claimed_by IN ({marks})"
        )
        released = (
            "UPDATE deliveries SET claimed_by = NULL, claimed_at = NULL"
            f" WHERE status = 'queued' AND claimed_by IN ({marks})"
        )
        gone = f"UPDATE workers SET stopped_at = ? WHERE id IN ({marks}) AND seen_at < ?"
        db = self.shared
        unsure, back, _ = self._run_all(
            [
                (uncertain, dead),
                (released, dead),
                (gone, (db.now(), *dead, db.stamp(silent_since))),
            ]
        )
        return int(unsure), int(back)

    def row_state(self, delivery_id: int) -> tuple[str, str | None, bool]:
        """Why a row could not be marked `sending`: its status, claimer, suppression now."""
        sql = (
            "SELECT d.status, d.claimed_by, EXISTS (SELECT 1 FROM suppressions s"
            " WHERE s.email_key = d.email_key) FROM deliveries d WHERE d.id = ?"
        )
        found = self._run([(sql, (delivery_id,))], fetch=True) or []
        if not found:
            return "gone", None, False
        status, claimed_by, suppressed = found[0]
        return str(status), claimed_by, bool(suppressed)

    def release(self, claimer: str) -> int:
        """Give back claimed rows not yet sent (a worker stopping)."""
        sql = "UPDATE deliveries SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ? AND status = 'queued'"
        return int(self._run([(sql, (claimer,))]) or 0)

    def abandon(self, claimer: str) -> tuple[int, int]:
        """Give back this claimer's queued rows; its `sending` rows become uncertain."""
        uncertain = (
            "UPDATE deliveries SET status = 'uncertain', claimed_by = NULL,"
            " last_error = 'the store was unreachable when its outcome was to be recorded'"
            " WHERE claimed_by = ? AND status = 'sending'"
        )
        unsure = int(self._run([(uncertain, (claimer,))]) or 0)
        return self.release(claimer), unsure

    def recover_stale(self, before: datetime) -> int:
        """System-email rows a vanished worker left `sending` since `before`: uncertain.

        A live worker never keeps a row `sending` that long: its SMTP timeouts are far shorter.
        """
        sql = (
            "UPDATE deliveries SET status = 'uncertain', last_error = 'the worker sending it stopped before the server replied'"
            f" WHERE status = 'sending' AND updated_at < ? AND send_id IN ({_WORKER_SENDS})"
        )
        return int(self._run([(sql, (self.shared.stamp(before),))]) or 0)

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
        now = self.shared.now()
        sql = "INSERT INTO unsubscribe_tokens (token, email_key, created_at) VALUES (?, ?, ?) ON CONFLICT (token) DO NOTHING"
        # one statement for the batch (a statement per token was 7 µs a message)
        with transaction(self.shared) as cursor:
            cursor.executemany(self.shared.sql(sql), [(token, key, now) for token, key in tokens])

    def close(self) -> None:
        with self.shared.lock:
            if not self.shared.closed:
                self.shared.closed = True
                self.shared.raw.close()


def open_ledger(engine: Engine) -> SqlLedger:
    """A ledger on its own DB-API connection."""
    return SqlLedger(Shared(engine))
