"""The objects apply manages, in SQL: broadcasts (with send progress) and system emails.

Implements the `ManagedObjects` role of `SqlStore`.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from commsync.model import (
    BroadcastKind,
    DeliveryStatus,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    Targets,
)
from commsync.model.durations import parse_minutes
from commsync.store import tables as t
from commsync.store.live import read_snapshot, read_system_emails
from commsync.store.sqlutil import ConnectionSql, feed_changed, now


class ManagedMixin:
    engine: Engine
    reader: Engine

    @property
    def store_id(self) -> str:
        raise NotImplementedError

    def system_emails(self) -> dict[str, LiveSystemEmail]:
        with self.reader.connect() as conn:
            return read_system_emails(ConnectionSql(conn))

    def snapshot(self) -> LiveSnapshot:
        with self.engine.connect() as conn:
            return read_snapshot(ConnectionSql(conn), self.store_id)

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
