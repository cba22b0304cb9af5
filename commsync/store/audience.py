"""Audience counts in SQL: how many distinct customers a target selection reaches.

Customers are never loaded to be counted. Per-product counts come from one grouped query over the
(product_slug, status, customer_id) index. A selection of several products needs distinct
customers; there are two ways to get them, and a cost estimate picks one:

- one `COUNT(DISTINCT customer_id)` per selection, which sorts that selection's rows — cheap for
  the few selections of an everyday pull request;
- one pass that groups every customer by the *set* of products they qualify for (a few thousand
  distinct sets) and adds each set's count to every selection it meets — cheaper once the
  selections together would sort more rows than the memberships table holds twice over.

The histogram is kept in the store (`audience_histograms`) with the memberships generation it
was counted at; every write to memberships increases the generation, so a kept histogram is used
only while the memberships are as they were.

Customers listed by id are counted by looking up only their own memberships. Customers a
`customers import --sync` marked deleted have no memberships left and are skipped where listed
or reached by `all`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, delete, distinct, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.functions import aggregate_strings

from commsync.model import Audience, Targets
from commsync.store.tables import (
    audience_histograms,
    customers,
    memberships,
    meta,
    suppressions,
)

log = logging.getLogger(__name__)

_CHUNK = 500
_HISTOGRAM_RATIO = (
    2  # sorted rows per selection vs. rows in one full pass; measured in bench/plan.py
)
_HISTOGRAM_MIN_ROWS = 100_000


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _qualifying(statuses: Sequence[str]) -> ColumnElement[bool]:
    return memberships.c.status.in_(statuses)


def _product_counts(conn: Connection, slugs: set[str], statuses: Sequence[str]) -> dict[str, int]:
    if not slugs:
        return {}
    query = (
        select(memberships.c.product_slug, func.count())
        .where(memberships.c.product_slug.in_(sorted(slugs)), _qualifying(statuses))
        .group_by(memberships.c.product_slug)
    )
    counts = {str(slug): int(n) for slug, n in conn.execute(query)}
    return {slug: counts.get(slug, 0) for slug in slugs}


def _listed_products(
    conn: Connection, ids: set[str], statuses: Sequence[str]
) -> dict[str, set[str]]:
    """For explicitly listed customers only: the products they qualify for."""
    found: dict[str, set[str]] = defaultdict(set)
    for chunk in _chunks(sorted(ids)):
        query = select(memberships.c.customer_id, memberships.c.product_slug).where(
            memberships.c.customer_id.in_(chunk), _qualifying(statuses)
        )
        for cid, slug in conn.execute(query):
            found[str(cid)].add(str(slug))
    return found


def _deleted(conn: Connection, ids: set[str]) -> set[str]:
    """Of customers listed by id, those a `customers import --sync` marked deleted."""
    out: set[str] = set()
    for chunk in _chunks(sorted(ids)):
        query = select(customers.c.id).where(
            customers.c.id.in_(chunk), customers.c.deleted_at.is_not(None)
        )
        out.update(str(cid) for cid in conn.execute(query).scalars())
    return out


def _distinct_count(conn: Connection, products: Sequence[str], statuses: Sequence[str]) -> int:
    query = select(func.count(distinct(memberships.c.customer_id))).where(
        memberships.c.product_slug.in_(products), _qualifying(statuses)
    )
    return int(conn.execute(query).scalar_one())


def _histogram(
    conn: Connection, selections: Sequence[Targets], statuses: Sequence[str]
) -> dict[Targets, int]:
    """Distinct customers per selection from one pass over memberships grouped by customer."""
    per_customer = (
        select(aggregate_strings(memberships.c.product_slug, " ").label("products"))
        .where(_qualifying(statuses))
        .group_by(memberships.c.customer_id)
        .subquery()
    )
    query = select(per_customer.c.products, func.count()).group_by(per_customer.c.products)
    by_product: dict[str, list[Targets]] = defaultdict(list)
    for t in selections:
        for slug in t.products:
            by_product[slug].append(t)
    totals = dict.fromkeys(selections, 0)
    for products, count in _kept_histogram(conn, statuses, query):
        touched = {t for slug in str(products).split(" ") for t in by_product.get(slug, ())}
        for t in touched:
            totals[t] += int(count)
    return totals


def _generation(conn: Connection) -> int | None:
    value = conn.execute(
        select(meta.c.value).where(meta.c.key == "memberships_generation")
    ).scalar_one_or_none()
    return None if value is None else int(value)


def _kept_histogram(
    conn: Connection, statuses: Sequence[str], query: Select[Any]
) -> list[tuple[str, int]]:
    """The histogram's rows (products a customer qualifies for, how many such customers): kept
    in the store while no membership was written since (`memberships_generation`), else
    computed — 0.7 s of a first plan at 1.5M memberships — and kept for the next plan. The
    generation is read before the count, so a histogram never carries a newer generation than
    the memberships it counted. Keeping it is best-effort: a store that refuses the write (a
    read-only role, a lock held by an apply) just computes it again next time."""
    key = ",".join(sorted(set(statuses)))
    generation = _generation(conn) if len(key) <= 512 else None
    h = audience_histograms.c
    if generation is not None:
        kept = conn.execute(
            select(h.products, h.customers, h.generation).where(h.statuses == key)
        ).all()
        if kept and all(int(g) == generation for _, _, g in kept):
            return [(str(p), int(n)) for p, n, _ in kept]
    rows = [(str(p), int(n)) for p, n in conn.execute(query)]
    if generation is not None and rows:
        try:
            conn.commit()  # what was read so far; the write gets a transaction of its own
            conn.execute(delete(audience_histograms).where(h.statuses == key))
            conn.execute(
                insert(audience_histograms),
                [
                    {"statuses": key, "products": p, "customers": n, "generation": generation}
                    for p, n in rows
                ],
            )
            conn.commit()
        except DBAPIError as exc:
            conn.rollback()
            log.debug("audience histogram not kept: %s", exc.orig)
    return rows


def _all_qualifying_rows(conn: Connection, statuses: Sequence[str]) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(memberships).where(_qualifying(statuses))
        ).scalar_one()
    )


def _multi_product_counts(
    conn: Connection,
    selections: list[Targets],
    per_product: dict[str, int],
    statuses: Sequence[str],
) -> dict[Targets, int]:
    if not selections:
        return {}
    rows_to_sort = sum(per_product[p] for t in selections for p in t.products)
    if (
        rows_to_sort >= _HISTOGRAM_MIN_ROWS
        and rows_to_sort > _HISTOGRAM_RATIO * _all_qualifying_rows(conn, statuses)
    ):
        return _histogram(conn, selections, statuses)
    return {t: _distinct_count(conn, t.products, statuses) for t in selections}


def count_audiences(
    conn: Connection, selections: Collection[Targets], statuses: Sequence[str]
) -> dict[Targets, Audience]:
    unique = set(selections)
    per_product = _product_counts(conn, {p for t in unique for p in t.products}, statuses)
    partial = [t for t in unique if not t.all]
    multi = _multi_product_counts(
        conn, [t for t in partial if len(t.products) > 1], per_product, statuses
    )
    listed = _listed_products(
        conn, {c for t in partial if t.products for c in t.customers}, statuses
    )
    gone = _deleted(conn, {c for t in partial for c in t.customers})
    everyone: int | None = None
    any_suppressed = conn.execute(select(suppressions.c.email_key).limit(1)).first() is not None
    suppressed = _Suppressed(conn, statuses) if any_suppressed else None
    out: dict[Targets, Audience] = {}
    for t in unique:
        if t.all:
            if everyone is None:
                living = select(func.count()).where(customers.c.deleted_at.is_(None))
                everyone = int(conn.execute(living).scalar_one())
            total = everyone
        else:
            from_products = (
                multi[t] if len(t.products) > 1 else sum(per_product[p] for p in t.products)
            )
            extra = sum(
                1
                for c in t.customers
                if c not in gone and not listed.get(c, set()) & set(t.products)
            )
            total = from_products + extra
        products = tuple((slug, per_product[slug]) for slug in t.products)
        out[t] = Audience(
            total=total,
            all=t.all,
            customers=len(t.customers),
            products=products,
            listed_in_products=0 if t.all else len(set(t.customers) - gone) - extra,
            suppressed=suppressed.count(t) if suppressed is not None else 0,
        )
    return out


class _Suppressed:
    """The suppressed customers, read once per plan: each with the products they qualify for.

    One query joins the suppression list to customers and their qualifying memberships (its
    size is the suppression list's, not the audience's); each selection is then counted with set
    unions over the few suppressed customers of its products.
    """

    def __init__(self, conn: Connection, statuses: Sequence[str]) -> None:
        m = memberships.c
        joined = suppressions.join(
            customers,
            (customers.c.email_key == suppressions.c.email_key) & customers.c.deleted_at.is_(None),
        )
        joined = joined.outerjoin(
            memberships, (m.customer_id == customers.c.id) & _qualifying(statuses)
        )
        self.ids: set[str] = set()
        self.by_product: dict[str, set[str]] = defaultdict(set)
        for cid, slug in conn.execute(select(customers.c.id, m.product_slug).select_from(joined)):
            self.ids.add(str(cid))
            if slug is not None:
                self.by_product[str(slug)].add(str(cid))

    def count(self, t: Targets) -> int:
        if t.all:
            return len(self.ids)
        reached = self.ids.intersection(t.customers)
        for slug in t.products:
            reached |= self.by_product.get(slug, set())
        return len(reached)
