"""The plan as terminal text: one line per action, field diffs, warnings, a summary line.

Lines are rich `Text` with styles; without colour the same lines are plain text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console, RenderableType
from rich.text import Text

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

_STYLES = {
    "+": "green",
    "~": "yellow",
    "-": "red",
    ">": "cyan",
    "<": "magenta",
    "^": "magenta",
    ".": "dim",
    "@": "blue",
    "x": "red",
    "!": "yellow",
}


def _diff_style(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "bold"
    return "green" if line.startswith("+") else "red" if line.startswith("-") else ""


def _action_lines(action: Action, width: int) -> list[Text]:
    symbol = SYMBOLS[action.action]
    style = _STYLES[symbol]
    head = Text.assemble(
        "  ",
        (symbol, style),
        f" {action.address.ljust(width)}  ",
        (action.action.ljust(9), style),
        f" {headline(action)}",
    )
    if action.drift:
        head.append(" [drift]", "yellow")
    head.rstrip()
    lines = [head]
    origin = applied_from(action)
    if origin and action.is_change:
        lines.append(Text.assemble("      ", (origin, "dim")))
    for change in action.changes:
        if is_multiline(change):
            lines.append(Text(f"      {change.field}:"))
            for line in unified(change, labels(action)):
                lines.append(Text.assemble("        ", (line, _diff_style(line))))
        else:
            text = f"      {change.field}: {show(change.before)} → {show(change.after)}"
            lines.append(Text(text))
    return lines


def _warning_lines(warning: PlanWarning) -> list[Text]:
    lines = [Text.assemble("  ", ("!", "yellow"), f" {warning.address}: {warning.message}")]
    for d in warning.details:
        lines.append(Text(f"      {d.field}:"))
        lines.append(Text(f"        old default: {show(d.old_default)}"))
        lines.append(Text(f"        new default: {show(d.new_default)}"))
        lines.append(Text(f"        live:        {show(d.live)}"))
    return lines


def plan_lines(plan: Plan, *, changed: frozenset[str] | None = None, since: str = "") -> list[Text]:
    """Every action, or with `changed` only those in files changed since `since` (summary: all)."""
    lines = [Text(f"commsync plan · {plan.source.label} · store {plan.store_id[:12]}"), Text()]
    shown = [a for a in plan.actions if changed is None or a.path in changed]
    width = max((len(a.address) for a in shown), default=0)
    for action in shown:
        lines.extend(_action_lines(action, width))
    if shown:
        lines.append(Text())
    if len(shown) < len(plan.actions):
        hidden = len(plan.actions) - len(shown)
        note = f"{hidden} more action(s) in files not changed since {since}: in the summary below."
        lines += [Text(note), Text()]
    if plan.warnings:
        lines.append(Text("Warnings:", "bold"))
        for warning in plan.warnings:
            lines.extend(_warning_lines(warning))
        lines.append(Text())
    if plan.available_imports:
        names = ", ".join(plan.available_imports)
        lines.append(Text(f"Available to import ({len(plan.available_imports)}): {names}"))
        hint = "  to install one: commsync emails import <slug>  (writes emails/<slug>.yaml)"
        lines += [Text(hint), Text()]
    prefix = "Plan: " if plan.has_changes else ""
    lines.append(Text(prefix + summary_line(plan), "bold"))
    return lines


def to_string(lines: Sequence[RenderableType], *, color: bool) -> str:
    """Lines as terminal text: ANSI colours when `color`, never wrapped."""
    out = io.StringIO()
    console = Console(
        file=out,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        width=1_000_000,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,
    )
    for line in lines:
        console.print(line)
    return out.getvalue()


def render_text(
    plan: Plan, *, color: bool = False, changed: frozenset[str] | None = None, since: str = ""
) -> str:
    """The plan as text (see `plan_lines`)."""
    return to_string(plan_lines(plan, changed=changed, since=since), color=color)
