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


# What a reviewer must see first: sends, then changes to what exists, then the bulk (new objects),
# then what only informs. A cut comment keeps the earlier ones.
_PRIORITY = {
    Verb.SEND: 0,
    Verb.RESUME: 0,
    Verb.SCHEDULED: 0,
    Verb.RESCHEDULE: 0,
    Verb.UNSCHEDULE: 0,
    Verb.MISSED: 0,
    Verb.UPDATE: 1,
    Verb.RESET: 1,
    Verb.UPGRADE: 1,
    Verb.DELETE: 1,
    Verb.RETRACT: 1,
    Verb.CREATE: 2,
    Verb.IMPORT: 2,
}
_BULK = 2
_FULL_PLAN = (
    "the full plan is `commsync plan` (and `commsync plan --out plan.json`, which the CI recipes "
    "keep as an artifact)"
)


def _line(action: Action) -> str:
    """One line naming an action, for the list of what must be seen."""
    text = f"- `{SYMBOLS[action.action]} {action.address}` **{action.action}** — {_escape(headline(action))}"
    return text if len(text) <= 300 else text[:297] + "…"


class _Budget:
    """The comment as it grows: nothing is added that would pass the limit (less a reserve
    kept for the closing note)."""

    def __init__(self, limit: int, reserve: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.room = limit - reserve

    def add(self, text: str) -> bool:
        if self.size + len(text) > self.room:
            return False
        self.parts.append(text)
        self.size += len(text)
        return True

    def text(self) -> str:
        return "".join(self.parts)


def render_markdown(
    plan: Plan, *, limit: int = LIMIT, changed: frozenset[str] | None = None, since: str = ""
) -> str:
    """Warnings, a summary table, the list of every send and change, then one collapsed section
    per action — sends and changes first, new objects after — kept under `limit` characters.

    With `changed`, sections only for actions in those files (changed since `since`); the
    warnings, the summary and the list still cover the whole plan. What does not fit is said, by
    count and kind; when even the warnings and the list do not fit, the comment says so and
    points at the full plan.
    """
    out = _Budget(limit, reserve=600)
    out.add(f"### commsync plan: {_escape(summary_line(plan))}\n\n")
    out.add(
        f"Source: {_escape(plan.source.label)} · store `{plan.store_id[:12]}` · plan `{plan.plan_id[7:19]}`\n\n"
    )
    left_out: list[str] = []
    drifted = [a for a in plan.actions if a.drift]
    notes = [*(_warning(w) for w in plan.warnings), *(_drift_warning(a) for a in drifted)]
    if notes:
        out.add("**Warnings**\n\n")
        shown = next((i for i, w in enumerate(notes) if not out.add(w + "\n")), len(notes))
        if shown < len(notes):
            left_out.append(f"{n(len(notes) - shown)} of {n(len(notes))} warnings")
        out.add("\n")
    if plan.actions:
        out.add(_table(plan) + "\n\n")
    must = sorted(
        (a for a in plan.actions if _PRIORITY.get(a.action, 3) < _BULK),
        key=lambda a: (_PRIORITY[a.action], a.address),
    )
    if must:
        out.add("**Sends and changes**\n\n")
        shown = next((i for i, a in enumerate(must) if not out.add(_line(a) + "\n")), len(must))
        if shown < len(must):
            left_out.append(f"{n(len(must) - shown)} of {n(len(must))} sends and changes")
        out.add("\n")
    if plan.available_imports:
        names = ", ".join(f"`{s}`" for s in plan.available_imports)
        out.add(f"Available to import ({len(plan.available_imports)}): {names}\n\n")
    detailed = sorted(
        (a for a in plan.actions if changed is None or a.path in changed),
        key=lambda a: (_PRIORITY.get(a.action, 3), a.address),
    )
    if len(detailed) < len(plan.actions):
        others = len(plan.actions) - len(detailed)
        out.add(
            f"Details below cover the {n(len(detailed))} action(s) in files changed since "
            f"`{_escape(since)}`; the other {n(others)} {'is' if others == 1 else 'are'} in the "
            "summary above.\n\n"
        )
    if left_out:  # not even the list fits: no details, say so plainly
        return out.text() + (
            f"\n> **Too large for one comment:** {' and '.join(left_out)} are not shown; "
            f"{_FULL_PLAN}.\n"
        )
    hidden: dict[str, int] = {}
    for action in detailed:
        if not out.add("\n" + _details(action) + "\n"):
            key = f"{action.kind} {action.action}"
            hidden[key] = hidden.get(key, 0) + 1
    if hidden:
        what = ", ".join(f"{n(count)} × {key}" for key, count in sorted(hidden.items()))
        out.room = limit  # the reserve is for this note
        out.add(
            f"\n> **Truncated:** details of {n(sum(hidden.values()))} of {n(len(detailed))} actions "
            f"are not shown ({what}), to stay under {n(limit)} characters. The list and the summary "
            f"above name every send and change; {_FULL_PLAN}.\n"
        )
    return out.text()
