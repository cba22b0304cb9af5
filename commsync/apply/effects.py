"""What applying a plan does to live state: one pure description, used twice.

`effects(plan, live, now)` turns each change of a plan into an `Effect` on the live model, in
apply's order. The executor persists exactly these effects in the store; `apply_effects` folds
them into a new snapshot without a store, which is how the planner's convergence is tested
(apply, then plan again: no changes). A new kind of action is written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from commsync.model import (
    BroadcastSpec,
    BroadcastStatus,
    EmailStats,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    Provenance,
    SendProgress,
    SourceInfo,
)
from commsync.plan.model import (
    Action,
    EmailAction,
    NoticeAction,
    ObjectKind,
    Plan,
    SystemEmailAction,
    Verb,
    WarningCode,
)

_ORDER = {ObjectKind.SYSTEM_EMAIL: 0, ObjectKind.NOTICE: 1, ObjectKind.EMAIL: 2}


@dataclass(frozen=True, slots=True)
class PutBroadcast:
    """A notice created, updated or retracted."""

    broadcast: LiveBroadcast


@dataclass(frozen=True, slots=True)
class PutSystemEmail:
    """A system email installed or changed (its stats are kept)."""

    email: LiveSystemEmail


@dataclass(frozen=True, slots=True)
class DeleteSystemEmail:
    slug: str


@dataclass(frozen=True, slots=True)
class StartSend:
    """An email broadcast recorded as sending, its audience frozen, then delivered."""

    broadcast: LiveBroadcast
    audience: int  # recipients the plan counted (the store freezes the real audience)


@dataclass(frozen=True, slots=True)
class ResumeSend:
    """The rest of an interrupted send delivered; `spec` is the one frozen when it started."""

    broadcast_id: str
    spec: BroadcastSpec
    total: int


@dataclass(frozen=True, slots=True)
class ScheduleSend:
    """An email broadcast recorded `scheduled` (new, edited or rescheduled) for the workers."""

    broadcast: LiveBroadcast


@dataclass(frozen=True, slots=True)
class EndSchedule:
    """A scheduled email broadcast that will not go out: unscheduled (forgotten), or missed."""

    broadcast_id: str
    missed: bool


@dataclass(frozen=True, slots=True)
class ReleaseBroadcast:
    """A sent email broadcast whose file was removed: no longer managed, never deleted."""

    broadcast_id: str


Effect = (
    PutBroadcast
    | PutSystemEmail
    | DeleteSystemEmail
    | StartSend
    | ResumeSend
    | ScheduleSend
    | EndSchedule
    | ReleaseBroadcast
)


@dataclass(frozen=True, slots=True)
class Step:
    """One effect, and the action it carries out (None for a release after a plan warning)."""

    action: Action | None
    effect: Effect


def ordered(plan: Plan) -> list[Action]:
    """The plan's changes in apply's order: system emails, notices, then sends (irreversible)."""
    return sorted(plan.changes, key=lambda a: (_ORDER[a.kind], a.address))


def _provenance(path: str | None, source: SourceInfo, now: datetime) -> Provenance:
    return Provenance(path, source.commit, source.author, now)


def _notice(action: NoticeAction, live: LiveSnapshot, source: SourceInfo, now: datetime) -> Effect:
    if action.action == Verb.RETRACT:
        current = live.broadcasts[action.name]
        provenance = _provenance(current.provenance.path, source, now)
        return PutBroadcast(
            replace(current, status=BroadcastStatus.RETRACTED, provenance=provenance)
        )
    assert action.spec is not None, f"{action.address}: {action.action} without a spec"
    spec = action.spec
    provenance = _provenance(action.path, source, now)
    active = LiveBroadcast(
        action.name, spec, BroadcastStatus.ACTIVE, spec.spec_hash(), True, provenance
    )
    return PutBroadcast(active)


def _email(action: EmailAction, live: LiveSnapshot, source: SourceInfo, now: datetime) -> Effect:
    if action.action == Verb.RESUME:
        current = live.broadcasts[action.name]
        total = action.remaining.total if action.remaining else 0
        return ResumeSend(action.name, current.spec, total)
    if action.action in (Verb.UNSCHEDULE, Verb.MISSED):
        return EndSchedule(action.name, missed=action.action == Verb.MISSED)
    assert action.spec is not None, f"{action.address}: {action.action} without a spec"
    spec = action.spec
    provenance = _provenance(action.path, source, now)
    if action.action in (Verb.SCHEDULED, Verb.RESCHEDULE, Verb.UPDATE):
        scheduled = LiveBroadcast(
            action.name, spec, BroadcastStatus.SCHEDULED, spec.spec_hash(), True, provenance
        )
        return ScheduleSend(scheduled)
    sending = LiveBroadcast(
        action.name, spec, BroadcastStatus.SENDING, spec.spec_hash(), True, provenance
    )
    return StartSend(sending, action.audience.total if action.audience else 0)


def _system_email(
    action: SystemEmailAction, live: LiveSnapshot, source: SourceInfo, now: datetime
) -> Effect:
    if action.action == Verb.DELETE:
        return DeleteSystemEmail(action.name)
    install = action.install
    assert install is not None, f"{action.address}: {action.action} without what to install"
    previous = live.system_emails.get(action.name)
    email = LiveSystemEmail(
        slug=action.name,
        fields=install.fields,
        applied_hash=install.fields.fields_hash(),
        overrides=install.overrides,
        base_version=install.base_version,
        base_fields=install.base_fields,
        stats=previous.stats if previous else EmailStats(),
        provenance=_provenance(install.managed_path, source, now),
    )
    return PutSystemEmail(email)


def effect_of(action: Action, live: LiveSnapshot, source: SourceInfo, now: datetime) -> Effect:
    """What one change does to the live state the plan was made against."""
    if isinstance(action, NoticeAction):
        return _notice(action, live, source, now)
    if isinstance(action, EmailAction):
        return _email(action, live, source, now)
    return _system_email(action, live, source, now)


def effects(plan: Plan, live: LiveSnapshot, now: datetime) -> list[Step]:
    """Every effect of the plan, in apply's order, computed against `live`."""
    steps = [Step(a, effect_of(a, live, plan.source, now)) for a in ordered(plan)]
    for warning in plan.warnings:
        if warning.code == WarningCode.REMOVED_AFTER_SEND and warning.kind == ObjectKind.EMAIL:
            steps.append(Step(None, ReleaseBroadcast(warning.name)))
    return steps


