"""Use case: `apply` — converge the store on the repository and send what the plan sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from commsync.api.context import Context
from commsync.api.planning import keep_parsed, plan_against
from commsync.apply.executor import ApplyListener, ApplyReport
from commsync.apply.planfile import read_plan
from commsync.apply.run import ApplyRun, Confirm, run_apply
from commsync.config.files import DirectoryTree
from commsync.config.settings import Settings
from commsync.delivery.broadcast import BroadcastSender
from commsync.errors import ConfigError, UsageError, ValidationFailed
from commsync.model import DeliveryMode
from commsync.plan.model import Plan
from commsync.repo.loader import LoadedRepository, load_layout


@dataclass(frozen=True, slots=True)
class ApplyRequest:
    plan_file: Path | None = None
    ref: str | None = None
    yes: bool = False
    allow_dirty: bool = False
    resend_uncertain: bool = False
    retry_failed: bool = False


def _saved(ctx: Context, request: ApplyRequest) -> tuple[Settings, Plan, str | None]:
    """A saved plan is applied as it is, with the working tree's settings and layout."""
    if request.ref or request.resend_uncertain or request.retry_failed:
        raise UsageError(
            "a saved plan is applied as it is: --ref, --resend-uncertain and --retry-failed need a new plan"
        )
    assert request.plan_file is not None
    layout, diags = load_layout(DirectoryTree(ctx.project.root))
    if diags:
        raise ValidationFailed(diags)
    return ctx.settings(), read_plan(request.plan_file), layout


def _current(ctx: Context, request: ApplyRequest) -> LoadedRepository:
    """The repository to plan now; uncommitted managed files refuse unless --allow-dirty."""
    loaded = ctx.valid(request.ref, cached=True)
    if request.ref is None and not request.allow_dirty and loaded.uncommitted:
        raise ConfigError(
            "uncommitted changes under managed paths: "
            + ", ".join(loaded.uncommitted[:10])
            + "; commit them, apply a commit with --ref, or pass --allow-dirty"
        )
    return loaded


def apply(
    ctx: Context,
    request: ApplyRequest,
    *,
    confirm: Confirm | None = None,
    listener: ApplyListener | None = None,
    now: datetime | None = None,
) -> ApplyReport:
    """Apply a saved plan, or plan now and apply after confirmation (or --yes)."""
    when = now or datetime.now(UTC)
    plan: Plan | None = None
    if request.plan_file is not None:
        settings, plan, layout = _saved(ctx, request)
    else:
        loaded = _current(ctx, request)
        assert loaded.settings is not None
        settings, layout = loaded.settings, loaded.layout
    store = ctx.store(settings)

    def plan_now() -> Plan:  # called under the apply lock
        return plan_against(loaded, store, when).plan

    run = ApplyRun(
        plan=plan if plan is not None else plan_now,
        statuses=settings.membership_statuses,
        now=when,
        yes=request.yes,
        resend_uncertain=request.resend_uncertain,
        retry_failed=request.retry_failed,
        by_workers=settings.mail.delivery == DeliveryMode.WORKERS,
    )
    sender = BroadcastSender(store, settings, layout, ctx.project.env, listener)
    report = run_apply(store, run, sender, confirm=confirm, listener=listener)
    if plan is None and report.ok:
        keep_parsed(loaded, store)
    return report
