"""Use cases: `validate` and `plan` (the planner joined with the repository and the store)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from commsync.api.context import Context
from commsync.config.settings import Settings
from commsync.diagnostics import Diagnostic, has_errors, sort_diagnostics
from commsync.errors import ValidationFailed
from commsync.model import SAMPLE_CUSTOMER, Catalog
from commsync.plan.codec import dumps
from commsync.plan.diff import audience_requests, build_plan
from commsync.plan.model import Action, EmailAction, NoticeAction, Plan, Verb
from commsync.render.sandbox import environment, substitute
from commsync.repo.git import changed_since, git_prefix
from commsync.repo.loader import LoadedRepository, resolve_desired
from commsync.store.roles import ParsedFiles, PlanSource


@dataclass(frozen=True, slots=True)
class ValidationReport:
    diagnostics: tuple[Diagnostic, ...]
    broadcasts: int
    emails: int
    store_checked: bool
    path_prefix: str = ""  # the project's directory inside its git work tree (for annotations)

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def validate(
    ctx: Context, *, ref: str | None, use_store: bool, git_paths: bool
) -> ValidationReport:
    """Every diagnostic of the repository; customer and product refs are checked in the store."""
    loaded = ctx.load(ref)
    diags = list(loaded.diagnostics)
    checked = False
    if use_store and loaded.settings is not None:
        _, problems = resolve_desired(loaded, ctx.references(loaded.settings))
        diags += problems
        checked = True
    prefix = git_prefix(ctx.project.root) if git_paths else ""
    return ValidationReport(
        tuple(sort_diagnostics(diags)), len(loaded.broadcasts), len(loaded.emails), checked, prefix
    )


@dataclass(frozen=True, slots=True)
class PlanResult:
    plan: Plan
    warnings: tuple[Diagnostic, ...]
    settings: Settings
    changed: frozenset[str] | None = None  # with --changed-since: the files that changed


def plan_against(loaded: LoadedRepository, store: PlanSource, now: datetime) -> PlanResult:
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
    outcome = build_plan(
        desired, loaded.catalog, live, audiences, now, sampler(loaded.catalog, settings)
    )
    warnings = tuple(d for d in loaded.diagnostics if d.severity == "warning")
    if outcome.errors:
        raise ValidationFailed([*warnings, *outcome.errors])
    return PlanResult(outcome.plan, warnings, settings)


def keep_parsed(loaded: LoadedRepository, store: ParsedFiles) -> None:
    """Once a run has done what it was asked (never one that reports an error: bad input
    changes nothing in the store), the broadcast files it parsed are kept for the next plan."""
    if loaded.parsed:
        store.keep_parsed_files(dict(loaded.parsed))


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
    values: dict[str, object]
    if isinstance(action, NoticeAction | EmailAction):
        if action.spec is None or action.action in (Verb.RETRACT, Verb.EXPIRED):
            return None
        subject, values = action.spec.subject, {**SAMPLE_CUSTOMER, **_PLAN_SAMPLE}
    else:
        if action.install is None or action.action == Verb.DELETE:
            return None
        fields = action.install.fields
        event = catalog.events.get(fields.event)
        subject = fields.subject
        values = {**(event.mock_payload() if event else {}), **_PLAN_SAMPLE}
    values = {**values, **settings.network_context}
    fast = substitute(subject, values)  # most subjects: no template to compile (2,000 files: 1 s)
    if fast is not None:
        return fast
    try:
        template = environment(False, settings.limits).from_string(subject)
        return template.render(values)
    except Exception:  # the plan still shows everything else; validate reports template errors
        return None


def sampler(catalog: Catalog, settings: Settings) -> Callable[[Action], str | None]:
    """Each action's subject rendered for a sample recipient (no personal data)."""
    return lambda action: _sample_subject(action, catalog, settings)


def make_plan(
    ctx: Context,
    *,
    ref: str | None,
    changed_since: str | None = None,
    out: Path | None = None,
    now: datetime | None = None,
) -> PlanResult:
    """Load, validate, resolve and diff; with `out`, save the plan; raises ValidationFailed."""
    changed = _changed_files(ctx, changed_since, ref) if changed_since is not None else None
    loaded = ctx.valid(ref, cached=True)
    assert loaded.settings is not None
    store = ctx.planning(loaded.settings)
    result = plan_against(loaded, store, now or datetime.now(UTC))
    if out is not None:
        save_plan(result.plan, out)
    keep_parsed(loaded, store)
    return replace(result, changed=changed)


def _changed_files(ctx: Context, since: str, ref: str | None) -> frozenset[str]:
    return changed_since(ctx.project.root, since, ref)


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan document (no personal data: audiences are counts), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(plan), encoding="utf-8")
    tmp.replace(path)
