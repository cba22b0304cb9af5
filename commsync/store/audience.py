"""Audience counts in SQL: how many distinct customers a target selection reaches.

Customers are never loaded to be counted. Per-product counts come from one grouped query over the
(product_slug, status, customer_id) index. A selection of several products needs distinct
customers; there are two ways to get them, and a cost estimate picks one:

- one `COUNT(DISTINCT customer_id)` per selection, which sorts that selection's rows — cheap for
  the few selections of an everyday pull request;
- one pass that groups every customer by the *set* of products they qualify for (a few thousand
  distinct sets) and adds each set's count to every selection it meets — cheaper once the
  selections together would sort more rows than the memberships table holds twice over.

The histogram is kept in the store (`audience_histograms`, one row per product set, slugs in
sorted order) with the memberships generation it is current at (`audience_histogram_keys`).
Every write to memberships moves the generation on; a write to a few customers' memberships
also adjusts every current histogram and moves it along (store/histograms.py), while a larger
one leaves it behind. A kept histogram is used only while it is current — and while it is,
every count comes from it (per product too), with no pass over memberships.

Written once in plain SQL (store/plainsql.py): `SqlStore` runs it over SQLAlchemy on SQLite and
PostgreSQL, the light reader over `sqlite3` (store/light.py), so `plan` on SQLite needs no
SQLAlchemy.

Customers listed by id are counted by looking up only their own memberships. Customers a
`customers import --sync` marked deleted have no memberships left and are skipped where listed
or reached by `all`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence

from commsync.model import Audience, Targets
from commsync.store.plainsql import Sql, in_list

_CHUNK = 500
_HISTOGRAM_RATIO = (
    2  # sorted rows per selection vs. rows in one full pass; measured in bench/plan.py
)
_HISTOGRAM_MIN_ROWS = 100_000
KEY_LIMIT = 512  # characters of a statuses key a histogram is kept for


def products_key(products: Iterable[str]) -> str:
    """A set of products as a histogram row names it: slugs sorted, joined by spaces."""
    return " ".join(sorted(set(products)))


def statuses_key(statuses: Iterable[str]) -> str:
    """The qualifying statuses a histogram was counted for, as its rows name them."""
    return ",".join(sorted(set(statuses)))


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _product_counts(db: Sql, slugs: set[str] | None, statuses: Sequence[str]) -> dict[str, int]:
    """Qualifying memberships per product: of `slugs`, or of every product (None)."""
    if slugs is not None and not slugs:
        return {}
    where, params = in_list("status", statuses)
    if slugs is not None:
        products, more = in_list("product_slug", sorted(slugs))
        where, params = f"{where} AND {products}", params + more
    sql = f"SELECT product_slug, count(*) FROM memberships WHERE {where} GROUP BY product_slug"
    counts = {str(slug): int(n) for slug, n in db.rows(sql, params)}
    return counts if slugs is None else {slug: counts.get(slug, 0) for slug in slugs}


def _listed_products(db: Sql, ids: set[str], statuses: Sequence[str]) -> dict[str, set[str]]:
    """For explicitly listed customers only: the products they qualify for."""
    found: dict[str, set[str]] = defaultdict(set)
    qualifying, params = in_list("status", statuses)
    for chunk in _chunks(sorted(ids)):
        listed, more = in_list("customer_id", chunk)
        sql = f"SELECT customer_id, product_slug FROM memberships WHERE {listed} AND {qualifying}"
        for cid, slug in db.rows(sql, more + params):
            found[str(cid)].add(str(slug))
    return found


def _deleted(db: Sql, ids: set[str]) -> set[str]:
    """Of customers listed by id, those a `customers import --sync` marked deleted."""
    out: set[str] = set()
    for chunk in _chunks(sorted(ids)):
        listed, params = in_list("id", chunk)
        sql = f"SELECT id FROM customers WHERE {listed} AND deleted_at IS NOT NULL"
        out.update(str(cid) for (cid,) in db.rows(sql, params))
    return out


def _distinct_count(db: Sql, products: Sequence[str], statuses: Sequence[str]) -> int:
    selected, params = in_list("product_slug", products)
    qualifying, more = in_list("status", statuses)
    sql = f"SELECT count(DISTINCT customer_id) FROM memberships WHERE {selected} AND {qualifying}"
    return int(db.rows(sql, params + more)[0][0])


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
        """Distinct customers per selection: each set's count added to every selection it
        meets. Selections are numbered: hashing a `Targets` (its tuples of products and
        customers) for every set it meets was most of a first plan's counting."""
        meets: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(selections):
            for slug in set(t.products):
                meets[slug].append(i)
        sums = [0] * len(selections)
        for products, n in self.rows:
            slugs = products.split(" ")
            touched = (
                meets.get(slugs[0], ())
                if len(slugs) == 1
                else {i for slug in slugs for i in meets.get(slug, ())}
            )
            for i in touched:
                sums[i] += n
        return dict(zip(selections, sums, strict=True))


