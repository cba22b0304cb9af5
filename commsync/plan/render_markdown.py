"""The plan as a pull-request comment: summary first, details collapsed, under GitHub's limit."""

from __future__ import annotations

import html
import re

from commsync.plan.model import Action, ObjectKind, Plan, PlanWarning, Verb
from commsync.plan.views import (
    SYMBOLS,
    applied_from,
    headline,
    is_multiline,
    labels,
    n,
    show,
    summary_line,
    unified,
)

LIMIT = 65_000
_DETAIL_LIMIT = 6_000


def _fence(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}"


def _escape(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]<>|#!])", r"\\\1", text)


def _warning(w: PlanWarning) -> str:
    text = f"- ⚠️ `{w.address}`: {_escape(w.message)}"
    for d in w.details:
        text += (
            f"\n  - `{d.field}`: old default {_escape(show(d.old_default))[:200]} → "
            f"new default {_escape(show(d.new_default))[:200]}; live {_escape(show(d.live))[:200]}"
        )
    return text


def _details(action: Action) -> str:
    label = html.escape(f"{SYMBOLS[action.action]} {action.address}")
    summary = f"<code>{label}</code> — <b>{action.action}</b>"
    body: list[str] = [_escape(headline(action))]
    if action.drift:
        body.append("**Drift:** this object was changed outside commsync since the last apply.")
    if action.path:
        body.append(f"File: `{action.path}`")
    origin = applied_from(action)
    if origin:
        at = action.last_applied.applied_at if action.last_applied else None
        when = at.isoformat()[:10] if at else ""
        body.append(_escape(origin[0].upper() + origin[1:]) + (f", {when}" if when else "") + ".")
    if action.sample_subject is not None and action.action not in (Verb.RETRACT, Verb.DELETE):
        who = (
            "the event's example payload"
            if action.kind == ObjectKind.SYSTEM_EMAIL
            else "a sample recipient"
        )
        body.append(f"Subject for {who}: **{_escape(action.sample_subject)}**")
    diff_lines: list[str] = []
    for change in action.changes:
        if is_multiline(change):
            diff_lines.append(f"# {change.field}")
            diff_lines.extend(unified(change, labels(action))[2:])
        else:
            diff_lines.append(f"# {change.field}")
            diff_lines.append(f"- {show(change.before)}")
            diff_lines.append(f"+ {show(change.after)}")
    if diff_lines:
        diff = "\n".join(diff_lines)
        if len(diff) > _DETAIL_LIMIT:
            diff = diff[:_DETAIL_LIMIT] + "\n# … diff truncated"
        body.append(_fence(diff, "diff"))
    return f"<details><summary>{summary}</summary>\n\n" + "\n\n".join(body) + "\n\n</details>"


def _table(plan: Plan) -> str:
    rows = ["| action | count |", "|---|---:|"]
    rows += [f"| {name} | {n(count)} |" for name, count in plan.summary().items()]
    return "\n".join(rows)


def _drift_warning(action: Action) -> str:
    return (
        f"- ⚠️ `{action.address}`: changed outside commsync since the last apply; "
        "this apply restores the repository's values"
    )


def render_markdown(
    plan: Plan, *, limit: int = LIMIT, changed: frozenset[str] | None = None, since: str = ""
) -> str:
    """Warnings, a summary table, then one collapsed section per action, kept under `limit`.

    With `changed`, sections only for actions in those files (changed since `since`); the
    warnings and the summary still cover the whole plan.
    """
    head = [f"### commsync plan: {_escape(summary_line(plan))}", ""]
    head.append(
        f"Source: {_escape(plan.source.label)} · store `{plan.store_id[:12]}` · plan `{plan.plan_id[7:19]}`"
    )
    head.append("")
    drifted = [a for a in plan.actions if a.drift]
    if plan.warnings or drifted:
        head += ["**Warnings**", "", *(_warning(w) for w in plan.warnings)]
        head += [*(_drift_warning(a) for a in drifted), ""]
    if plan.actions:
        head += [_table(plan), ""]
    if plan.available_imports:
        names = ", ".join(f"`{s}`" for s in plan.available_imports)
        head += [f"Available to import ({len(plan.available_imports)}): {names}", ""]
    detailed = [a for a in plan.actions if changed is None or a.path in changed]
    if len(detailed) < len(plan.actions):
        others = len(plan.actions) - len(detailed)
        head += [
            f"Details below cover the {n(len(detailed))} action(s) in files changed since "
            f"`{_escape(since)}`; the other {n(others)} {'is' if others == 1 else 'are'} in the "
            "summary above.",
            "",
        ]
    text = "\n".join(head)
    reserve = 400
    shown = 0
    for action in detailed:
        section = "\n" + _details(action) + "\n"
        if len(text) + len(section) > limit - reserve:
            break
        text += section
        shown += 1
    hidden = len(detailed) - shown
    if hidden:
        text += (
            f"\n> **Truncated:** {n(hidden)} of {n(len(detailed))} actions are not shown, to stay under "
            f"{n(limit)} characters. The summary above covers them all; run `commsync plan` for every detail.\n"
        )
    return text