def after(live: LiveSnapshot, effect: Effect) -> LiveSnapshot:
    """The live snapshot once `effect` is persisted (a send: every recipient delivered)."""
    broadcasts = dict(live.broadcasts)
    emails = dict(live.system_emails)
    if isinstance(effect, PutBroadcast):
        broadcasts[effect.broadcast.id] = effect.broadcast
    elif isinstance(effect, PutSystemEmail):
        emails[effect.email.slug] = effect.email
    elif isinstance(effect, DeleteSystemEmail):
        emails.pop(effect.slug, None)
    elif isinstance(effect, StartSend):
        n = effect.audience
        sent = replace(
            effect.broadcast, status=BroadcastStatus.SENT, progress=SendProgress(n, sent=n)
        )
        broadcasts[sent.id] = sent
    elif isinstance(effect, ResumeSend):
        current = broadcasts[effect.broadcast_id]
        p = current.progress or SendProgress()
        progress = replace(p, queued=0, sent=p.sent + p.queued)
        broadcasts[current.id] = replace(current, status=BroadcastStatus.SENT, progress=progress)
    elif isinstance(effect, ScheduleSend):
        broadcasts[effect.broadcast.id] = effect.broadcast
    elif isinstance(effect, EndSchedule):
        if effect.missed:
            missed = replace(broadcasts[effect.broadcast_id], status=BroadcastStatus.MISSED)
            broadcasts[effect.broadcast_id] = missed
        else:
            broadcasts.pop(effect.broadcast_id)
    else:
        bid = effect.broadcast_id
        broadcasts[bid] = replace(broadcasts[bid], managed=False)
    return LiveSnapshot(live.store_id, broadcasts, emails, live.worker_seen_at)


def apply_effects(plan: Plan, live: LiveSnapshot, now: datetime) -> LiveSnapshot:
    """The live snapshot after every change of `plan` succeeded (every recipient delivered)."""
    for step in effects(plan, live, now):
        live = after(live, step.effect)
    return live
