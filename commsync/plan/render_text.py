"""The plan as terminal text: one line per action, field diffs, warnings, a summary line."""

from __future__ import annotations

from collections.abc import Callable

from commsync.plan.model import Action, Plan, PlanWarning
from commsync.plan.views import (
    SYMBOLS,
    applied_from,
    headline,
    is_multiline,
    labels,
    show,
    summary_line,
    unified,
)

_COLORS = {"+": "32", "~": "33", "-": "31", ">": "36", "<": "35", "^": "35", ".": "2", "!": "33"}

Paint = Callable[[str, str], str]


def _painter(color: bool) -> Paint:
    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color and code else text

    return paint


def _action_lines(action: Action, width: int, paint: Paint) -> list[str]:
    symbol = SYMBOLS[action.action]
    code = _COLORS[symbol]
    drift = paint(" [drift]", "33") if action.drift else ""
    head = f"  {paint(symbol, code)} {action.address.ljust(width)}  {paint(action.action.ljust(9), code)} {headline(action)}{drift}"
    lines = [head.rstrip()]
    origin = applied_from(action)
    if origin and action.is_change:
        lines.append("      " + paint(origin, "2"))
    for change in action.changes:
        if is_multiline(change):
            lines.append(f"      {change.field}:")
            for line in unified(change, labels(action)):
                tint = "32" if line.startswith("+") else "31" if line.startswith("-") else ""
                if line.startswith(("+++", "---")):
                    tint = "1"
                lines.append("        " + paint(line, tint))
        else:
            lines.append(f"      {change.field}: {show(change.before)} → {show(change.after)}")
    return lines


def _warning_lines(warning: PlanWarning, paint: Paint) -> list[str]:
    lines = [f"  {paint('!', '33')} {warning.address}: {warning.message}"]
    for d in warning.details:
        lines.append(f"      {d.field}:")
        lines.append(f"        old default: {show(d.old_default)}")
        lines.append(f"        new default: {show(d.new_default)}")
        lines.append(f"        live:        {show(d.live)}")
    return lines


def render_text(
    plan: Plan, *, color: bool = False, changed: frozenset[str] | None = None, since: str = ""
) -> str:
    """Every action, or with `changed` only those in files changed since `since` (summary: all)."""
    paint = _painter(color)
    source = plan.source.label
    lines = [f"commsync plan · {source} · store {plan.store_id[:12]}", ""]
    shown = [a for a in plan.actions if changed is None or a.path in changed]
    width = max((len(a.address) for a in shown), default=0)
    for action in shown:
        lines.extend(_action_lines(action, width, paint))
    if shown:
        lines.append("")
    if len(shown) < len(plan.actions):
        hidden = len(plan.actions) - len(shown)
        lines.append(
            f"{hidden} more action(s) in files not changed since {since}: in the summary below."
        )
        lines.append("")
    if plan.warnings:
        lines.append(paint("Warnings:", "1"))
        for warning in plan.warnings:
            lines.extend(_warning_lines(warning, paint))
        lines.append("")
    if plan.available_imports:
        lines.append(
            f"Available to import ({len(plan.available_imports)}): {', '.join(plan.available_imports)}"
        )
        lines.append("  to install one: commsync emails import <slug>  (writes emails/<slug>.yaml)")
        lines.append("")
    prefix = "Plan: " if plan.has_changes else ""
    lines.append(paint(prefix + summary_line(plan), "1"))
    return "\n".join(lines) + "\n"
