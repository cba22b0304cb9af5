"""Events in SQL: record one with the system emails it queues, all or nothing.

Implements the `Events` role of `SqlStore`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from commsync.model import (
    BroadcastSpec,
    DeliveryStatus,
    EventResult,
    JsonObject,
    JsonValue,
    QueuedEmail,
    QueuedItem,
    QueuedSend,
    QueueState,
    Waiting,
)
from commsync.store import tables as t


class EventsMixin:
    engine: Engine
    reader: Engine

    def event_for_key(self, key: str) -> EventResult | None:
        with self.reader.connect() as conn:
            row = conn.execute(
                select(t.events.c.id, t.events.c.result).where(t.events.c.idempotency_key == key)
            ).first()
        if row is None:
            return None
        return EventResult.from_json({"event_id": int(row[0]), **(row[1] or {})}, duplicate=True)

    def suppressed_for_all(self, email_keys: Iterable[str]) -> set[str]:
        """Addresses that must get no email at all (hard bounces), not only no marketing."""
        keys = sorted(set(email_keys))
        if not keys:
            return set()
        query = select(t.suppressions.c.email_key).where(
            t.suppressions.c.email_key.in_(keys), t.suppressions.c.scope == "all"
        )
        with self.reader.connect() as conn:
            return {str(k) for k in conn.execute(query).scalars()}

    def record_event(
        self,
        event_type: str,
        payload: JsonObject,
        key: str | None,
        emails: Sequence[QueuedEmail],
        result: EventResult,
        now: datetime,
    ) -> EventResult:
        """The event and everything it queues, in one transaction; a repeated key changes nothing."""
        try:
            with self.engine.begin() as conn:
                event_id = int(
                    conn.execute(
                        insert(t.events).values(
                            type=event_type, payload=payload, idempotency_key=key, received_at=now
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
                for email in emails:
                    _queue(conn, event_id, email, now)
                recorded = replace(result, event_id=event_id, duplicate=False)
                stored = recorded.to_json()
                del stored["duplicate"]
                conn.execute(
                    update(t.events).where(t.events.c.id == event_id).values(result=stored)
                )
                return recorded
        except IntegrityError:
            if key is None:
                raise
            existing = self.event_for_key(key)  # another request with the same key won the race
            if existing is None:
                raise
            return existing

    def queue_state(self, now: datetime) -> QueueState:
        d, s = t.deliveries, t.sends
        due = case((d.c.due_at <= now, 1), else_=0)
        later = case((d.c.due_at > now, d.c.due_at), else_=None)
        query = (
            select(s.c.system_email_slug, func.count(), func.sum(due), func.min(later))
            .select_from(d.join(s, s.c.id == d.c.send_id))
            .where(d.c.status == DeliveryStatus.QUEUED, s.c.kind == "system_email")
            .group_by(s.c.system_email_slug)
        )
        with self.reader.connect() as conn:
            rows = conn.execute(query).all()
            broadcasts = conn.execute(
                select(t.broadcasts.c.status, t.broadcasts.c.spec).where(
                    t.broadcasts.c.kind == "email",
                    t.broadcasts.c.status.in_(("scheduled", "sending")),
                )
            ).all()
            left = 0
            if any(status == "sending" for status, _ in broadcasts):
                open_sends = select(s.c.id).where(s.c.kind == "broadcast", s.c.status == "sending")
                left = conn.execute(
                    select(func.count()).where(
                        d.c.send_id.in_(open_sends), d.c.status == DeliveryStatus.QUEUED
                    )
                ).scalar_one()
        by_email = {str(slug): Waiting(int(count), first) for slug, count, _, first in rows}
        due_now = sum(int(n or 0) for _, _, n, _ in rows)
        firsts = [w.next_due for w in by_email.values() if w.next_due is not None]
        sends_at = [
            at
            for status, data in broadcasts
            if status == "scheduled" and (at := BroadcastSpec.from_json(data).send_at) is not None
        ]
        return QueueState(
            due=due_now,
            waiting=sum(w.count for w in by_email.values()) - due_now,
            next_due=min(firsts, default=None),
            by_email=by_email,
            scheduled=sum(1 for status, _ in broadcasts if status == "scheduled"),
            next_send_at=min(sends_at, default=None),
            sending=sum(1 for status, _ in broadcasts if status == "sending"),
            recipients_left=int(left),
        )

    def queued_send(self, send_id: int) -> QueuedSend | None:
        s, e = t.sends, t.events
        query = (
            select(s.c.system_email_slug, s.c.email_hash, e.c.type, e.c.payload)
            .select_from(s.join(e, e.c.id == s.c.event_id))
            .where(s.c.id == send_id)
        )
        with self.reader.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        payload = row.payload if isinstance(row.payload, dict) else {}
        return QueuedSend(str(row.system_email_slug), row.email_hash, str(row.type), payload)

    def queued_messages(self, limit: int) -> list[QueuedItem]:
        d, s, e = t.deliveries, t.sends, t.events
        query = (
            select(
                d.c.id,
                s.c.system_email_slug,
                d.c.email,
                d.c.due_at,
                d.c.attempts,
                d.c.last_error,
                e.c.type,
                e.c.idempotency_key,
                d.c.claimed_by,
            )
            .select_from(d.join(s, s.c.id == d.c.send_id).outerjoin(e, e.c.id == s.c.event_id))
            .where(d.c.status == DeliveryStatus.QUEUED, s.c.kind == "system_email")
            .order_by(d.c.due_at, d.c.id)
            .limit(limit)
        )
        with self.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [
            QueuedItem(
                int(r.id),
                str(r.system_email_slug),
                str(r.email),
                r.due_at,
                int(r.attempts),
                r.last_error,
                r.type,
                r.idempotency_key,
                r.claimed_by is not None,
            )
            for r in rows
        ]

    def cancel_queued(
        self,
        now: datetime,
        *,
        ids: Sequence[int] = (),
        email: str | None = None,
        event_key: str | None = None,
    ) -> int:
        d, s = t.deliveries, t.sends
        sends = select(s.c.id).where(s.c.kind == "system_email")
        if email is not None:
            sends = sends.where(s.c.system_email_slug == email)
        if event_key is not None:
            sends = sends.where(
                s.c.event_id.in_(
                    select(t.events.c.id).where(t.events.c.idempotency_key == event_key)
                )
            )
        statement = (
            update(d)
            .where(d.c.status == DeliveryStatus.QUEUED, d.c.send_id.in_(sends))
            .values(
                status=DeliveryStatus.CANCELLED,
                last_error="cancelled with commsync queue cancel",
                claimed_by=None,
                updated_at=now,
            )
        )
        if ids:
            statement = statement.where(d.c.id.in_(list(ids)))
        with self.engine.begin() as conn:
            cancelled = conn.execute(statement.returning(d.c.send_id)).scalars().all()
            per_send = Counter(int(i) for i in cancelled)
            slugs = dict(
                conn.execute(
                    select(s.c.id, s.c.system_email_slug).where(s.c.id.in_(list(per_send)))
                ).all()
            )
            per_email = Counter[str]()
            for send_id, n in per_send.items():
                per_email[str(slugs[send_id])] += n
            for slug, n in sorted(per_email.items()):  # the stats, in the same transaction
                conn.execute(
                    update(t.system_emails)
                    .where(t.system_emails.c.slug == slug)
                    .values(cancelled_count=t.system_emails.c.cancelled_count + n)
                )
            return len(cancelled)

    def events_received(self) -> dict[str, int]:
        query = select(t.events.c.type, func.count()).group_by(t.events.c.type)
        with self.reader.connect() as conn:
            return {str(k): int(n) for k, n in conn.execute(query)}


def _queue(conn: Any, event_id: int, email: QueuedEmail, now: datetime) -> None:
    send_id = int(
        conn.execute(
            insert(t.sends).values(
                kind="system_email",
                system_email_slug=email.slug,
                email_hash=email.email_hash,
                event_id=event_id,
                recipients=len(email.messages),
                status="sending",
                created_at=now,
            )
        ).inserted_primary_key[0]
    )
    rows: list[dict[str, JsonValue | bytes | datetime]] = [
        {
            "send_id": send_id,
            "customer_id": m.customer_id,
            "email": m.email,
            "email_key": m.email.lower(),
            "status": str(m.status),
            "attempts": 0,
            "last_error": m.error,
            "message": m.message,
            "message_id": m.message_id,
            "due_at": email.due_at,
            "updated_at": now,
        }
        for m in email.messages
    ]
    if rows:
        conn.execute(insert(t.deliveries), rows)
    failed = sum(1 for m in email.messages if m.status == DeliveryStatus.FAILED)
    if failed:
        conn.execute(
            update(t.system_emails)
            .where(t.system_emails.c.slug == email.slug)
            .values(failed_count=t.system_emails.c.failed_count + failed)
        )
