"""The objects apply manages, in SQL: broadcasts (with send progress) and system emails.

Implements the `ManagedObjects` role of `SqlStore`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from commsync.model import (
    BroadcastKind,
    BroadcastSpec,
    BroadcastStatus,
    DeliveryStatus,
    EmailStats,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    Provenance,
    SendProgress,
    SystemEmailFields,
    Targets,
)
from commsync.model.durations import parse_minutes
from commsync.store import tables as t
from commsync.store.sqlutil import feed_changed, now


class ManagedMixin:
    engine: Engine
    reader: Engine

    @property
    def store_id(self) -> str:
        raise NotImplementedError

    def system_emails(self) -> dict[str, LiveSystemEmail]:
        with self.reader.connect() as conn:
            return {
                str(row.slug): _live_system_email(row)
                for row in conn.execute(select(t.system_emails))
            }

    def snapshot(self) -> LiveSnapshot:
        with self.engine.connect() as conn:
            progress = _progress(conn)
            broadcasts = {
                str(row.id): _live_broadcast(row, progress.get(str(row.id)))
                for row in conn.execute(select(t.broadcasts))
            }
            emails = {
                str(row.slug): _live_system_email(row)
                for row in conn.execute(select(t.system_emails))
            }
            seen = conn.execute(select(func.max(t.workers.c.seen_at))).scalar_one_or_none()
        return LiveSnapshot(self.store_id, broadcasts, emails, seen)

    def put_broadcast(self, live: LiveBroadcast) -> None:
        with self.engine.begin() as conn:
            write_broadcast(conn, live)

    def release_broadcast(self, broadcast_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(t.broadcasts).where(t.broadcasts.c.id == broadcast_id).values(managed=False)
            )

    def put_system_email(self, live: LiveSystemEmail) -> None:
        stamp = now()
        p = live.provenance
        values = {
            "fields": live.fields.to_json(),
            "fields_hash": live.fields.fields_hash(),
            "applied_hash": live.applied_hash,
            "overrides": list(live.overrides),
            "base_version": live.base_version,
            "base_fields": None if live.base_fields is None else live.base_fields.to_json(),
            "managed_path": p.path,
            "commit": p.commit,
            "author": p.author,
            "applied_at": p.applied_at,
            "updated_at": stamp,
        }
        c = t.system_emails.c
        with self.engine.begin() as conn:
            before = conn.execute(select(c.fields).where(c.slug == live.slug)).first()
            if before is not None:
                conn.execute(update(t.system_emails).where(c.slug == live.slug).values(values))
                old = before.fields.get("delay") if isinstance(before.fields, dict) else None
                if parse_minutes(old) != parse_minutes(live.fields.delay):
                    _move_due_times(conn, live.slug, parse_minutes(live.fields.delay) or 0)
            else:
                conn.execute(
                    insert(t.system_emails).values(slug=live.slug, created_at=stamp, **values)
                )

    def delete_system_email(self, slug: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(t.system_emails).where(t.system_emails.c.slug == slug))

    def dismissal_counts(self) -> dict[str, int]:
        query = select(t.dismissals.c.broadcast_id, func.count()).group_by(
            t.dismissals.c.broadcast_id
        )
        with self.engine.connect() as conn:
            return {str(b): int(n) for b, n in conn.execute(query)}


def write_broadcast(conn: Connection, live: LiveBroadcast) -> None:
    """Create or replace a broadcast and its target rows, in the caller's transaction."""
    stamp = now()
    p = live.provenance
    values = {
        "kind": str(live.spec.kind),
        "spec": live.spec.to_json(),
        "spec_hash": live.spec.spec_hash(),
        "applied_hash": live.applied_hash,
        "status": str(live.status),
        "managed": live.managed,
        "path": p.path,
        "commit": p.commit,
        "author": p.author,
        "applied_at": p.applied_at,
        "updated_at": stamp,
    }
    b = t.broadcasts.c
    found = conn.execute(select(b.kind).where(b.id == live.id)).first()
    if found:
        conn.execute(update(t.broadcasts).where(t.broadcasts.c.id == live.id).values(values))
    else:
        conn.execute(insert(t.broadcasts).values(id=live.id, created_at=stamp, **values))
    conn.execute(delete(t.broadcast_targets).where(t.broadcast_targets.c.broadcast_id == live.id))
    rows = _target_rows(live.id, live.spec.targets)
    if rows:
        conn.execute(insert(t.broadcast_targets), rows)
    notice = str(BroadcastKind.NOTICE)
    if str(live.spec.kind) == notice or (found is not None and found.kind == notice):
        feed_changed(conn, None)  # a notice's text, targets or state: every feed may change


