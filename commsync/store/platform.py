"""Platform data in SQL: customers, products, memberships, and audiences over them.

Implements the `PlatformData` role of `SqlStore`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Table, delete, func, insert, select, update

from commsync.model import (
    Audience,
    CustomerRecord,
    ImportCounts,
    MembershipRecord,
    ProductRecord,
    Targets,
)
from commsync.store import matching
from commsync.store import tables as t
from commsync.store.audience import count_audiences
from commsync.store.histograms import MembershipWrite
from commsync.store.sqlutil import (
    ConnectionSql,
    chunks,
    feed_changed,
    now,
    upsert,
)


class PlatformMixin:
    engine: Engine
    reader: Engine  # the engine, in autocommit mode on PostgreSQL: reads of one statement

    def product_slugs(self) -> frozenset[str]:
        with self.engine.connect() as conn:
            return frozenset(str(s) for s in conn.execute(select(t.products.c.slug)).scalars())

    def match_customers(self, refs: Collection[str]) -> Mapping[str, tuple[str, ...]]:
        c = t.customers.c
        with self.engine.connect() as conn:

            def fetch(chunk: Sequence[str], lowered: Sequence[str]) -> Iterable[Any]:
                query = select(c.id, c.email_key, c.username).where(
                    c.id.in_(chunk) | c.email_key.in_(lowered) | c.username.in_(chunk)
                )
                return conn.execute(query).all()

            return matching.match_customers(refs, fetch)

    def existing_customer_ids(self, ids: Collection[str]) -> frozenset[str]:
        out: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(ids))):
                query = select(t.customers.c.id).where(t.customers.c.id.in_(chunk))
                out.update(conn.execute(query).scalars())
        return frozenset(out)

    def customer(self, customer_id: str) -> CustomerRecord | None:
        c = t.customers.c
        query = select(
            c.id, c.email, c.username, c.first_name, c.last_name, c.display_name, c.locale
        ).where(c.id == customer_id, c.deleted_at.is_(None))  # deleted: as if unknown
        with self.reader.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else CustomerRecord(*row)

    def count_audiences(
        self, targets: Collection[Targets], statuses: Sequence[str]
    ) -> Mapping[Targets, Audience]:
        with self.engine.connect() as conn:
            return count_audiences(ConnectionSql(conn), targets, statuses)

    def _upsert_counted(
        self, table: Table, rows: list[dict[str, Any]], keys: Sequence[str]
    ) -> ImportCounts:
        wanted = {tuple(r[k] for k in keys) for r in rows}
        count = select(func.count()).select_from(table)
        with self.engine.begin() as conn:
            change = None
            if rows and table is t.memberships:
                change = MembershipWrite(conn, {str(r["customer_id"]) for r in rows})
            # new rows are what the table gained: an upsert never removes one (looking up each
            # key instead cost 21 s of a 300,000-membership import on SQLite)
            before = int(conn.execute(count).scalar_one())
            if rows:
                upsert(conn, table, rows, keys)
                if change is not None:
                    change.done()
            if rows and table is not t.products:  # a product's name is in no notice's feed
                key = "customer_id" if table is t.memberships else "id"
                feed_changed(conn, {str(r[key]) for r in rows})
            inserted = int(conn.execute(count).scalar_one()) - before
        return ImportCounts(inserted=inserted, updated=len(wanted) - inserted)

    def upsert_customers(self, rows: Sequence[CustomerRecord]) -> ImportCounts:
        stamp = now()
        values = [
            {
                "id": r.id,
                "email": r.email,
                "email_key": r.email.lower(),
                "username": r.username,
                "first_name": r.first_name,
                "last_name": r.last_name,
                "display_name": r.display_name,
                "locale": r.locale,
                "updated_at": stamp,
                "deleted_at": None,  # written again: no longer deleted
            }
            for r in rows
        ]
        return self._upsert_counted(t.customers, values, ["id"])

    def upsert_products(self, rows: Sequence[ProductRecord]) -> ImportCounts:
        stamp = now()
        values = [{"slug": r.slug, "name": r.name, "updated_at": stamp} for r in rows]
        return self._upsert_counted(t.products, values, ["slug"])

    def upsert_memberships(self, rows: Sequence[MembershipRecord]) -> ImportCounts:
        return self._upsert_counted(
            t.memberships, _membership_rows(rows), ["customer_id", "product_slug"]
        )

    def delete_customer(self, customer_id: str) -> bool:
        c = t.customers.c
        with self.engine.begin() as conn:
            found = conn.execute(select(c.id).where(c.id == customer_id)).first() is not None
            if found:
                change = MembershipWrite(conn, [customer_id])
                conn.execute(
                    update(t.customers)
                    .where(c.id == customer_id, c.deleted_at.is_(None))
                    .values(deleted_at=now())
                )
                conn.execute(
                    delete(t.memberships).where(t.memberships.c.customer_id == customer_id)
                )
                change.done()
                feed_changed(conn, [customer_id])
        return found

    def broadcasts_targeting_product(self, slug: str) -> list[str]:
        bt = t.broadcast_targets.c
        query = select(bt.broadcast_id).where(bt.target_type == "product", bt.value == slug)
        with self.engine.connect() as conn:
            return sorted(str(b) for b in conn.execute(query.distinct()).scalars())

    def delete_product(self, slug: str) -> bool:
        with self.engine.begin() as conn:
            change = MembershipWrite(conn, None, product_removed=slug)
            conn.execute(delete(t.memberships).where(t.memberships.c.product_slug == slug))
            gone = conn.execute(delete(t.products).where(t.products.c.slug == slug))
            change.done()
            feed_changed(conn, None)  # its members' feeds: everyone's, in one row
        return bool(gone.rowcount)

    def replace_memberships(self, customer_id: str, rows: Sequence[MembershipRecord]) -> None:
        m = t.memberships
        values = _membership_rows(rows)
        with self.engine.begin() as conn:
            change = MembershipWrite(conn, [customer_id])
            conn.execute(delete(m).where(m.c.customer_id == customer_id))
            if values:
                conn.execute(insert(m).values(values))
            change.done()
            feed_changed(conn, [customer_id])


def _membership_rows(rows: Sequence[MembershipRecord]) -> list[dict[str, Any]]:
    stamp = now()
    return [
        {
            "customer_id": r.customer_id,
            "product_slug": r.product,
            "status": r.status,
            "updated_at": stamp,
        }
        for r in rows
    ]
