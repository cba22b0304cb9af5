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
only while the memberships are as they were — and while it is, every count comes from it (per
product too), with no pass over memberships.

Customers listed by id are counted by looking up only their own memberships. Customers a
`customers import --sync` marked deleted have no memberships left and are skipped where listed
or reached by `all`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence

from sqlalchemy import ColumnElement, Connection, delete, distinct, func, insert, select
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


def _product_counts(
    conn: Connection, slugs: set[str] | None, statuses: Sequence[str]
) -> dict[str, int]:
    """Qualifying memberships per product: of `slugs`, or of every product (None)."""
    if slugs is not None and not slugs:
        return {}
    query = select(memberships.c.product_slug, func.count()).where(_qualifying(statuses))
    if slugs is not None:
        query = query.where(memberships.c.product_slug.in_(sorted(slugs)))
    counts = {
        str(slug): int(n) for slug, n in conn.execute(query.group_by(memberships.c.product_slug))
    }
    return counts if slugs is None else {slug: counts.get(slug, 0) for slug in slugs}


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


class _Histogram:
    """How many customers qualify for each exact set of products (slugs joined by spaces)."""

    def __init__(self, rows: list[tuple[str, int]]) -> None:
        self.rows = rows

    def per_product(self, slugs: set[str]) -> dict[str, int]:
        counts = dict.fromkeys(slugs, 0)
        for products, n in self.rows:
            for slug in products.split(" "):
                if slug in counts:
                    counts[slug] += n
        return counts

    def totals(self, selections: Sequence[Targets]) -> dict[Targets, int]:
        """Distinct customers per selection: each set's count added to every selection it meets."""
        by_product: dict[str, list[Targets]] = defaultdict(list)
        for t in selections:
            for slug in t.products:
                by_product[slug].append(t)
        totals = dict.fromkeys(selections, 0)
        for products, n in self.rows:
            touched = {t for slug in products.split(" ") for t in by_product.get(slug, ())}
            for t in touched:
                totals[t] += n
        return totals


def _count_histogram(
    conn: Connection, statuses: Sequence[str], every: dict[str, int]
) -> list[tuple[str, int]]:
    """The histogram from one pass over memberships grouped by customer. Only customers with
    several qualifying products are grouped by their set (sorting a million one-product strings
    was a third of a first plan at 1.5M memberships); each product's one-product customers are
    its count less those, from the per-product counts (`every`, of every product)."""
    m = memberships.c
    per_customer = (
        select(aggregate_strings(m.product_slug, " ").label("products"))
        .where(_qualifying(statuses))
        .group_by(m.customer_id)
        .having(func.count() > 1)
        .subquery()
    )
    query = select(per_customer.c.products, func.count()).group_by(per_customer.c.products)
    rows = [(str(p), int(n)) for p, n in conn.execute(query)]
    alone = dict(every)
    for products, n in rows:
        for slug in products.split(" "):
            alone[slug] = alone.get(slug, 0) - n
    return rows + [(slug, n) for slug, n in sorted(alone.items()) if n > 0]


def _generation(conn: Connection) -> int | None:
    value = conn.execute(
        select(meta.c.value).where(meta.c.key == "memberships_generation")
    ).scalar_one_or_none()
    return None if value is None else int(value)


class _Kept:
    """The histogram kept in the store while no membership was written since
    (`memberships_generation`). The generation is read before anything is counted, so a
    histogram never carries a newer generation than the memberships it counted. Keeping it is
    best-effort: a store that refuses the write (a read-only role, a lock held by an apply)
    just counts it again next time."""

    def __init__(self, conn: Connection, statuses: Sequence[str]) -> None:
        self.key = ",".join(sorted(set(statuses)))
        self.generation = _generation(conn) if len(self.key) <= 512 else None
        self.histogram: _Histogram | None = None
        if self.generation is not None:
            h = audience_histograms.c
            kept = conn.execute(
                select(h.products, h.customers, h.generation).where(h.statuses == self.key)
            ).all()
            if kept and all(int(g) == self.generation for _, _, g in kept):
                self.histogram = _Histogram([(str(p), int(n)) for p, n, _ in kept])

    def count(self, conn: Connection, statuses: Sequence[str], every: dict[str, int]) -> _Histogram:
        """Count the histogram (0.5 s at 1.5M memberships) and keep it for the next plan."""
        rows = _count_histogram(conn, statuses, every)
        if self.generation is not None and rows:
            h = audience_histograms.c
            try:
                conn.commit()  # what was read so far; the write gets a transaction of its own
                conn.execute(delete(audience_histograms).where(h.statuses == self.key))
                conn.execute(
                    insert(audience_histograms),
                    [
                        {
                            "statuses": self.key,
                            "products": p,
                            "customers": n,
                            "generation": self.generation,
                        }
                        for p, n in rows
                    ],
                )
                conn.commit()
            except DBAPIError as exc:
                conn.rollback()
                log.debug("audience histogram not kept: %s", exc.orig)
        self.histogram = _Histogram(rows)
        return self.histogram


def _multi_product_counts(
    conn: Connection,
    selections: list[Targets],
    per_product: dict[str, int],
    statuses: Sequence[str],
    kept: _Kept,
) -> dict[Targets, int]:
    if not selections:
        return {}
    rows_to_sort = sum(per_product[p] for t in selections for p in t.products)
    if rows_to_sort >= _HISTOGRAM_MIN_ROWS:
        every = _product_counts(conn, None, statuses)
        if rows_to_sort > _HISTOGRAM_RATIO * sum(every.values()):
            return kept.count(conn, statuses, every).totals(selections)
    return {t: _distinct_count(conn, t.products, statuses) for t in selections}


def _living(conn: Connection) -> int:
    """Customers not marked deleted: all of them, less the few marked (a partial index)."""
    every = select(func.count()).select_from(customers).scalar_subquery()
    deleted = (
        select(func.count())
        .select_from(customers)
        .where(customers.c.deleted_at.is_not(None))
        .scalar_subquery()
    )
    return int(conn.execute(select(every - deleted)).scalar_one())


def count_audiences(
    conn: Connection, selections: Collection[Targets], statuses: Sequence[str]
) -> dict[Targets, Audience]:
    unique = set(selections)
    wanted = {p for t in unique for p in t.products}
    partial = [t for t in unique if not t.all]
    several = [t for t in partial if len(t.products) > 1]
    kept = _Kept(conn, statuses)
    if kept.histogram is not None:  # every count from it: no pass over memberships at all
        per_product = kept.histogram.per_product(wanted)
        multi = kept.histogram.totals(several)
    else:
        per_product = _product_counts(conn, wanted, statuses)
        multi = _multi_product_counts(conn, several, per_product, statuses, kept)
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
                everyone = _living(conn)
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
