"""Email broadcast sends in SQL: freezing the audience, crash recovery, requeueing, finishing.

Implements the `Sends` role of `SqlStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    case,
    false,
    func,
    insert,
    literal,
    select,
    union,
    update,
)

from commsync.model import (
    BroadcastStatus,
    DeliveryStatus,
    LiveBroadcast,
    Targets,
)
from commsync.store import tables as t
from commsync.store.ledger import open_ledger
from commsync.store.managed import write_broadcast
from commsync.store.roles import (
    FailedRecipient,
    FrozenSend,
    Ledger,
)
from commsync.store.sqlutil import insert_for
from commsync.store.tables import UTCDateTime

# Broadcast sends whose rows apply may requeue: not those stopped with `queue cancel --broadcast`.
_BROADCAST_SENDS = (
    select(t.sends.c.id)
    .join(t.broadcasts, t.broadcasts.c.id == t.sends.c.broadcast_id)
    .where(t.sends.c.kind == "broadcast", t.broadcasts.c.status != "cancelled")
    .scalar_subquery()
)
# Sends an apply is sending: only their rows can be `sending` by an apply that crashed (the
# workers' sends have their own recovery: a worker that went silent).
_OPEN_SENDS = (
    select(t.sends.c.id)
    .where(
        t.sends.c.kind == "broadcast", t.sends.c.status != "sent", t.sends.c.by_workers == false()
    )
    .scalar_subquery()
)


def _start_broadcast(conn: Connection, live: LiveBroadcast) -> bool:
    """Record `live` as sending, in the caller's transaction: a new broadcast, or a scheduled one
    that nobody started yet. False when it was started (or ended) meanwhile: by a delivery
    worker, or by another apply. The conditional update is the one place a send starts, so apply
    and the workers cannot both start it."""
    b = t.broadcasts
    status = conn.execute(select(b.c.status).where(b.c.id == live.id)).scalar_one_or_none()
    if status is None:
        write_broadcast(conn, live)  # a concurrent insert of the same id fails on the key
        return True
    started = conn.execute(
        update(b)
        .where(b.c.id == live.id, b.c.status == str(BroadcastStatus.SCHEDULED))
        .values(status=str(BroadcastStatus.SENDING))
    )
    if started.rowcount != 1:
        return False
    write_broadcast(conn, live)
    return True


def new_send(
    conn: Connection, broadcast_id: str, targets: Targets, statuses: Sequence[str], by_workers: bool
) -> FrozenSend:
    """A send of a broadcast with its audience frozen, in the caller's transaction."""
    now = datetime.now(UTC)
    result = conn.execute(
        insert(t.sends).values(
            kind="broadcast",
            broadcast_id=broadcast_id,
            recipients=0,
            status="sending",
            created_at=now,
            by_workers=by_workers,
        )
    )
    send_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    total = freeze_audience(conn, send_id, targets, statuses, now)
    suppressed = conn.execute(
        select(func.count())
        .select_from(t.deliveries)
        .where(t.deliveries.c.send_id == send_id, t.deliveries.c.status == "suppressed")
    ).scalar_one()
    conn.execute(update(t.sends).where(t.sends.c.id == send_id).values(recipients=total))
    return FrozenSend(send_id, total, int(suppressed))


def finish_send_rows(conn: Connection, send_id: int, broadcast_id: str) -> bool:
    """Close a send with no row left to send: its counts kept, the broadcast `sent` (one
    cancelled with `queue cancel --broadcast` stays cancelled). True if it was closed."""
    d = t.deliveries
    left = conn.execute(
        select(func.count())
        .select_from(d)
        .where(d.c.send_id == send_id, d.c.status.in_(("queued", "sending")))
    ).scalar_one()
    if left:
        return False
    by_status = conn.execute(
        select(d.c.status, func.count()).where(d.c.send_id == send_id).group_by(d.c.status)
    ).all()
    counts = {str(status): int(n) for status, n in by_status}
    conn.execute(
        update(t.sends).where(t.sends.c.id == send_id).values(status="sent", counts=counts)
    )
    conn.execute(
        update(t.broadcasts)
        .where(t.broadcasts.c.id == broadcast_id, t.broadcasts.c.status == "sending")
        .values(status="sent", sent_at=datetime.now(UTC))
    )
    return True


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
        # deleted customers (`import --sync`) are in no audience; SQLite also needs a WHERE
        # before ON CONFLICT in INSERT … SELECT
        .where(c.c.deleted_at.is_(None))
    )
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
    stmt = insert_for(conn.dialect.name, t.deliveries).from_select(columns, rows)
    conn.execute(stmt.on_conflict_do_nothing())
    return int(
        conn.execute(
            select(func.count()).select_from(t.deliveries).where(t.deliveries.c.send_id == send_id)
        ).scalar_one()
    )


