"""What planning one kind of object produces, and how two broadcast specs differ."""

from __future__ import annotations

from dataclasses import dataclass, field

from commsync.diagnostics import Diagnostic
from commsync.model import BroadcastSpec
from commsync.plan.model import Action, FieldChange, PlanWarning


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
