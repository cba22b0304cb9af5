"""Use cases: the platform's data (customers, products, memberships) from files or the API, and
`init`. File rows and API rows go through the same checks (`repo/records.py`)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

from commsync.api.context import Context
from commsync.api.project import Project
from commsync.diagnostics import Diagnostic
from commsync.errors import (
    CommsyncError,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    ValidationFailed,
)
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
    stream_records,
)
from commsync.repo.scaffold import DEMO_DATA, InitResult, create_repository
from commsync.store.roles import AllowRemoval, RowsRefused, Store

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
        with _open(file, display) as stream:
            rows, diags = parse_records(display, stream, layout, limits)
    except OSError as exc:
        raise ConfigError(f"cannot read {display}: {exc.strerror or exc}") from exc
    if diags:
        raise ValidationFailed(diags)
    return rows


def _open(file: Path, display: str) -> BinaryIO:
    stream = file.open("rb")
    if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
        stream.close()
        raise ConfigError(f"cannot read {display}: not a regular file")
    return stream


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """`--sync` (the file is the whole truth), the share of what exists it may remove, `--force`."""

    sync: bool = False
    max_remove: float = 0.10
    force: bool = False
    progress: Callable[[int], None] | None = None  # rows read so far


PLAIN_IMPORT = ImportOptions()
SYNCABLE: tuple[RecordKind, ...] = ("customers", "memberships")


def _removal_guard(kind: RecordKind, display: str, options: ImportOptions) -> AllowRemoval | None:
    if not options.sync:
        return None
    what = "customers marked deleted" if kind == "customers" else "memberships ended"

    def allow(removing: int, existing: int) -> None:
        if options.force or removing <= options.max_remove * existing:
            return
        raise CommsyncError(
            f"{display}: --sync would leave {removing:,} of {existing:,} {what} "
            f"({removing / existing:.0%}), more than --max-remove {options.max_remove:.0%}; "
            "nothing was written. Check that the file is the whole export, or pass --force"
        )

    return allow


def _all_or_nothing(
    rows: Iterator[tuple[int, R]], diags: list[Diagnostic]
) -> Iterator[tuple[int, R]]:
    """The reader's rows; once they are all read, any refused row refuses the file (raised while
    the store's transaction is open, so nothing is written)."""
    yield from rows
    if diags:
        raise ValidationFailed(diags)


def import_records(
    ctx: Context,
    kind: RecordKind,
    file: Path,
    display: str,
    options: ImportOptions = PLAIN_IMPORT,
) -> ImportCounts:
    """Upsert a CSV/JSONL file of customers, products or memberships, streamed in one
    transaction; all rows or none. With `options.sync`, what the file lacks is removed."""
    if options.sync and kind not in SYNCABLE:
        raise CommsyncError(f"--sync is for {' and '.join(SYNCABLE)} imports, not {kind}")
    settings = ctx.settings()
    store, limits = ctx.store(settings), settings.limits
    allow = _removal_guard(kind, display, options)
    statuses = settings.membership_statuses
    diags: list[Diagnostic] = []
    try:
        with _open(file, display) as stream:
            try:
                if kind == "customers":
                    rows = _all_or_nothing(
                        stream_records(display, stream, CUSTOMERS, limits, diags), diags
                    )
                    return store.import_customers(
                        rows, sync=allow, progress=options.progress, statuses=statuses
                    )
                if kind == "products":
                    products = _all_or_nothing(
                        stream_records(display, stream, PRODUCTS, limits, diags), diags
                    )
                    return store.import_products(products, progress=options.progress)
                memberships = _all_or_nothing(
                    stream_records(display, stream, MEMBERSHIPS, limits, diags), diags
                )
                return store.import_memberships(
                    memberships, sync=allow, progress=options.progress, statuses=statuses
                )
            except RowsRefused as exc:
                raise ValidationFailed(
                    [Diagnostic(display, line, 0, message) for line, message in exc.problems]
                ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {display}: {exc.strerror or exc}") from exc


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


def _most_active(
    rows: Sequence[Mapping[str, object]], statuses: Sequence[str]
) -> list[Mapping[str, object]]:
    """One row per product: a platform (Ultimate Multisite) may give a customer two memberships
    of one product; the one whose status counts for targeting wins — the first of
    `membership_statuses` — else the first given."""
    rank = {status: i for i, status in enumerate(statuses)}
    best: dict[object, Mapping[str, object]] = {}
    for row in rows:
        product = row.get("product")
        held = best.get(product)
        if held is None or rank.get(str(row.get("status")), len(rank)) < rank.get(
            str(held.get("status")), len(rank)
        ):
            best[product] = row
    return list(best.values())


def put_memberships(
    store: Store,
    customer_id: str,
    rows: Sequence[Mapping[str, object]],
    statuses: Sequence[str],
) -> int:
    """The customer's memberships become exactly `rows` (one per product: the most active of
    several); returns how many products they hold."""
    if store.customer(customer_id) is None:
        raise NotFound("no such customer")
    given = [{**row, "customer_id": customer_id} for row in rows]
    records, problems = records_of("memberships", _most_active(given, statuses), MEMBERSHIPS)
    problems += [m for _, m in _unknown_references(store, list(enumerate(records, start=1)))]
    if problems:
        raise InvalidInput(problems)
    store.replace_memberships(customer_id, records)
    return len(records)


def delete_customer(store: Store, customer_id: str) -> None:
    """The platform deleted the customer: marked deleted (as by `customers import --sync`),
    their memberships end and they leave every audience; a later write brings them back."""
    if not store.delete_customer(customer_id):
        raise NotFound("no such customer")


def delete_product(store: Store, slug: str) -> None:
    """The platform deleted a product: its memberships end and it is gone — refused while a
    broadcast in the store targets it (the repository's files would no longer plan)."""
    targeting = store.broadcasts_targeting_product(slug)
    if targeting:
        shown = ", ".join(targeting[:5]) + (" …" if len(targeting) > 5 else "")
        raise Conflict(f"broadcasts target product {slug!r}: {shown}; change them first")
    if not store.delete_product(slug):
        raise NotFound("no such product")


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