class SendsMixin:
    engine: Engine

    def record_send(
        self, live: LiveBroadcast, statuses: Sequence[str], *, by_workers: bool = False
    ) -> FrozenSend | None:
        """In one transaction: the broadcast (status `sending`), its send, its frozen audience.
        None when a scheduled broadcast was started meanwhile (by a delivery worker)."""
        with self.engine.begin() as conn:
            if not _start_broadcast(conn, live):
                return None
            return new_send(conn, live.id, live.spec.targets, statuses, by_workers)

    def send_id_for(self, broadcast_id: str) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(t.sends.c.id).where(t.sends.c.broadcast_id == broadcast_id)
            ).scalar_one_or_none()
        return None if value is None else int(value)

    def ledger(self) -> Ledger:
        return open_ledger(self.engine)

    def crashed_to_uncertain(self) -> int:
        """Broadcast rows left `sending` by a crashed apply: nobody knows if they went out.
        (Its send log, if it left one, is folded into the ledger first: store/sendlog.py.)"""
        from commsync.store.sendlog import log_path, recover

        ledger = open_ledger(self.engine)
        try:
            path = log_path(ledger)
            if path is not None:
                recover(ledger, path)
        finally:
            ledger.close()
        d = t.deliveries
        with self.engine.begin() as conn:
            result = conn.execute(
                update(d)
                .where(d.c.status == "sending", d.c.send_id.in_(_OPEN_SENDS))
                .values(
                    status="uncertain",
                    last_error="the apply sending it stopped before the server replied",
                    updated_at=datetime.now(UTC),
                )
            )
        return int(result.rowcount)

    def requeue(self, statuses: Sequence[DeliveryStatus]) -> int:
        """Broadcast rows in `statuses` go back to `queued` (apply --resend-uncertain / --retry-failed)."""
        d = t.deliveries
        with self.engine.begin() as conn:
            picked = d.c.status.in_([str(s) for s in statuses]), d.c.send_id.in_(_BROADCAST_SENDS)
            send_ids = [
                int(i)
                for i in conn.execute(select(d.c.send_id).where(*picked).distinct()).scalars()
            ]
            if not send_ids:
                return 0
            result = conn.execute(
                update(d).where(*picked).values(status="queued", updated_at=datetime.now(UTC))
            )
            conn.execute(
                update(t.sends)
                .where(t.sends.c.id.in_(send_ids))
                .values(status="sending", counts=None)
            )
            reopened = select(t.sends.c.broadcast_id).where(t.sends.c.id.in_(send_ids))
            conn.execute(
                update(t.broadcasts).where(t.broadcasts.c.id.in_(reopened)).values(status="sending")
            )
        return int(result.rowcount)

    def finish_send(self, broadcast_id: str) -> bool:
        """Mark the broadcast `sent` when no row is left to send; True if it is."""
        with self.engine.begin() as conn:
            send_id = conn.execute(
                select(t.sends.c.id).where(t.sends.c.broadcast_id == broadcast_id)
            ).scalar_one()
            return finish_send_rows(conn, int(send_id), broadcast_id)

    def failed_recipients(self, broadcast_id: str) -> list[FailedRecipient]:
        d = t.deliveries
        query = (
            select(d.c.email, d.c.last_error, d.c.attempts)
            .join(t.sends, t.sends.c.id == d.c.send_id)
            .where(t.sends.c.broadcast_id == broadcast_id, d.c.status == DeliveryStatus.FAILED)
            .order_by(d.c.email)
        )
        with self.engine.connect() as conn:
            return [FailedRecipient(str(e), err, int(a)) for e, err, a in conn.execute(query)]
