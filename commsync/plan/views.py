"""Wording shared by the plan renderers: summaries, audiences, field diffs."""

from __future__ import annotations

import difflib
import json

from commsync.model import Audience, JsonValue
from commsync.plan.model import Action, FieldChange, ObjectKind, Plan, Verb, audience_of

SYMBOLS = {
    "create": "+",
    "import": "+",
    "update": "~",
    "retract": "-",
    "delete": "-",
    "send": ">",
    "resume": ">",
    "reset": "<",
    "upgrade": "^",
    "scheduled": "@",
    "reschedule": "@",
    "unschedule": "-",
    "missed": "x",
    "pending": ".",
    "expired": ".",
}
_ORDER = (
    "create",
    "import",
    "update",
    "reset",
    "upgrade",
    "retract",
    "delete",
    "send",
    "resume",
    "scheduled",
    "reschedule",
    "unschedule",
    "missed",
)
_VERBS = {
    "create": "to create",
    "import": "to import",
    "update": "to update",
    "reset": "to reset",
    "upgrade": "to upgrade",
    "retract": "to retract",
    "delete": "to delete",
    "send": "to send",
    "resume": "to resume",
    "scheduled": "to schedule",
    "reschedule": "to reschedule",
    "unschedule": "to unschedule",
    "missed": "missed",
}


def n(value: int) -> str:
    return f"{value:,}"


def plural(count: int, word: str) -> str:
    return f"{n(count)} {word}{'' if count == 1 else 's'}"


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    parts = [f"{counts[a]} {_VERBS[a]}" for a in _ORDER if counts.get(a)]
    text = ", ".join(parts) + "." if parts else "No changes. The store matches the repository."
    recipients = plan.recipients()
    if recipients:
        text += f" {plural(recipients, 'email')} would be sent."
    if plan.warnings:
        text += f" {plural(len(plan.warnings), 'warning')}."
    return text


def audience_text(audience: Audience, *, email: bool) -> str:
    who = (
        plural(audience.total, "recipient")
        if email
        else f"reaches {plural(audience.total, 'customer')}"
    )
    parts = []
    if audience.all:
        parts.append("all customers")
    parts.extend(f"{slug} {n(count)}" for slug, count in audience.products)
    if audience.customers:
        listed = plural(audience.customers, "listed customer")
        if audience.listed_in_products:
            listed += f", {n(audience.listed_in_products)} of them counted in the products"
        parts.append(listed)
    text = f"{who} ({'; '.join(parts)})" if parts else who
    if email and audience.suppressed:
        text += f", {n(audience.suppressed)} of them suppressed (not sent to)"
    return text


def headline(action: Action) -> str:
    """A one-line description after the address: audience, changed fields or progress."""
    audience = audience_of(action)
    if audience is not None and action.action in (
        Verb.CREATE,
        Verb.SEND,
        Verb.SCHEDULED,
        Verb.UPDATE,
    ):
        text = audience_text(audience, email=action.kind == ObjectKind.EMAIL)
        return f"{action.reason}; {text}" if action.action != Verb.SEND else text
    return action.reason


def show(value: JsonValue) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def is_multiline(change: FieldChange) -> bool:
    return any(isinstance(v, str) and "\n" in v for v in (change.before, change.after))


def labels(action: Action) -> tuple[str, str]:
    """What a field change's before/after are: an import starts from the registered default."""
    return ("default", "file") if action.action == Verb.IMPORT else ("live", "desired")


def unified(change: FieldChange, names: tuple[str, str] = ("live", "desired")) -> list[str]:
    before = change.before if isinstance(change.before, str) else ""
    after = change.after if isinstance(change.after, str) else ""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), *names, lineterm="", n=2)
    return list(lines)


def applied_from(action: Action) -> str | None:
    """`last applied from <sha> by <author>` for an existing object, else None."""
    applied = action.last_applied
    if applied is None or not applied.commit:
        return None
    text = f"last applied from {applied.commit[:12]}"
    if applied.author:
        text += f" by {applied.author}"
    return text
