"""Use cases shared by the CLI and the HTTP app. They return data and raise CommsyncError."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from commsync.diagnostics import Diagnostic, has_errors, sort_diagnostics
from commsync.errors import ConfigError, ValidationFailed
from commsync.model import SAMPLE_CUSTOMER, Catalog
from commsync.plan.diff import audience_requests, build_plan
from commsync.plan.model import Action, Plan, plan_to_json, with_id
from commsync.render.sandbox import environment
from commsync.repo.loader import SETTINGS_FILE, LoadedRepository, load_repository, resolve_desired
from commsync.repo.source import (
    DirectoryTree,
    FileTree,
    GitTree,
    changed_since,
    inspect_worktree,
)
from commsync.repo.yamlpos import load_yaml
from commsync.settings import Settings, build_settings, settings_diagnostics
from commsync.store.base import Store
from commsync.store.sql import open_store


@dataclass(frozen=True, slots=True)
class Project:
    """Where the operator's repository is, and what overrides its settings."""

    root: Path
    store_url: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def open_tree(project: Project, ref: str | None) -> FileTree:
    return GitTree(project.root, ref) if ref else DirectoryTree(project.root)


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


def load(project: Project, ref: str | None = None) -> LoadedRepository:
    """The repository at `ref`, or the working tree (with its HEAD commit as provenance)."""
    tree = open_tree(project, ref)
    loaded = load_repository(tree, project.root, project.env, project.store_url)
    if ref is None:
        catalogs = loaded.settings.catalogs if loaded.settings else ()
        info, dirty = inspect_worktree(project.root, tuple(catalogs))
        loaded = replace(loaded, source=info, uncommitted=tuple(dirty))
    return loaded


def plan_against(loaded: LoadedRepository, store: Store, now: datetime) -> PlanResult:
    """Resolve and diff against an open store; raises ValidationFailed with every error found."""
    if not loaded.ok:
        raise ValidationFailed(loaded.diagnostics)
    settings = loaded.settings
    assert settings is not None
    desired, problems = resolve_desired(loaded, store)
    if desired is None:
        raise ValidationFailed([*loaded.diagnostics, *problems])
    live = store.snapshot()
    audiences = store.count_audiences(
        audience_requests(desired, live), settings.membership_statuses
    )
    outcome = build_plan(desired, loaded.catalog, live, audiences, now)
    warnings = tuple(d for d in loaded.diagnostics if d.severity == "warning")
    if outcome.errors:
        raise ValidationFailed([*warnings, *outcome.errors])
    plan = with_samples(outcome.plan, loaded.catalog, settings)
    return PlanResult(plan, warnings, settings)


# Plans are shared in pull requests and saved to files: their samples use an obviously made-up
# recipient, never one that could be a real customer.
_PLAN_SAMPLE = {
    "customer_id": "1042",
    "customer_name": "Sam Sample",
    "customer_first_name": "Sam",
    "customer_last_name": "Sample",
    "customer_username": "sam.sample",
    "customer_user_email": "sam.sample@example.com",
}


def _sample_subject(action: Action, catalog: Catalog, settings: Settings) -> str | None:
    """The action's new subject rendered for sample values; None when there is none to show."""
    desired = action.desired or {}
    if action.kind == "system_email":
        fields = desired.get("fields")
        if not isinstance(fields, dict) or action.action == "delete":
            return None
        subject, event = fields.get("subject"), catalog.events.get(str(fields.get("event")))
        values: dict[str, object] = {**(event.mock_payload() if event else {}), **_PLAN_SAMPLE}
    else:
        spec = desired.get("spec")
        if not isinstance(spec, dict) or action.action in ("retract", "expired"):
            return None
        subject, values = spec.get("subject"), {**SAMPLE_CUSTOMER, **_PLAN_SAMPLE}
    if not isinstance(subject, str):
        return None
    try:
        return environment().from_string(subject).render({**values, **settings.network_context})
    except Exception:  # the plan still shows everything else; validate reports template errors
        return None


def with_samples(plan: Plan, catalog: Catalog, settings: Settings) -> Plan:
    """The plan with each action's subject rendered for a sample recipient (no personal data)."""
    actions = tuple(
        replace(a, sample_subject=_sample_subject(a, catalog, settings)) for a in plan.actions
    )
    return with_id(replace(plan, actions=actions))


def make_plan(
    project: Project, *, ref: str | None = None, now: datetime | None = None
) -> PlanResult:
    """Load, validate, resolve and diff; raises ValidationFailed with every error found."""
    loaded = load(project, ref)
    if not loaded.ok or loaded.settings is None:
        raise ValidationFailed(loaded.diagnostics)
    with store_session(loaded.settings.store_url) as store:
        return plan_against(loaded, store, now or datetime.now(UTC))


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan document (no personal data: audiences are counts)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(plan_to_json(plan), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    tmp.replace(path)


def changed_files(project: Project, since: str, ref: str | None = None) -> frozenset[str]:
    """Files changed since `since` (to `ref`, or to the working tree): `plan --changed-since`."""
    return changed_since(project.root, since, ref)
