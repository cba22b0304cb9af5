"""Planning notices and email broadcasts (pure: no I/O, no clock)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from commsync.diagnostics import Diagnostic
from commsync.model import (
    Audience,
    BroadcastKind,
    BroadcastSpec,
    BroadcastStatus,
    DesiredBroadcast,
    DesiredState,
    LiveBroadcast,
    LiveSnapshot,
    SendProgress,
    Targets,
)
from commsync.plan.model import (
    ABSENT,
    Action,
    EmailAction,
    FieldChange,
    NoticeAction,
    ObjectKind,
    PlanWarning,
    Remaining,
    Verb,
    WarningCode,
)


@dataclass
class Findings:
    """What planning one kind of object produced."""

    actions: list[Action] = field(default_factory=list)
    warnings: list[PlanWarning] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)


def spec_changes(before: BroadcastSpec, after: BroadcastSpec) -> tuple[FieldChange, ...]:
    """Fields whose canonical values differ, shown as written (dates keep their offsets)."""
    old, new = before.canonical(), after.canonical()
    shown_old, shown_new = before.fields(), after.fields()
    return tuple(
        FieldChange(name, shown_old.get(name), shown_new.get(name))
        for name in shown_new
        if old.get(name) != new.get(name)
    )


# Scheduled sends need a worker: without a sign of one for this long, plan and status warn.
WORKER_SILENCE = timedelta(minutes=15)


def _is_open(live: LiveBroadcast | None) -> bool:
    return live is not None and live.status != BroadcastStatus.RETRACTED


def _is_scheduled(live: LiveBroadcast | None) -> bool:
    return live is not None and live.status == BroadcastStatus.SCHEDULED


def audience_requests(desired: DesiredState, live: LiveSnapshot) -> frozenset[Targets]:
    """Target selections whose audience the plan will show (new or changed broadcasts only)."""
    wanted = set()
    for d in desired.broadcasts:
        current = live.broadcasts.get(d.id)
        if d.spec.kind == BroadcastKind.EMAIL:
            if current is None or _is_scheduled(current):
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


def _sent_signatures(live: LiveSnapshot) -> dict[str, str]:
    """Content signature → which email already has it (for the duplicate-send guard): sent,
    being sent, cancelled part way, or scheduled to go; a missed one never went."""
    seen: dict[str, str] = {}
    for b in sorted(live.broadcasts.values(), key=lambda b: b.id):
        if b.spec.kind != BroadcastKind.EMAIL or b.status == BroadcastStatus.MISSED:
            continue
        if b.status == BroadcastStatus.SCHEDULED:
            at = b.spec.send_at.isoformat() if b.spec.send_at else "now"
            seen.setdefault(b.spec.content_signature(), f"email.{b.id}, scheduled for {at}")
            continue
        when = b.provenance.applied_at.isoformat() if b.provenance.applied_at else "earlier"
        seen.setdefault(b.spec.content_signature(), f"email.{b.id}, sent {when}")
    return seen


def _sends_now(d: DesiredBroadcast, now: datetime) -> bool:
    return d.spec.send_at is None or d.spec.send_at <= now


def duplicate_sends(
    new_emails: Iterable[DesiredBroadcast], sent: Mapping[str, str], now: datetime
) -> dict[str, str]:
    """New emails the duplicate-send guard refuses (id → which email they copy).

    Without `allow_resend`, a new email is refused when an email with the same subject, content
    and targets was sent, when an identical one goes out in this change while it waits, or when
    an identical one without `allow_resend` comes before it. So a plan never sends twice, and the
    one that stays refused after apply was refused before it too.
    """
    groups: dict[str, list[DesiredBroadcast]] = {}
    for d in sorted(new_emails, key=lambda d: d.id):
        groups.setdefault(d.spec.content_signature(), []).append(d)
    refused: dict[str, str] = {}
    for signature, members in groups.items():
        original: DesiredBroadcast | None = None
        for d in members:
            if d.spec.allow_resend:
                continue
            twin_now = next((o for o in members if o is not d and _sends_now(o, now)), None)
            if signature in sent:
                refused[d.id] = sent[signature]
            elif twin_now is not None and not _sends_now(d, now):
                refused[d.id] = f"email.{twin_now.id}, sent in this change"
            elif original is not None:
                refused[d.id] = f"email.{original.id}, also new in this change"
            else:
                original = d
    return refused


def _plan_new_email(
    d: DesiredBroadcast,
    audience: Audience | None,
    twin: str | None,
    now: datetime,
    out: Findings,
) -> None:
    spec = d.spec
    if twin is not None:
        msg = (
            f"this email has the same subject, content and targets as {twin}; "
            "a renamed or copied file would send it twice. Set allow_resend: true to send it again"
        )
        out.errors.append(Diagnostic(d.origin.path, d.origin.line, d.origin.col, msg))
        return
    scheduled = spec.send_at is not None and spec.send_at > now
    action, reason = (
        (Verb.SCHEDULED, _sends_at(spec))
        if spec.send_at and scheduled
        else (Verb.SEND, "new email broadcast")
    )
    out.actions.append(
        EmailAction(
            name=d.id,
            action=action,
            reason=reason,
            audience=audience,
            path=d.origin.path,
            spec=spec,
        )
    )
    if scheduled:
        return
    if audience is not None and audience.total == 0:
        out.warnings.append(
            PlanWarning(
                ObjectKind.EMAIL,
                d.id,
                WarningCode.EMPTY_AUDIENCE,
                "its targets select nobody right now",
                d.origin.path,
            )
        )


def _sends_at(spec: BroadcastSpec) -> str:
    assert spec.send_at is not None
    return (
        f"the delivery workers send it at {spec.send_at.isoformat()}; "
        "its audience is counted again when the send starts"
    )


def _plan_scheduled_email(
    d: DesiredBroadcast,
    live: LiveBroadcast,
    audience: Audience | None,
    now: datetime,
    out: Findings,
) -> None:
    """A recorded scheduled send, before a worker started it: it follows its file."""
    spec = d.spec
    changes = spec_changes(live.spec, spec)

    def act(verb: Verb, reason: str) -> None:
        out.actions.append(
            EmailAction(
                name=d.id,
                action=verb,
                reason=reason,
                changes=changes,
                audience=None if verb == Verb.MISSED else audience,
                fingerprint=live.fingerprint(),
                path=d.origin.path,
                last_applied=live.provenance,
                spec=spec,
            )
        )

    if spec.send_at is None or spec.send_at <= now:
        if spec.send_at is not None and now - spec.send_at > spec.lateness:
            act(
                Verb.MISSED,
                f"its send_at {spec.send_at.isoformat()} passed more than max_lateness "
                f"({spec.max_lateness or '24h'}) ago before a delivery worker started it; "
                "recorded missed, never sent",
            )
            return
        fields = ", ".join(c.field for c in changes)
        act(Verb.SEND, "scheduled, and due now" + (f"; fields changed: {fields}" if fields else ""))
    elif [c.field for c in changes] == ["send_at"]:
        old = live.spec.send_at.isoformat() if live.spec.send_at else "now"
        act(Verb.RESCHEDULE, f"sends at {spec.send_at.isoformat()} instead of {old}")
    elif changes:
        fields = ", ".join(c.field for c in changes)
        act(Verb.UPDATE, f"fields changed before it was sent: {fields}; {_sends_at(spec)}")


def _plan_ended_email(d: DesiredBroadcast, live: LiveBroadcast, out: Findings) -> None:
    """Missed or cancelled: said on every plan while its file is there; never sent again."""
    progress = live.progress or SendProgress()
    if live.status == BroadcastStatus.MISSED:
        code, msg = (
            WarningCode.MISSED,
            (
                "missed: its send_at passed more than max_lateness ago before a delivery worker "
                "started it; it was never sent. To send it, write a new broadcast"
            ),
        )
    else:
        code, msg = (
            WarningCode.CANCELLED,
            (
                f"cancelled during its send (queue cancel --broadcast): {progress.sent:,} of "
                f"{progress.total:,} recipients were sent to, {progress.cancelled:,} never will be"
            ),
        )
    out.warnings.append(PlanWarning(ObjectKind.EMAIL, d.id, code, msg, d.origin.path))


def _plan_sent_email(d: DesiredBroadcast, live: LiveBroadcast, out: Findings) -> None:
    progress = live.progress
    changed = spec_changes(live.spec, d.spec)
    if changed:
        fields = ", ".join(c.field for c in changed)
        msg = f"edited after it was sent ({fields}); a sent email is never sent again. Revert the edit, or write a new broadcast"
        warning = PlanWarning(
            ObjectKind.EMAIL, d.id, WarningCode.EDITED_AFTER_SEND, msg, d.origin.path
        )
        out.warnings.append(warning)
    if progress is not None and progress.queued > 0 and not progress.by_workers:
        reason = f"{progress.queued:,} of {progress.total:,} recipients left"
        if progress.uncertain:
            reason += f"; {progress.uncertain:,} uncertain (apply --resend-uncertain)"
        out.actions.append(
            EmailAction(
                name=d.id,
                action=Verb.RESUME,
                reason=reason,
                path=d.origin.path,
                fingerprint=live.fingerprint(),
                remaining=Remaining(progress.total, progress.queued, progress.uncertain),
            )
        )


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
        elif _is_scheduled(b):
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
    refused = duplicate_sends(new_emails, _sent_signatures(live), now)
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
            _plan_new_email(d, audience, refused.get(d.id), now, out)
        elif current.status == BroadcastStatus.SCHEDULED:
            _plan_scheduled_email(d, current, audience, now, out)
        elif current.status in (BroadcastStatus.MISSED, BroadcastStatus.CANCELLED):
            _plan_ended_email(d, current, out)
        else:
            _plan_sent_email(d, current, out)
    _plan_orphans(desired_ids, live, out)
    _warn_without_worker(out, live, now)
    return out


def _warn_without_worker(out: Findings, live: LiveSnapshot, now: datetime) -> None:
    """Scheduled sends are the workers' to start: say so when none has been seen lately."""
    waiting = {b.id for b in live.broadcasts.values() if _is_scheduled(b)}
    for a in out.actions:
        if isinstance(a, EmailAction):
            if a.action in (Verb.SCHEDULED, Verb.RESCHEDULE, Verb.UPDATE):
                waiting.add(a.name)
            elif a.action in (Verb.SEND, Verb.MISSED, Verb.UNSCHEDULE):
                waiting.discard(a.name)
    seen = live.worker_seen_at
    if not waiting or (seen is not None and now - seen <= WORKER_SILENCE):
        return
    when = f"since {seen:%Y-%m-%d %H:%M} UTC" if seen is not None else "ever"
    first = sorted(waiting)[0]
    msg = (
        f"{len(waiting)} scheduled email broadcast(s) wait for a delivery worker, and none has "
        f"been seen {when}: run `commsync deliver --loop` or `commsync serve`, or `commsync "
        "deliver --once` every few minutes from cron or CI (docs/delivery.md)"
    )
    out.warnings.append(PlanWarning(ObjectKind.EMAIL, first, WarningCode.NO_WORKER, msg))
