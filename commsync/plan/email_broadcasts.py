"""Planning email broadcasts (pure: no I/O, no clock).

A new email is sent, or recorded `scheduled` for the delivery workers when its `send_at` is
ahead. A recorded schedule follows its file until it fires (update, reschedule, unschedule), is
sent by apply when due and still unstarted, and is `missed` past its `max_lateness`. Once sent,
an email is immutable: edits and removals are only warned about. The duplicate-send guard
refuses a new email that copies one already sent or scheduled.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from commsync.diagnostics import Diagnostic
from commsync.model import (
    Audience,
    BroadcastKind,
    BroadcastSpec,
    BroadcastStatus,
    DesiredBroadcast,
    LiveBroadcast,
    LiveSnapshot,
    SendProgress,
)
from commsync.plan.findings import Findings, spec_changes
from commsync.plan.model import (
    EmailAction,
    ObjectKind,
    PlanWarning,
    Remaining,
    Verb,
    WarningCode,
)

# Scheduled sends need a worker: without a sign of one for this long, plan and status warn.
WORKER_SILENCE = timedelta(minutes=15)


def is_scheduled(live: LiveBroadcast | None) -> bool:
    return live is not None and live.status == BroadcastStatus.SCHEDULED


@dataclass(frozen=True, slots=True)
class Twin:
    """The email a new one copies: its id, and where it is (sent when, scheduled, new here)."""

    id: str
    where: str
    in_store: bool = True
    likeness: float | None = None  # a near duplicate: how alike; None: identical

    def __str__(self) -> str:
        return f"email.{self.id}, {self.where}"


def store_emails(live: LiveSnapshot) -> list[tuple[BroadcastSpec, Twin]]:
    """The email broadcasts a new one must not copy: sent, being sent, cancelled part way, or
    scheduled to go (a missed one never went), in id order."""
    out = []
    for b in sorted(live.broadcasts.values(), key=lambda b: b.id):
        if b.spec.kind != BroadcastKind.EMAIL or b.status == BroadcastStatus.MISSED:
            continue
        if b.status == BroadcastStatus.SCHEDULED:
            at = b.spec.send_at.isoformat() if b.spec.send_at else "now"
            out.append((b.spec, Twin(b.id, f"scheduled for {at}")))
            continue
        when = b.provenance.applied_at.isoformat() if b.provenance.applied_at else "earlier"
        out.append((b.spec, Twin(b.id, f"sent {when}")))
    return out


def sent_signatures(live: LiveSnapshot) -> dict[str, Twin]:
    """Content signature → which email already has it (for the duplicate-send guard)."""
    seen: dict[str, Twin] = {}
    for spec, twin in store_emails(live):
        seen.setdefault(spec.content_signature(), twin)
    return seen


NEAR = 0.9  # difflib's ratio over the normalised subject and content, from which two emails are "the same"
_NOT_WORD = re.compile(r"[\W_]+")


def _normalised(spec: BroadcastSpec) -> str:
    """Subject and content, lower case, punctuation and runs of white space as one space."""
    return _NOT_WORD.sub(" ", f"{spec.subject}\n{spec.content}".lower()).strip()


def near_duplicates(
    new_emails: Iterable[DesiredBroadcast], store: Sequence[tuple[BroadcastSpec, Twin]]
) -> dict[str, Twin]:
    """New emails (without `allow_resend`) that are nearly an email already sent or scheduled:
    the same targets, and subject and content equal once case, white space and punctuation are
    ignored, or at least 90 % alike by difflib's ratio. A rename with a small edit looks so; a
    monthly newsletter with new content does not."""
    found: dict[str, Twin] = {}
    for d in new_emails:
        if d.spec.allow_resend:
            continue
        text = _normalised(d.spec)
        for spec, twin in store:
            if spec.targets != d.spec.targets:
                continue
            matcher = difflib.SequenceMatcher(None, text, _normalised(spec), autojunk=False)
            if matcher.real_quick_ratio() < NEAR or matcher.quick_ratio() < NEAR:
                continue
            ratio = matcher.ratio()
            if ratio >= NEAR:
                found[d.id] = Twin(twin.id, twin.where, likeness=ratio)
                break
    return found


def twin_message(twin: Twin) -> str:
    """Why a new email is refused, the safe way out first."""
    if not twin.in_store:
        return (
            f"this email has the same subject, content and targets as {twin}: it would go out "
            "twice. Remove one of the files (allow_resend: true sends both, to everyone)"
        )
    alike = (
        f"has the same subject, content and targets as {twin}"
        if twin.likeness is None
        else f"is {twin.likeness:.0%} like {twin} (same targets; subject and content compared "
        "without case, spacing and punctuation)"
    )
    return (
        f"this email {alike}. If you renamed or moved its file, keep its id: add "
        f"`id: {twin.id}` to this file, and nothing is sent again. Only to send it again to "
        "everyone on purpose, set allow_resend: true"
    )


def _sends_now(d: DesiredBroadcast, now: datetime) -> bool:
    return d.spec.send_at is None or d.spec.send_at <= now


def duplicate_sends(
    new_emails: Iterable[DesiredBroadcast], sent: Mapping[str, Twin], now: datetime
) -> dict[str, Twin]:
    """New emails the duplicate-send guard refuses (id → which email they copy).

    Without `allow_resend`, a new email is refused when an email with the same subject, content
    and targets was sent, when an identical one goes out in this change while it waits, or when
    an identical one without `allow_resend` comes before it. So a plan never sends twice, and the
    one that stays refused after apply was refused before it too.
    """
    groups: dict[str, list[DesiredBroadcast]] = {}
    for d in sorted(new_emails, key=lambda d: d.id):
        groups.setdefault(d.spec.content_signature(), []).append(d)
    refused: dict[str, Twin] = {}
    for signature, members in groups.items():
        original: DesiredBroadcast | None = None
        for d in members:
            if d.spec.allow_resend:
                continue
            twin_now = next((o for o in members if o is not d and _sends_now(o, now)), None)
            if signature in sent:
                refused[d.id] = sent[signature]
            elif twin_now is not None and not _sends_now(d, now):
                refused[d.id] = Twin(twin_now.id, "sent in this change", in_store=False)
            elif original is not None:
                refused[d.id] = Twin(original.id, "also new in this change", in_store=False)
            else:
                original = d
    return refused


def plan_new_email(
    d: DesiredBroadcast,
    audience: Audience | None,
    twin: Twin | None,
    now: datetime,
    out: Findings,
) -> None:
    spec = d.spec
    if twin is not None:
        msg = twin_message(twin)
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
        f"sends at {spec.send_at.isoformat()} (the delivery workers start it; "
        "its audience is counted again then)"
    )


def plan_scheduled_email(
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


def plan_ended_email(d: DesiredBroadcast, live: LiveBroadcast, out: Findings) -> None:
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
    elif progress.total == 0:
        code, msg = (
            WarningCode.CANCELLED,
            "cancelled before its send started (queue cancel --broadcast); it will not be sent",
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


def plan_sent_email(d: DesiredBroadcast, live: LiveBroadcast, out: Findings) -> None:
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


def warn_without_worker(out: Findings, live: LiveSnapshot, now: datetime) -> None:
    """Scheduled sends are the workers' to start: say so when none has been seen lately."""
    waiting = {b.id for b in live.broadcasts.values() if is_scheduled(b)}
    for a in out.actions:
        if isinstance(a, EmailAction):
            if a.action in (Verb.SCHEDULED, Verb.RESCHEDULE, Verb.UPDATE):
                waiting.add(a.name)
            elif a.action in (Verb.SEND, Verb.MISSED, Verb.UNSCHEDULE):
                waiting.discard(a.name)
    msg = no_worker_message(len(waiting), live.worker_seen_at, now)
    if msg is not None:
        first = sorted(waiting)[0]
        out.warnings.append(PlanWarning(ObjectKind.EMAIL, first, WarningCode.NO_WORKER, msg))


def no_worker_message(waiting: int, seen: datetime | None, now: datetime) -> str | None:
    """What plan and status say when `waiting` scheduled sends have no worker to start them (none
    seen for WORKER_SILENCE); None when all is well."""
    if not waiting or (seen is not None and now - seen <= WORKER_SILENCE):
        return None
    when = f"been seen since {seen:%Y-%m-%d %H:%M} UTC" if seen else "run on this store yet"
    return (
        f"{waiting} scheduled email broadcast(s) wait for a delivery worker, and none has "
        f"{when}: run `commsync deliver --loop` or `commsync serve`, or `commsync "
        "deliver --once` every few minutes from cron or CI (docs/delivery.md)"
    )
