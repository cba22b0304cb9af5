"""The planner: a pure function of desired state, catalog, live snapshot, audiences and `now`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from commsync.diagnostics import Diagnostic, sort_diagnostics
from commsync.model import Audience, Catalog, DesiredState, LiveSnapshot, Provenance, Targets
from commsync.plan.broadcasts import audience_requests, plan_broadcasts
from commsync.plan.codec import with_id
from commsync.plan.model import Action, Plan, SystemEmailAction
from commsync.plan.system_emails import plan_system_emails

__all__ = ["PlanOutcome", "audience_requests", "build_plan"]


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """The plan, and the errors that forbid applying it (e.g. the duplicate-send guard)."""

    plan: Plan
    errors: tuple[Diagnostic, ...]


def _with_provenance(action: Action, live: LiveSnapshot) -> Action:
    """The action, with where its live object was last applied from (None for new objects)."""
    provenance: Provenance | None
    if isinstance(action, SystemEmailAction):
        email = live.system_emails.get(action.name)
        provenance = email.provenance if email else None
    else:
        broadcast = live.broadcasts.get(action.name)
        provenance = broadcast.provenance if broadcast else None
    if provenance is None or (provenance.commit is None and provenance.applied_at is None):
        return action
    return replace(action, last_applied=provenance)


def build_plan(
    desired: DesiredState,
    catalog: Catalog,
    live: LiveSnapshot,
    audiences: Mapping[Targets, Audience],
    now: datetime,
    sample: Callable[[Action], str | None] | None = None,
) -> PlanOutcome:
    """Diff the desired state against the live snapshot. Output is sorted by address. With
    `sample`, each action carries its subject rendered for a sample recipient (before the id is
    taken, which is a digest of everything the plan shows)."""
    broadcasts = plan_broadcasts(desired.broadcasts, live, audiences, now)
    emails, available = plan_system_emails(desired, catalog, live)
    actions = sorted(
        (_with_provenance(a, live) for a in [*broadcasts.actions, *emails.actions]),
        key=lambda a: a.address,
    )
    if sample is not None:
        actions = [replace(a, sample_subject=sample(a)) for a in actions]
    warnings = sorted(
        [*broadcasts.warnings, *emails.warnings], key=lambda w: (w.address, str(w.code))
    )
    plan = Plan(
        plan_id="",
        created_at=now,
        store_id=live.store_id,
        source=desired.source,
        actions=tuple(actions),
        warnings=tuple(warnings),
        available_imports=available,
    )
    errors = sort_diagnostics([*broadcasts.errors, *emails.errors])
    return PlanOutcome(with_id(plan), tuple(errors))
