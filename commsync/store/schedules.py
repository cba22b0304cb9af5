"""Scheduled email broadcasts and the workers' broadcast sends, in SQL: recording a schedule,
starting it once (whoever asks first), the emergency brake, and closing the workers' sends.

Implements part of the `Sends` role of `SqlStore`; a send itself is made as in `sends.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, select, true, update

from commsync.model import BroadcastSpec, BroadcastStatus, LiveBroadcast, QueuedBroadcast
from commsync.store import tables as t
from commsync.store.managed import write_broadcast
from commsync.store.roles import BroadcastCancel, StartedSend
from commsync.store.sends import finish_send_rows, new_send


class SchedulesMixin:
    engine: Engine

    def schedule_broadcast(self, live: LiveBroadcast) -> bool:
        """Record (or change) a scheduled email broadcast; False when a worker started it first."""
        b = t.broadcasts
        with self.engine.begin() as conn:
            status = conn.execute(select(b.c.status).where(b.c.id == live.id)).scalar_one_or_none()
            if status is not None:
                locked = conn.execute(
                    update(b)
                    .where(b.c.id == live.id, b.c.status == str(BroadcastStatus.SCHEDULED))
                    .values(updated_at=datetime.now(UTC))
                )
                if locked.rowcount != 1:
                    return False
            write_broadcast(conn, live)
        return True

    def end_schedule(self, broadcast_id: str, *, missed: bool) -> bool:
        """A scheduled broadcast that will not go out: recorded `missed`, or forgotten
        (unscheduled). False when a worker started it first."""
        b = t.broadcasts
        still = (b.c.id == broadcast_id, b.c.status == str(BroadcastStatus.SCHEDULED))
        with self.engine.begin() as conn:
            if missed:
                done = conn.execute(update(b).where(*still).values(status="missed"))
            else:
                conn.execute(
                    delete(t.broadcast_targets).where(
                        t.broadcast_targets.c.broadcast_id.in_(select(b.c.id).where(*still))
                    )
                )
                done = conn.execute(delete(b).where(*still))
        return done.rowcount == 1

    def start_due_broadcasts(self, now: datetime, statuses: Sequence[str]) -> list[StartedSend]:
        """The delivery worker's scheduler: each scheduled broadcast whose `send_at` has passed
        is started (audience frozen, rows for the workers) or, later than its `max_lateness`,
        recorded missed. Several workers may call this at once: each broadcast starts once."""
        b = t.broadcasts
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(b.c.id, b.c.spec).where(
                    b.c.status == str(BroadcastStatus.SCHEDULED), b.c.kind == "email"
                )
            ).all()
        out = []
        for bid, data in rows:
            spec = BroadcastSpec.from_json(data)
            if spec.send_at is not None and spec.send_at > now:
                continue
            late = spec.send_at is not None and now - spec.send_at > spec.lateness
            still = (b.c.id == bid, b.c.status == str(BroadcastStatus.SCHEDULED))
            with self.engine.begin() as conn:
                status = BroadcastStatus.MISSED if late else BroadcastStatus.SENDING
                if conn.execute(update(b).where(*still).values(status=str(status))).rowcount != 1:
                    continue  # another worker, or an apply, was first
                if late:
                    out.append(StartedSend(str(bid), status, 0))
                    continue
                frozen = new_send(conn, str(bid), spec.targets, statuses, by_workers=True)
            out.append(StartedSend(str(bid), status, frozen.recipients))
        return out

    def finish_worker_sends(self) -> list[str]:
        """Close the workers' sends that have no row left to send; their broadcast ids."""
        s, d = t.sends, t.deliveries
        busy = (
            select(d.c.id)
            .where(d.c.send_id == s.c.id, d.c.status.in_(("queued", "sending")))
            .exists()
        )
        query = select(s.c.id, s.c.broadcast_id).where(
            s.c.kind == "broadcast", s.c.by_workers == true(), s.c.status == "sending", ~busy
        )
        done = []
        with self.engine.begin() as conn:
            for send_id, broadcast_id in conn.execute(query).all():
                if finish_send_rows(conn, int(send_id), str(broadcast_id)):
                    done.append(str(broadcast_id))
        return done

    def queued_broadcasts(self) -> list[QueuedBroadcast]:
        """Email broadcasts not yet out: scheduled ones, and sends still going, the soonest first."""
        b, s, d = t.broadcasts, t.sends, t.deliveries
        left = (
            select(func.count())
            .where(d.c.send_id == s.c.id, d.c.status.in_(("queued", "sending")))
            .scalar_subquery()
        )
        query = (
            select(b.c.id, b.c.spec, b.c.status, s.c.recipients, s.c.by_workers, left)
            .select_from(b.outerjoin(s, s.c.broadcast_id == b.c.id))
            .where(b.c.kind == "email", b.c.status.in_(("scheduled", "sending")))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for bid, data, status, recipients, by_workers, remaining in rows:
            spec = BroadcastSpec.from_json(data)
            out.append(
                QueuedBroadcast(
                    str(bid),
                    spec.subject,
                    str(status),
                    spec.send_at,
                    int(recipients or 0),
                    int(remaining or 0),
                    status == "scheduled" or bool(by_workers),
                )
            )
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(out, key=lambda q: (q.status != "sending", q.send_at or far, q.id))

    def cancel_broadcast(self, broadcast_id: str, now: datetime) -> BroadcastCancel | None:
        """The emergency brake: a scheduled broadcast never starts; a send in progress stops —
        its queued recipients become `cancelled` (those being sent finish). None: no such email
        broadcast. The broadcast is `cancelled` from then on and never sent again."""
        b, s, d = t.broadcasts, t.sends, t.deliveries
        with self.engine.begin() as conn:
            status = conn.execute(
                select(b.c.status).where(b.c.id == broadcast_id, b.c.kind == "email")
            ).scalar_one_or_none()
            if status is None:
                return None
            if status not in ("scheduled", "sending"):
                return BroadcastCancel(str(status), 0, 0)
            stopped = conn.execute(
                update(b)
                .where(b.c.id == broadcast_id, b.c.status == status)
                .values(status="cancelled", updated_at=now)
            )
            if stopped.rowcount != 1:  # it moved on meanwhile (started, or finished)
                return self.cancel_broadcast(broadcast_id, now)
            send_id = conn.execute(
                select(s.c.id).where(s.c.broadcast_id == broadcast_id)
            ).scalar_one_or_none()
            if send_id is None:
                return BroadcastCancel(str(status), 0, 0)
            cancelled = conn.execute(
                update(d)
                .where(d.c.send_id == send_id, d.c.status == "queued")
                .values(
                    status="cancelled",
                    last_error="cancelled with commsync queue cancel --broadcast",
                    claimed_by=None,
                    updated_at=now,
                )
            ).rowcount
            sent = conn.execute(
                select(func.count()).where(d.c.send_id == send_id, d.c.status == "sent")
            ).scalar_one()
        return BroadcastCancel(str(status), int(cancelled), int(sent))

    def broadcast_spec(self, broadcast_id: str) -> BroadcastSpec | None:
        b = t.broadcasts
        with self.engine.connect() as conn:
            data = conn.execute(select(b.c.spec).where(b.c.id == broadcast_id)).scalar_one_or_none()
        return None if data is None else BroadcastSpec.from_json(data)

    def hand_over(self, broadcast_id: str) -> None:
        """An interrupted apply's send goes to the delivery workers (`mail.delivery: workers`)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(t.sends)
                .where(t.sends.c.broadcast_id == broadcast_id)
                .values(by_workers=True)
            )
