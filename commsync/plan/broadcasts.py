"""Planning notices and email broadcasts (pure: no I/O, no clock); the emails' own rules are in
`email_broadcasts.py`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from commsync.diagnostics import Diagnostic
from commsync.model import (
    Audience,
    BroadcastKind,
    BroadcastStatus,
    DesiredBroadcast,
    DesiredState,
    LiveBroadcast,
    LiveSnapshot,
    Targets,
)
from commsync.plan.email_broadcasts import (
    duplicate_sends,
    is_scheduled,
    near_duplicates,
    plan_ended_email,
    plan_new_email,
    plan_scheduled_email,
    plan_sent_email,
    sent_signatures,
    store_emails,
    warn_without_worker,
)
from commsync.plan.findings import Findings, spec_changes
from commsync.plan.model import (
    ABSENT,
    EmailAction,
    FieldChange,
    NoticeAction,
    ObjectKind,
    PlanWarning,
    Verb,
    WarningCode,
)


def _is_open(live: LiveBroadcast | None) -> bool:
    return live is not None and live.status != BroadcastStatus.RETRACTED


def audience_requests(desired: DesiredState, live: LiveSnapshot) -> frozenset[Targets]:
    """Target selections whose audience the plan will show (new or changed broadcasts only)."""
    wanted = set()
    for d in desired.broadcasts:
        current = live.broadcasts.get(d.id)
        if d.spec.kind == BroadcastKind.EMAIL:
            if current is None or is_scheduled(current):
                wanted.add(d.spec.targets)
        elif not _is_open(current) or (
            current is not None and current.spec.canonical() != d.spec.canonical()
        ):
            wanted.add(d.spec.targets)
    return frozenset(wanted)


def _notice_action(
    d: DesiredBroadcast,
    live: LiveBroadcast | None,
    action: Verb,
    reason: str,
    changes: tuple[FieldChange, ...] = (),
    audience: Audience | None = None,
) -> NoticeAction:
    return NoticeAction(
        name=d.id,
        action=action,
        reason=reason,
        changes=changes,
        audience=audience,
        drift=bool(changes) and live is not None and live.drift,
        fingerprint=live.fingerprint() if live else ABSENT,
        path=d.origin.path,
        spec=d.spec,
    )


def _plan_notice(
    d: DesiredBroadcast, live: LiveBroadcast | None, audience: Audience | None, now: datetime
) -> NoticeAction | None:
    spec = d.spec
    if not _is_open(live):
        if spec.expires_at is not None and spec.expires_at <= now:
            return _notice_action(d, live, Verb.EXPIRED, "its expires_at has passed; not created")
        reason = "re-creates a retracted notice" if live else "new notice"
        if spec.starts_at is not None and spec.starts_at > now:
            reason += f"; shown from {spec.starts_at.isoformat()}"
        return _notice_action(d, live, Verb.CREATE, reason, audience=audience)
    assert live is not None
    changes = spec_changes(live.spec, spec)
    if changes:
        reason = "fields changed: " + ", ".join(c.field for c in changes)
        if live.drift:
            reason = "changed outside commsync since the last apply; the file's values are restored"
        return _notice_action(d, live, Verb.UPDATE, reason, changes, audience)
    if spec.expires_at is not None and spec.expires_at <= now:
        return _notice_action(d, live, Verb.EXPIRED, f"expired at {spec.expires_at.isoformat()}")
    if spec.starts_at is not None and spec.starts_at > now:
        return _notice_action(d, live, Verb.PENDING, f"shown from {spec.starts_at.isoformat()}")
    return None


def _plan_kind_change(d: DesiredBroadcast, live: LiveBroadcast, out: Findings) -> bool:
    if live.spec.kind == d.spec.kind:
        return False
    msg = f"id {d.id!r} belongs to a {live.spec.kind} in the store; a broadcast cannot change kind. Give it a new id"
    out.errors.append(Diagnostic(d.origin.path, d.origin.line, d.origin.col, msg))
    return True


def _plan_orphans(desired_ids: set[str], live: LiveSnapshot, out: Findings) -> None:
    for bid, b in sorted(live.broadcasts.items()):
        if bid in desired_ids or not b.managed:
            continue
        if b.spec.kind == BroadcastKind.NOTICE and b.status != BroadcastStatus.RETRACTED:
            reason = f"{b.provenance.path or 'its file'} was removed"
            out.actions.append(
                NoticeAction(
                    name=bid,
                    action=Verb.RETRACT,
                    reason=reason,
                    fingerprint=b.fingerprint(),
                    path=b.provenance.path,
                )
            )
        elif is_scheduled(b):
            out.actions.append(
                EmailAction(
                    name=bid,
                    action=Verb.UNSCHEDULE,
                    reason=f"{b.provenance.path or 'its file'} was removed before it was sent; it will not be sent",
                    fingerprint=b.fingerprint(),
                    path=b.provenance.path,
                )
            )
        elif b.spec.kind == BroadcastKind.EMAIL:
            msg = "its file was removed after it was sent; nothing is sent or deleted"
            if b.status == BroadcastStatus.MISSED:
                msg = "its file was removed; it was missed and never sent"
            code = WarningCode.REMOVED_AFTER_SEND
            out.warnings.append(PlanWarning(ObjectKind.EMAIL, bid, code, msg, b.provenance.path))


def plan_broadcasts(
    broadcasts: Iterable[DesiredBroadcast],
    live: LiveSnapshot,
    audiences: Mapping[Targets, Audience],
    now: datetime,
) -> Findings:
    out = Findings()
    items = list(broadcasts)
    new_emails = [
        d for d in items if d.spec.kind == BroadcastKind.EMAIL and d.id not in live.broadcasts
    ]
    store = store_emails(live)
    refused = duplicate_sends(new_emails, sent_signatures(live), now)
    refused |= near_duplicates([d for d in new_emails if d.id not in refused], store)
    desired_ids = set()
    for d in items:
        desired_ids.add(d.id)
        current = live.broadcasts.get(d.id)
        if current is not None and _plan_kind_change(d, current, out):
            continue
        audience = audiences.get(d.spec.targets)
        if d.spec.kind == BroadcastKind.NOTICE:
            action = _plan_notice(d, current, audience, now)
            if action is not None:
                out.actions.append(action)
        elif current is None:
            plan_new_email(d, audience, refused.get(d.id), now, out)
        elif current.status == BroadcastStatus.SCHEDULED:
            plan_scheduled_email(d, current, audience, now, out)
        elif current.status in (BroadcastStatus.MISSED, BroadcastStatus.CANCELLED):
            plan_ended_email(d, current, out)
        else:
            plan_sent_email(d, current, out)
    _plan_orphans(desired_ids, live, out)
    warn_without_worker(out, live, now)
    return out
