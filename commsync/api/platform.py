"""Use cases: the platform's data (customers, products, memberships) from files or the API, and
`init`. File rows and API rows go through the same checks (`repo/records.py`)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from commsync.api.context import Context
from commsync.api.project import Project
from commsync.diagnostics import Diagnostic
from commsync.errors import ConfigError, InvalidInput, NotFound, ValidationFailed
from commsync.model import (
    CustomerRecord,
    ImportCounts,
    MembershipRecord,
    ProductRecord,
    SuppressionRecord,
)
from commsync.model.limits import Limits
from commsync.repo.records import (
    CUSTOMERS,
    MEMBERSHIPS,
    PRODUCTS,
    Layout,
    parse_records,
    records_of,
    reference_problems,
)
from commsync.repo.scaffold import DEMO_DATA, InitResult, create_repository
from commsync.store.roles import Store

RecordKind = Literal["customers", "products", "memberships"]
R = TypeVar("R", CustomerRecord, ProductRecord, MembershipRecord, SuppressionRecord)


def _unknown_references(
    store: Store, rows: Sequence[tuple[int, MembershipRecord]]
) -> list[tuple[int, str]]:
    customers = store.existing_customer_ids({r.customer_id for _, r in rows})
    return reference_problems(rows, customers, store.product_slugs())


def parse_file(file: Path, display: str, layout: Layout[R], limits: Limits) -> list[tuple[int, R]]:
    """Every row of a data file, read a line at a time; any bad row refuses the whole file."""
    try:
        with file.open("rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise ConfigError(f"cannot read {display}: not a regular file")
            rows, diags = parse_records(display, stream, layout, limits)
    except OSError as exc:
        raise ConfigError(f"cannot read {display}: {exc.strerror or exc}") from exc
    if diags:
        raise ValidationFailed(diags)
    return rows


def import_records(ctx: Context, kind: RecordKind, file: Path, display: str) -> ImportCounts:
    """Upsert a CSV/JSONL file of customers, products or memberships; all rows or none."""
    settings = ctx.settings()
    store, limits = ctx.store(settings), settings.limits
    if kind == "customers":
        customers = parse_file(file, display, CUSTOMERS, limits)
        return store.upsert_customers([r for _, r in customers])
    if kind == "products":
        products = parse_file(file, display, PRODUCTS, limits)
        return store.upsert_products([r for _, r in products])
    rows = parse_file(file, display, MEMBERSHIPS, limits)
    problems = _unknown_references(store, rows)
    if problems:
        raise ValidationFailed([Diagnostic(display, line, 0, msg) for line, msg in problems])
    return store.upsert_memberships([r for _, r in rows])


def _one(source: str, row: Mapping[str, object], layout: Layout[R]) -> R:
    records, problems = records_of(source, [row], layout)
    if problems:
        raise InvalidInput(problems)
    return records[0]


@dataclass(frozen=True, slots=True)
class Upserted:
    key: str
    created: bool


def put_customer(store: Store, customer_id: str, fields: Mapping[str, object]) -> Upserted:
    record = _one("customer", {**fields, "id": customer_id}, CUSTOMERS)
    return Upserted(record.id, store.upsert_customers([record]).inserted == 1)


def put_product(store: Store, slug: str, name: str) -> Upserted:
    record = _one("product", {"slug": slug, "name": name}, PRODUCTS)
    return Upserted(record.slug, store.upsert_products([record]).inserted == 1)


def put_memberships(store: Store, customer_id: str, rows: Sequence[Mapping[str, object]]) -> int:
    """The customer's memberships become exactly `rows`; returns how many there are."""
    if store.customer(customer_id) is None:
        raise NotFound("no such customer")
    given = [{**row, "customer_id": customer_id} for row in rows]
    records, problems = records_of("memberships", given, MEMBERSHIPS)
    problems += [m for _, m in _unknown_references(store, list(enumerate(records, start=1)))]
    if problems:
        raise InvalidInput(problems)
    store.replace_memberships(customer_id, records)
    return len(records)


@dataclass(frozen=True, slots=True)
class InitReport:
    result: InitResult
    imported: tuple[tuple[str, ImportCounts], ...]


def init_project(root: Path, *, demo: bool, env: Mapping[str, str] | None = None) -> InitReport:
    """Scaffold a repository; with `demo`, the example repository and a store seeded with its data."""
    result = create_repository(root, demo=demo)
    imported: list[tuple[str, ImportCounts]] = []
    if demo:
        ctx = Context(Project(root, env=dict(os.environ) if env is None else env))
        try:
            for kind, rel in DEMO_DATA:
                imported.append((kind, import_records(ctx, kind, root / rel, rel)))
        finally:
            ctx.close()
    return InitReport(result, tuple(imported))
