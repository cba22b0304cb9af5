"""Audience counts in SQL: how many distinct customers a target selection reaches.

Customers are never loaded into Python: product counts come from one grouped query over the
(product_slug, status, customer_id) index, and selections that mix several products or explicit
customers are counted with a UNION, which removes customers selected twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

from sqlalchemy import Connection, Select, func, select, union

from commsync.model import Audience, Targets
from commsync.store.tables import customers, memberships

_CHUNK = 500


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _product_counts(conn: Connection, slugs: set[str], statuses: Sequence[str]) -> dict[str, int]:
    if not slugs:
        return {}
    query = (
        select(memberships.c.product_slug, func.count())
        .where(memberships.c.product_slug.in_(sorted(slugs)), memberships.c.status.in_(statuses))
        .group_by(memberships.c.product_slug)
    )
    counts = {str(slug): int(n) for slug, n in conn.execute(query)}
    return {slug: counts.get(slug, 0) for slug in slugs}


def _union_count(conn: Connection, targets: Targets, statuses: Sequence[str]) -> int:
    parts: list[Select[tuple[str]]] = []
    if targets.products:
        parts.append(
            select(memberships.c.customer_id).where(
                memberships.c.product_slug.in_(targets.products), memberships.c.status.in_(statuses)
            )
        )
    parts.extend(
        select(customers.c.id).where(customers.c.id.in_(chunk))
        for chunk in _chunks(targets.customers)
    )
    # UNION removes duplicates across parts; DISTINCT also covers a single part (several products).
    subquery = (union(*parts) if len(parts) > 1 else parts[0].distinct()).subquery()
    return int(conn.execute(select(func.count()).select_from(subquery)).scalar_one())


def count_audiences(
    conn: Connection, selections: Collection[Targets], statuses: Sequence[str]
) -> dict[Targets, Audience]:
    unique = set(selections)
    per_product = _product_counts(conn, {p for t in unique for p in t.products}, statuses)
    everyone: int | None = None
    out: dict[Targets, Audience] = {}
    for t in unique:
        if t.all:
            if everyone is None:
                everyone = int(
                    conn.execute(select(func.count()).select_from(customers)).scalar_one()
                )
            total = everyone
        elif not t.customers and len(t.products) == 1:
            total = per_product[t.products[0]]
        elif not t.products:
            total = len(t.customers)
        else:
            total = _union_count(conn, t, statuses)
        products = tuple((slug, per_product[slug]) for slug in t.products)
        out[t] = Audience(total=total, all=t.all, customers=len(t.customers), products=products)
    return out
