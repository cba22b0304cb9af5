"""Store operations for dashboards: the notices feed, dismissals, unsubscribes, platform upserts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, exists, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from commsync.model import BroadcastSpec, CustomerRecord, MembershipRecord
from commsync.store import tables as t


def _now() -> datetime:
    return datetime.now(UTC)


class FeedMixin:
    """Feed methods of SqlStore."""

    engine: Engine

    def customer(self, customer_id: str) -> CustomerRecord | None:
        c = t.customers.c
        query = select(
            c.id, c.email, c.username, c.first_name, c.last_name, c.display_name, c.locale
        ).where(c.id == customer_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else CustomerRecord(*row)

    def notices_for(self, customer_id: str, statuses: Sequence[str]) -> list[tuple[str, str]]:
        """(id, spec hash) of active notices targeted at the customer and not dismissed by them."""
        b, bt, m, d = t.broadcasts, t.broadcast_targets, t.memberships, t.dismissals
        products = select(m.c.product_slug).where(
            m.c.customer_id == customer_id, m.c.status.in_(statuses)
        )
        targeted = exists().where(
            bt.c.broadcast_id == b.c.id,
            or_(
                bt.c.target_type == "all",
                (bt.c.target_type == "customer") & (bt.c.value == customer_id),
                (bt.c.target_type == "product") & bt.c.value.in_(products),
            ),
        )
        dismissed = exists().where(d.c.broadcast_id == b.c.id, d.c.customer_id == customer_id)
        query = (
            select(b.c.id, b.c.spec_hash)
            .where(b.c.kind == "notice", b.c.status == "active", targeted, ~dismissed)
            .order_by(b.c.id)
        )
        with self.engine.connect() as conn:
            return [(str(i), str(h)) for i, h in conn.execute(query)]

    def notice_specs(self, ids: Sequence[str]) -> dict[str, BroadcastSpec]:
        if not ids:
            return {}
        query = select(t.broadcasts.c.id, t.broadcasts.c.spec).where(
            t.broadcasts.c.id.in_(list(ids))
        )
        with self.engine.connect() as conn:
            return {str(i): BroadcastSpec.from_json(spec) for i, spec in conn.execute(query)}

    def dismiss(self, notice_id: str, customer_id: str, now: datetime) -> None:
        """Idempotent: dismissing twice is dismissing once."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(t.dismissals).values(
                        broadcast_id=notice_id, customer_id=customer_id, dismissed_at=now
                    )
                )
        except IntegrityError:
            pass

    def address_for_token(self, token: str) -> str | None:
        query = select(t.unsubscribe_tokens.c.email_key).where(
            t.unsubscribe_tokens.c.token == token
        )
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        return None if value is None else str(value)

    def suppress(self, email_key: str, scope: str, reason: str, source: str, now: datetime) -> None:
        """Record a suppression; an existing one for the address is kept (it is at least as strong)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        values = {
            "email_key": email_key,
            "scope": scope,
            "reason": reason,
            "source": source,
            "created_at": now,
        }
        with self.engine.begin() as conn:
            conn.execute(dialect.insert(t.suppressions).values(values).on_conflict_do_nothing())

    def replace_memberships(self, customer_id: str, rows: Sequence[MembershipRecord]) -> None:
        """The customer's memberships become exactly `rows`, in one transaction."""
        m = t.memberships
        values = [
            {
                "customer_id": customer_id,
                "product_slug": r.product,
                "status": r.status,
                "updated_at": _now(),
            }
            for r in rows
        ]
        with self.engine.begin() as conn:
            conn.execute(delete(m).where(m.c.customer_id == customer_id))
            if values:
                conn.execute(insert(m).values(values))

    def dismissed(self, notice_id: str, customer_id: str) -> bool:
        d = t.dismissals.c
        query = select(d.broadcast_id).where(
            d.broadcast_id == notice_id, d.customer_id == customer_id
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None
