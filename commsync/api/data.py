"""Use cases: platform data imports and `init`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from commsync.api.core import Project, load_settings, store_session
from commsync.diagnostics import Diagnostic
from commsync.errors import ConfigError, ValidationFailed
from commsync.model import (
    CustomerRecord,
    ImportCounts,
    MembershipRecord,
    ProductRecord,
)
from commsync.records import CUSTOMERS, MEMBERSHIPS, PRODUCTS, Layout, parse_records
from commsync.scaffold import DEMO_DATA, InitResult, create_repository
from commsync.store.base import Store

RecordKind = Literal["customers", "products", "memberships"]
R = TypeVar("R", CustomerRecord, ProductRecord, MembershipRecord)


# -- platform data -----------------------------------------------------------------------------


def _reference_problems(
    path: str, rows: list[tuple[int, MembershipRecord]], store: Store
) -> list[Diagnostic]:
    known_ids = store.existing_customer_ids({r.customer_id for _, r in rows})
    slugs = store.product_slugs()
    out = []
    for line, r in rows:
        if r.customer_id not in known_ids:
            out.append(
                Diagnostic(
                    path, line, 0, f"unknown customer {r.customer_id!r} (import customers first)"
                )
            )
        if r.product not in slugs:
            out.append(
                Diagnostic(path, line, 0, f"unknown product {r.product!r} (import products first)")
            )
    return out


def _parse_file(file: Path, display: str, layout: Layout[R]) -> list[tuple[int, R]]:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {display}: {exc.strerror}") from exc
    rows, diags = parse_records(display, data, layout)
    if diags:
        raise ValidationFailed(diags)
    return rows


def import_records(
    project: Project, kind: RecordKind, file: Path, display: str | None = None
) -> ImportCounts:
    """Upsert a CSV/JSONL file of customers, products or memberships; all rows or none."""
    name = display or str(file)
    settings = load_settings(project)
    with store_session(settings.store_url) as store:
        if kind == "customers":
            return store.upsert_customers([r for _, r in _parse_file(file, name, CUSTOMERS)])
        if kind == "products":
            return store.upsert_products([r for _, r in _parse_file(file, name, PRODUCTS)])
        rows = _parse_file(file, name, MEMBERSHIPS)
        problems = _reference_problems(name, rows, store)
        if problems:
            raise ValidationFailed(problems)
        return store.upsert_memberships([r for _, r in rows])


# -- init --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitReport:
    result: InitResult
    imported: tuple[tuple[str, ImportCounts], ...]


def init_project(root: Path, *, demo: bool, env: Mapping[str, str] | None = None) -> InitReport:
    """Scaffold a repository; with `demo`, the example repository and a store seeded with its data."""
    result = create_repository(root, demo=demo)
    imported: list[tuple[str, ImportCounts]] = []
    if demo:
        project = Project(root, env=dict(os.environ) if env is None else env)
        for kind, rel in DEMO_DATA:
            imported.append((kind, import_records(project, kind, root / rel, rel)))
    return InitReport(result, tuple(imported))