def _target_rows(broadcast_id: str, targets: Targets) -> list[dict[str, str]]:
    rows = (
        [{"broadcast_id": broadcast_id, "target_type": "all", "value": "*"}] if targets.all else []
    )
    rows += [
        {"broadcast_id": broadcast_id, "target_type": "product", "value": p}
        for p in targets.products
    ]
    rows += [
        {"broadcast_id": broadcast_id, "target_type": "customer", "value": c}
        for c in targets.customers
    ]
    return rows


def _progress(conn: Connection) -> dict[str, SendProgress]:
    """Counts by status of every broadcast send: kept ones for finished sends, counted for the rest."""
    counts: dict[str, dict[str, int]] = {}
    workers: set[str] = set()  # broadcasts the delivery workers send
    open_sends = []
    s = t.sends.c
    for send_id, broadcast_id, status, kept, by_workers in conn.execute(
        select(s.id, s.broadcast_id, s.status, s.counts, s.by_workers).where(
            s.broadcast_id.is_not(None)
        )
    ):
        if by_workers:
            workers.add(str(broadcast_id))
        if status == BroadcastStatus.SENT and isinstance(kept, dict):
            counts[str(broadcast_id)] = {str(k): int(v) for k, v in kept.items()}
        else:
            open_sends.append(int(send_id))
            counts[str(broadcast_id)] = {}
    if open_sends:
        query = (
            select(t.sends.c.broadcast_id, t.deliveries.c.status, func.count())
            .join(t.deliveries, t.deliveries.c.send_id == t.sends.c.id)
            .where(t.sends.c.id.in_(open_sends))
            .group_by(t.sends.c.broadcast_id, t.deliveries.c.status)
        )
        for broadcast_id, status, n in conn.execute(query):
            counts[str(broadcast_id)][str(status)] = int(n)
    return {
        bid: SendProgress(total=sum(c.values()), by_workers=bid in workers, **c)
        for bid, c in counts.items()
    }


def _move_due_times(conn: Connection, slug: str, minutes: int) -> int:
    """The email's `delay` changed: its queued messages not yet tried fall due at their event's
    time plus the new delay (retries keep their own times)."""
    d, s, e = t.deliveries, t.sends, t.events
    rows = conn.execute(
        select(d.c.id, e.c.received_at)
        .select_from(d.join(s, s.c.id == d.c.send_id).join(e, e.c.id == s.c.event_id))
        .where(
            s.c.kind == "system_email",
            s.c.system_email_slug == slug,
            d.c.status == DeliveryStatus.QUEUED,
            d.c.attempts == 0,
        )
    ).all()
    stamp = now()
    for row_id, received_at in rows:
        due = received_at + timedelta(minutes=minutes)
        conn.execute(
            update(d)
            .where(d.c.id == row_id, d.c.status == DeliveryStatus.QUEUED)
            .values(due_at=due, updated_at=stamp)
        )
    return len(rows)


def _provenance(row: Any, path: str | None) -> Provenance:
    return Provenance(path=path, commit=row.commit, author=row.author, applied_at=row.applied_at)


def _live_broadcast(row: Any, progress: SendProgress | None) -> LiveBroadcast:
    spec = BroadcastSpec.from_json(row.spec)
    is_email = spec.kind == BroadcastKind.EMAIL
    if is_email and progress is None:
        progress = SendProgress()
    return LiveBroadcast(
        id=str(row.id),
        spec=spec,
        status=BroadcastStatus(row.status),
        applied_hash=str(row.applied_hash),
        managed=bool(row.managed),
        provenance=_provenance(row, row.path),
        progress=progress if is_email else None,
    )


def _live_system_email(row: Any) -> LiveSystemEmail:
    return LiveSystemEmail(
        slug=str(row.slug),
        fields=SystemEmailFields.from_json(row.fields),
        applied_hash=str(row.applied_hash),
        overrides=tuple(sorted(row.overrides)),
        base_version=row.base_version,
        base_fields=None
        if row.base_fields is None
        else SystemEmailFields.from_json(row.base_fields),
        stats=EmailStats(
            int(row.sent_count),
            int(row.failed_count),
            row.last_sent_at,
            int(row.cancelled_count),
        ),
        provenance=_provenance(row, row.managed_path),
    )