def _count_histogram(
    db: Sql, statuses: Sequence[str], every: dict[str, int]
) -> list[tuple[str, int]]:
    """The histogram from one pass over memberships grouped by customer. Only customers with
    several qualifying products are grouped by their set (sorting a million one-product strings
    was a third of a first plan at 1.5M memberships); each product's one-product customers are
    its count less those, from the per-product counts (`every`, of every product)."""
    joined = "string_agg(product_slug, ' ')" if db.pg else "group_concat(product_slug, ' ')"
    qualifying, params = in_list("status", statuses)
    sql = (
        f"SELECT products, count(*) FROM (SELECT {joined} AS products FROM memberships"
        f" WHERE {qualifying} GROUP BY customer_id HAVING count(*) > 1) AS per_customer"
        " GROUP BY products"
    )
    sets: Counter[str] = Counter()
    for products, n in db.rows(sql, params):  # in no set order on PostgreSQL
        sets[products_key(str(products).split(" "))] += int(n)
    rows = sorted(sets.items())
    alone = dict(every)
    for products, n in rows:
        for slug in products.split(" "):
            alone[slug] = alone.get(slug, 0) - n
    return rows + [(slug, n) for slug, n in sorted(alone.items()) if n > 0]


def count_histogram(db: Sql, statuses: Sequence[str]) -> list[tuple[str, int]]:
    """The histogram counted afresh (what an import keeps current at its end)."""
    return _count_histogram(db, statuses, _product_counts(db, None, statuses))


def _generation(db: Sql) -> int | None:
    found = db.rows("SELECT value FROM commsync_meta WHERE key = 'memberships_generation'")
    return int(found[0][0]) if found else None


def histogram_writes(
    key: str, rows: list[tuple[str, int]], generation: int, pg: bool
) -> list[tuple[str, list[tuple[object, ...]]]]:
    """The statements (each with its parameter rows) that keep `rows` as the histogram for the
    statuses `key`, current at `generation`: the plan's keep and the writers' recount alike.
    On PostgreSQL the rows go in one statement, as two arrays (105,000 sets took 1.4 s as one
    INSERT each)."""
    insert: tuple[str, list[tuple[object, ...]]] = (
        "INSERT INTO audience_histograms (statuses, products, customers) VALUES (?, ?, ?)",
        [(key, p, n) for p, n in rows],
    )
    if pg:
        insert = (
            "INSERT INTO audience_histograms (statuses, products, customers)"
            " SELECT ?, p, n FROM unnest(?::text[], ?::integer[]) AS u (p, n)",
            [(key, [p for p, _ in rows], [n for _, n in rows])],
        )
    return [
        ("DELETE FROM audience_histograms WHERE statuses = ?", [(key,)]),
        insert,
        (
            "INSERT INTO audience_histogram_keys (statuses, generation) VALUES (?, ?)"
            " ON CONFLICT (statuses) DO UPDATE SET generation = excluded.generation",
            [(key, generation)],
        ),
    ]


