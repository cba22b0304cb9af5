"""Writers keep the kept audience histograms current (store/audience.py keeps them for plans).

Every transaction that writes memberships opens a `MembershipWrite` before its first write and
closes it after its last. Opening moves `memberships_generation` on, which also takes the
store's write lock (SQLite) or the generation's row lock (PostgreSQL): writers of memberships
run one at a time from there, so what a write reads of the memberships it is about to change is
what it changes. When the write names its customers and they are few (`FEW`), closing adjusts
every histogram that was current — each changed customer's old product set counted once less,
its new set once more — and moves that histogram to the new generation; the next plan reads it
instead of counting every membership again (0.5 s at 1.5M memberships). An import (`recount`)
counts every current histogram again at its end, in its transaction — and the one for the
qualifying statuses it is given, so the first plan after a store's first import finds one: a
nightly sync adds those seconds to itself rather than to the next pull request's plan. A write
naming more customers than `FEW` counts them again too. A product's removal takes the product
out of every set of every current histogram (a customer who had it alone leaves; sets that
become equal merge): its memberships are gone, and nobody else's changed.

A histogram only ever claims the generation its rows were adjusted to: anything unexpected (a
set it does not have to take a customer from) leaves it at its old generation, where the next
plan counts it again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence

from sqlalchemy import Connection

from commsync.store.audience import (
    KEY_LIMIT,
    count_histogram,
    histogram_writes,
    products_key,
    statuses_key,
)
from commsync.store.plainsql import driver_sql, in_list
from commsync.store.sqlutil import ConnectionSql

FEW = 50_000  # customers; a write naming more counts the kept histograms again

_BUMP = (
    "UPDATE commsync_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS VARCHAR(32))"
    " WHERE key = 'memberships_generation' RETURNING value"
)


class MembershipWrite:
    """One transaction's write to memberships: of `customers`, or (None) anyone's, counted
    again at the end (`recount`, plus a histogram for `statuses` if none is kept), or all of one
    product's (`product_removed`)."""

    def __init__(
        self,
        conn: Connection,
        customers: Collection[str] | None,
        *,
        recount: bool = False,
        statuses: Sequence[str] = (),
        product_removed: str | None = None,
    ) -> None:
        self.conn = conn
        self.db = ConnectionSql(conn)
        self.pg = self.db.pg
        self.generation = int(conn.exec_driver_sql(_BUMP).scalar_one())
        self.customers = sorted(set(customers)) if customers is not None else []
        self.recount = recount or (customers is not None and len(self.customers) > FEW)
        self.product_removed = product_removed
        current = "SELECT statuses FROM audience_histogram_keys WHERE generation = ?"
        self.keys = [str(k) for (k,) in self.db.rows(current, [self.generation - 1])]
        if self.recount and statuses:
            wanted = statuses_key(statuses)
            if wanted not in self.keys and len(wanted) <= KEY_LIMIT:
                self.keys.append(wanted)
        adjusting = self.keys and not self.recount and product_removed is None
        self.before = self._memberships() if adjusting else {}

    def _run(self, sql: str, params: list[object]) -> int:
        return int(self.conn.exec_driver_sql(driver_sql(sql, self.pg), tuple(params)).rowcount)

    def _memberships(self) -> dict[str, list[tuple[str, str]]]:
        """The (product, status) pairs of the write's customers."""
        found: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for i in range(0, len(self.customers), 500):
            chosen, params = in_list("customer_id", self.customers[i : i + 500])
            sql = f"SELECT customer_id, product_slug, status FROM memberships WHERE {chosen}"
            for cid, slug, status in self.db.rows(sql, params):
                found[str(cid)].append((str(slug), str(status)))
        return found

    def done(self) -> None:
        """After the write's last statement, in its transaction: adjust what was current."""
        if self.recount:
            for key in self.keys:
                self._count(key)
            return
        if self.product_removed is not None:
            for key in self.keys:
                self._without(key, self.product_removed)
            return
        if not self.keys:
            return
        after = self._memberships()
        for key in self.keys:
            statuses = set(key.split(","))
            changes: Counter[str] = Counter()
            for cid in self.customers:
                old = {p for p, s in self.before.get(cid, ()) if s in statuses}
                new = {p for p, s in after.get(cid, ()) if s in statuses}
                if old != new:
                    if old:
                        changes[products_key(old)] -= 1
                    if new:
                        changes[products_key(new)] += 1
            if all(self._adjust(key, products, n) for products, n in changes.items() if n):
                self._move_on(key)

    def _count(self, key: str) -> None:
        self._replace(key, count_histogram(self.db, key.split(",")))

    def _without(self, key: str, slug: str) -> None:
        """The histogram less one product: each set that had it counted as the set without."""
        merged: Counter[str] = Counter()
        kept = "SELECT products, customers FROM audience_histograms WHERE statuses = ?"
        for products, n in self.db.rows(kept, [key]):
            rest = [p for p in str(products).split(" ") if p != slug]
            if rest:
                merged[" ".join(rest)] += int(n)  # still in sorted order
        self._replace(key, sorted(merged.items()))

    def _replace(self, key: str, rows: list[tuple[str, int]]) -> None:
        if not rows:
            # no qualifying membership left: nothing to keep (the next plan sees so)
            self._run("DELETE FROM audience_histograms WHERE statuses = ?", [key])
            self._run("DELETE FROM audience_histogram_keys WHERE statuses = ?", [key])
            return
        for sql, params in histogram_writes(key, rows, self.generation, self.pg):
            self.conn.exec_driver_sql(driver_sql(sql, self.pg), params)

    def _move_on(self, key: str) -> None:
        self._run(
            "UPDATE audience_histogram_keys SET generation = ? WHERE statuses = ? AND generation = ?",
            [self.generation, key, self.generation - 1],
        )

    def _adjust(self, key: str, products: str, n: int) -> bool:
        where = "statuses = ? AND products = ?"
        if n < 0:
            taken = self._run(
                f"UPDATE audience_histograms SET customers = customers - ? WHERE {where}"
                " AND customers >= ?",
                [-n, key, products, -n],
            )
            self._run(
                f"DELETE FROM audience_histograms WHERE {where} AND customers = 0", [key, products]
            )
            return taken == 1
        if not self._run(
            f"UPDATE audience_histograms SET customers = customers + ? WHERE {where}",
            [n, key, products],
        ):
            self._run(
                "INSERT INTO audience_histograms (statuses, products, customers) VALUES (?, ?, ?)",
                [key, products, n],
            )
        return True
