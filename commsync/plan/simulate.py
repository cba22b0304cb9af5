"""What a plan does to the live model, computed without a store.

Apply carries the same effects into the store; this pure version lets the planner be tested for
convergence (apply, then re-plan → no changes) and lets tests build live states quickly.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from commsync.model import (
    BroadcastSpec,
    EmailStats,
    JsonObject,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    Provenance,
    SendProgress,
    SourceInfo,
    SystemEmailFields,
)
from commsync.plan.model import Action, Plan


def _provenance(action: Action, source: SourceInfo, now: datetime) -> Provenance:
    return Provenance(path=action.path, commit=source.commit, author=source.author, applied_at=now)


def live_system_email(
    slug: str, payload: JsonObject, stats: EmailStats, provenance: Provenance
) -> LiveSystemEmail:
    fields = payload["fields"]
    base = payload["base_fields"]
    overrides = payload["overrides"]
    version = payload["base_version"]
    path = payload["managed_path"]
    assert isinstance(fields, dict) and isinstance(overrides, list)
    parsed = SystemEmailFields.from_json(fields)
    return LiveSystemEmail(
        slug=slug,
        fields=parsed,
        applied_hash=parsed.fields_hash(),
        overrides=tuple(str(o) for o in overrides),
        base_version=int(version) if isinstance(version, int) else None,
        base_fields=SystemEmailFields.from_json(base) if isinstance(base, dict) else None,
        stats=stats,
        provenance=replace(provenance, path=str(path) if isinstance(path, str) else None),
    )


def _spec(action: Action) -> BroadcastSpec:
    assert action.desired is not None
    spec = action.desired["spec"]
    assert isinstance(spec, dict)
    return BroadcastSpec.from_json(spec)


def _broadcast(
    action: Action, current: LiveBroadcast | None, source: SourceInfo, now: datetime
) -> LiveBroadcast | None:
    if action.action in ("create", "update"):
        spec = _spec(action)
        return LiveBroadcast(
            action.name, spec, "active", spec.spec_hash(), True, _provenance(action, source, now)
        )
    if action.action == "retract" and current is not None:
        return replace(current, status="retracted")
    if action.action == "send":
        spec = _spec(action)
        n = action.audience.total if action.audience else 0
        progress = SendProgress(total=n, sent=n)
        return LiveBroadcast(
            action.name,
            spec,
            "sent",
            spec.spec_hash(),
            True,
            _provenance(action, source, now),
            progress,
        )
    if action.action == "resume" and current is not None and current.progress is not None:
        p = current.progress
        return replace(
            current, status="sent", progress=replace(p, queued=0, sent=p.sent + p.queued)
        )
    return current


def apply_effects(plan: Plan, live: LiveSnapshot, now: datetime) -> LiveSnapshot:
    """The live snapshot after every change of `plan` succeeded (every recipient delivered)."""
    broadcasts = dict(live.broadcasts)
    emails = dict(live.system_emails)
    for action in plan.changes:
        if action.kind in ("notice", "email"):
            updated = _broadcast(action, broadcasts.get(action.name), plan.source, now)
            if updated is not None:
                broadcasts[action.name] = updated
        elif action.action == "delete":
            emails.pop(action.name, None)
        else:
            assert action.desired is not None
            previous = emails.get(action.name)
            stats = previous.stats if previous else EmailStats()
            emails[action.name] = live_system_email(
                action.name, action.desired, stats, _provenance(action, plan.source, now)
            )
    for warning in plan.warnings:
        if warning.code == "removed_after_send" and warning.address.startswith("email."):
            bid = warning.address.split(".", 1)[1]
            broadcasts[bid] = replace(broadcasts[bid], managed=False)
    return LiveSnapshot(live.store_id, broadcasts, emails)
