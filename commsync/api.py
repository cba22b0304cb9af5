"""Use cases shared by the CLI and the HTTP app. They return data and raise CommsyncError."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from commsync.diagnostics import Diagnostic, has_errors, sort_diagnostics
from commsync.errors import ConfigError, ValidationFailed
from commsync.model import (
    CustomerRecord,
    DefaultEmail,
    EmailStats,
    ImportCounts,
    LiveSystemEmail,
    MembershipRecord,
    ProductRecord,
)
from commsync.plan.diff import audience_requests, build_plan
from commsync.plan.model import Plan, plan_to_json
from commsync.records import CUSTOMERS, MEMBERSHIPS, PRODUCTS, Layout, parse_records
from commsync.repo.loader import SETTINGS_FILE, LoadedRepository, load_repository, resolve_desired
from commsync.repo.source import DirectoryTree, FileTree, GitTree
from commsync.repo.yamlpos import load_yaml
from commsync.scaffold import DEMO_DATA, InitResult, create_repository
from commsync.settings import Settings, build_settings, settings_diagnostics
from commsync.store.base import Store
from commsync.store.sql import open_store

RecordKind = Literal["customers", "products", "memberships"]
R = TypeVar("R", CustomerRecord, ProductRecord, MembershipRecord)


@dataclass(frozen=True, slots=True)
class Project:
    """Where the operator's repository is, and what overrides its settings."""

    root: Path
    store_url: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def open_tree(project: Project, ref: str | None) -> FileTree:
    return GitTree(project.root, ref) if ref else DirectoryTree(project.root)


def load(project: Project, ref: str | None = None) -> LoadedRepository:
    return load_repository(open_tree(project, ref), project.root, project.env, project.store_url)


def load_settings(project: Project) -> Settings:
    """Settings of the working tree's commsync.yaml (for commands that read no other file)."""
    data = DirectoryTree(project.root).read(SETTINGS_FILE)
    if data is None:
        raise ConfigError(
            f"no {SETTINGS_FILE} in {project.root}; run `commsync init` to create a repository"
        )
    doc, diags = load_yaml(SETTINGS_FILE, data)
    if doc is not None:
        diags += settings_diagnostics(doc)
    if doc is None or has_errors(diags):
        raise ValidationFailed(diags)
    return build_settings(doc, project.root, project.env, project.store_url)


@contextmanager
def store_session(url: str) -> Iterator[Store]:
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


# -- validate ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidationReport:
    diagnostics: tuple[Diagnostic, ...]
    broadcasts: int
    emails: int
    store_checked: bool

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def validate(
    project: Project, *, ref: str | None = None, use_store: bool = True
) -> ValidationReport:
    """Every diagnostic of the repository; customer and product refs are checked in the store."""
    loaded = load(project, ref)
    diags = list(loaded.diagnostics)
    checked = False
    if use_store and loaded.settings is not None:
        with store_session(loaded.settings.store_url) as store:
            _, problems = resolve_desired(loaded, store)
            diags += problems
            checked = True
    return ValidationReport(
        tuple(sort_diagnostics(diags)), len(loaded.broadcasts), len(loaded.emails), checked
    )


# -- plan --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanResult:
    plan: Plan
    warnings: tuple[Diagnostic, ...]
    settings: Settings


def make_plan(
    project: Project, *, ref: str | None = None, now: datetime | None = None
) -> PlanResult:
    """Load, validate, resolve and diff; raises ValidationFailed with every error found."""
    loaded = load(project, ref)
    if not loaded.ok:
        raise ValidationFailed(loaded.diagnostics)
    settings = loaded.settings
    assert settings is not None
    with store_session(settings.store_url) as store:
        desired, problems = resolve_desired(loaded, store)
        if desired is None:
            raise ValidationFailed([*loaded.diagnostics, *problems])
        live = store.snapshot()
        audiences = store.count_audiences(
            audience_requests(desired, live), settings.membership_statuses
        )
    outcome = build_plan(desired, loaded.catalog, live, audiences, now or datetime.now(UTC))
    warnings = tuple(d for d in loaded.diagnostics if d.severity == "warning")
    if outcome.errors:
        raise ValidationFailed([*warnings, *outcome.errors])
    return PlanResult(outcome.plan, warnings, settings)


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan document (no personal data: audiences are counts)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(plan_to_json(plan), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    tmp.replace(path)


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


# -- system email inventory --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailRow:
    """One line of `commsync emails list`: a registered default or an installed custom email."""

    slug: str
    event: str
    target: str
    source: str
    critical: bool
    default_version: int | None
    installed: bool
    installed_version: int | None
    customised: tuple[str, ...]
    file: str | None
    active: bool | None
    state: str
    sent: int = 0
    failed: int = 0
    last_sent_at: datetime | None = None


def _state(default: DefaultEmail | None, live: LiveSystemEmail | None, wanted: bool) -> str:
    if live is None:
        return "not applied yet" if wanted else "importable"
    if default is None:
        return "custom" if live.base_version is None else "unregistered"
    if live.base_version is not None and default.version > live.base_version:
        return "newer default" if live.overrides else "upgrade pending"
    return "customised" if live.overrides else "default"


def _wanted_by_imports(default: DefaultEmail | None, imports: str) -> bool:
    return default is not None and (
        imports == "all" or (imports == "critical" and default.critical)
    )


def list_emails(project: Project) -> list[EmailRow]:
    """Registered defaults × installed × customised × importable, with delivery stats."""
    loaded = load(project)
    if loaded.settings is None:
        raise ValidationFailed(loaded.diagnostics)
    with store_session(loaded.settings.store_url) as store:
        live = store.snapshot().system_emails
    files = {e.slug: e for e in loaded.emails}
    rows = []
    for slug in sorted(set(loaded.catalog.defaults) | set(live) | set(files)):
        default, installed, file = (
            loaded.catalog.defaults.get(slug),
            live.get(slug),
            files.get(slug),
        )
        fields = (
            installed.fields
            if installed
            else default.fields
            if default
            else file.custom
            if file
            else None
        )
        assert fields is not None
        stats = installed.stats if installed else EmailStats()
        wanted = file is not None or _wanted_by_imports(default, loaded.settings.imports)
        rows.append(
            EmailRow(
                slug=slug,
                event=fields.event,
                target=fields.target,
                source=default.source if default else "custom",
                critical=bool(default and default.critical),
                default_version=default.version if default else None,
                installed=installed is not None,
                installed_version=installed.base_version if installed else None,
                customised=installed.overrides if installed else (),
                file=file.origin.path if file else None,
                active=installed.fields.active if installed else None,
                state=_state(default, installed, wanted),
                sent=stats.sent,
                failed=stats.failed,
                last_sent_at=stats.last_sent_at,
            )
        )
    return rows


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