class _Kept:
    """The histogram kept in the store while it is current: its generation (in
    `audience_histogram_keys`) is the memberships generation. The generation is read before
    anything is counted, so a histogram never claims a newer generation than the memberships it
    counted. Keeping it is best-effort: a store that refuses the write (a read-only role, a lock
    held by an apply) just counts it again next time."""

    def __init__(self, db: Sql, statuses: Sequence[str]) -> None:
        self.key = statuses_key(statuses)
        self.generation = _generation(db) if len(self.key) <= KEY_LIMIT else None
        self.histogram: _Histogram | None = None
        if self.generation is not None:
            at = db.rows(
                "SELECT generation FROM audience_histogram_keys WHERE statuses = ?", (self.key,)
            )
            if at and int(at[0][0]) == self.generation:
                kept = db.rows(
                    "SELECT products, customers FROM audience_histograms WHERE statuses = ?",
                    (self.key,),
                )
                if kept:
                    self.histogram = _Histogram([(str(p), int(n)) for p, n in kept])

    def count(self, db: Sql, statuses: Sequence[str], every: dict[str, int]) -> _Histogram:
        """Count the histogram (0.5 s at 1.5M memberships) and keep it for the next plan."""
        rows = _count_histogram(db, statuses, every)
        if self.generation is not None and rows:
            db.keep(histogram_writes(self.key, rows, self.generation, db.pg))
        self.histogram = _Histogram(rows)
        return self.histogram


def _multi_product_counts(
    db: Sql,
    selections: list[Targets],
    per_product: dict[str, int],
    statuses: Sequence[str],
    kept: _Kept,
) -> dict[Targets, int]:
    if not selections:
        return {}
    rows_to_sort = sum(per_product[p] for t in selections for p in t.products)
    if rows_to_sort >= _HISTOGRAM_MIN_ROWS:
        every = _product_counts(db, None, statuses)
        if rows_to_sort > _HISTOGRAM_RATIO * sum(every.values()):
            return kept.count(db, statuses, every).totals(selections)
    return {t: _distinct_count(db, t.products, statuses) for t in selections}


def _living(db: Sql) -> int:
    """Customers not marked deleted: all of them, less the few marked (a partial index)."""
    sql = (
        "SELECT (SELECT count(*) FROM customers)"
        " - (SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL)"
    )
    return int(db.rows(sql)[0][0])


def count_audiences(
    db: Sql, selections: Collection[Targets], statuses: Sequence[str]
) -> dict[Targets, Audience]:
    unique = set(selections)
    wanted = {p for t in unique for p in t.products}
    partial = [t for t in unique if not t.all]
    several = [t for t in partial if len(t.products) > 1]
    kept = _Kept(db, statuses)
    if kept.histogram is not None:  # every count from it: no pass over memberships at all
        per_product = kept.histogram.per_product(wanted)
        multi = kept.histogram.totals(several)
    else:
        per_product = _product_counts(db, wanted, statuses)
        multi = _multi_product_counts(db, several, per_product, statuses, kept)
    listed = _listed_products(db, {c for t in partial if t.products for c in t.customers}, statuses)
    gone = _deleted(db, {c for t in partial for c in t.customers})
    everyone: int | None = None
    any_suppressed = bool(db.rows("SELECT 1 FROM suppressions LIMIT 1"))
    suppressed = _Suppressed(db, statuses) if any_suppressed else None
    out: dict[Targets, Audience] = {}
    for t in unique:
        if t.all:
            if everyone is None:
                everyone = _living(db)
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

    def __init__(self, db: Sql, statuses: Sequence[str]) -> None:
        qualifying, params = in_list("m.status", statuses)
        sql = (
            "SELECT c.id, m.product_slug FROM suppressions s"
            " JOIN customers c ON c.email_key = s.email_key AND c.deleted_at IS NULL"
            f" LEFT OUTER JOIN memberships m ON m.customer_id = c.id AND {qualifying}"
        )
        self.ids: set[str] = set()
        self.by_product: dict[str, set[str]] = defaultdict(set)
        for cid, slug in db.rows(sql, params):
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
