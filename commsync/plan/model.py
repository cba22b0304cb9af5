"""A Plan is data: frozen values with a versioned JSON round-trip (schemas/plan.schema.json)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from commsync.model import Audience, JsonObject, JsonValue, SourceInfo, digest

FORMAT_VERSION = 1
CHANGE_ACTIONS = frozenset(
    {"create", "update", "retract", "send", "resume", "import", "reset", "upgrade", "delete"}
)
INFO_ACTIONS = frozenset({"expired", "pending", "scheduled"})
ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: JsonValue
    after: JsonValue


@dataclass(frozen=True, slots=True)
class Action:
    """One thing apply would do (or, for info actions, would leave alone) at one address."""

    address: str
    action: str
    reason: str
    changes: tuple[FieldChange, ...] = ()
    audience: Audience | None = None
    drift: bool = False
    fingerprint: str = ABSENT
    path: str | None = None
    desired: JsonObject | None = None
    progress: JsonObject | None = None
    last_applied: JsonObject | None = None  # commit, author, path, at: the live object's provenance
    sample_subject: str | None = None  # the subject rendered for sample values (no personal data)

    @property
    def kind(self) -> str:
        return self.address.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.address.split(".", 1)[1]

    @property
    def is_change(self) -> bool:
        return self.action in CHANGE_ACTIONS


@dataclass(frozen=True, slots=True)
class ThreeWay:
    """A field of a customised system email whose default changed: old default, new default, live."""

    field: str
    old_default: JsonValue
    new_default: JsonValue
    live: JsonValue


@dataclass(frozen=True, slots=True)
class PlanWarning:
    address: str
    code: str
    message: str
    path: str | None = None
    details: tuple[ThreeWay, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    plan_id: str
    created_at: datetime
    store_id: str
    source: SourceInfo
    actions: tuple[Action, ...]
    warnings: tuple[PlanWarning, ...] = ()
    available_imports: tuple[str, ...] = ()
    format_version: int = FORMAT_VERSION

    @property
    def changes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.is_change)

    @property
    def has_changes(self) -> bool:
        return any(a.is_change for a in self.actions)

    def summary(self) -> dict[str, int]:
        counts = Counter(a.action for a in self.actions)
        return dict(sorted(counts.items()))

    def recipients(self) -> int:
        """Emails the plan would send: new sends' audiences plus what resumes have left."""
        total = 0
        for a in self.actions:
            if a.action == "send" and a.audience is not None:
                total += a.audience.total
            elif a.action == "resume" and a.progress is not None:
                remaining = a.progress.get("remaining", 0)
                total += remaining if isinstance(remaining, int) else 0
        return total


# -- JSON --------------------------------------------------------------------------------------


def _audience_json(a: Audience | None) -> JsonValue:
    return None if a is None else a.to_json()


def _audience_from(data: Any) -> Audience | None:
    if data is None:
        return None
    products = tuple(sorted((str(k), int(v)) for k, v in data["products"].items()))
    return Audience(int(data["total"]), bool(data["all"]), int(data["customers"]), products)


def _action_json(a: Action) -> JsonObject:
    return {
        "address": a.address,
        "kind": a.kind,
        "action": a.action,
        "change": a.is_change,
        "reason": a.reason,
        "drift": a.drift,
        "path": a.path,
        "fingerprint": a.fingerprint,
        "changes": [{"field": c.field, "before": c.before, "after": c.after} for c in a.changes],
        "audience": _audience_json(a.audience),
        "progress": a.progress,
        "desired": a.desired,
        "last_applied": a.last_applied,
        "sample_subject": a.sample_subject,
    }


def _action_from(data: Any) -> Action:
    return Action(
        address=data["address"],
        action=data["action"],
        reason=data["reason"],
        changes=tuple(FieldChange(c["field"], c["before"], c["after"]) for c in data["changes"]),
        audience=_audience_from(data["audience"]),
        drift=bool(data["drift"]),
        fingerprint=data["fingerprint"],
        path=data["path"],
        desired=data["desired"],
        progress=data["progress"],
        last_applied=data.get("last_applied"),
        sample_subject=data.get("sample_subject"),
    )


def _warning_json(w: PlanWarning) -> JsonObject:
    return {
        "address": w.address,
        "code": w.code,
        "message": w.message,
        "path": w.path,
        "details": [
            {
                "field": d.field,
                "old_default": d.old_default,
                "new_default": d.new_default,
                "live": d.live,
            }
            for d in w.details
        ],
    }


def _warning_from(data: Any) -> PlanWarning:
    details = tuple(
        ThreeWay(d["field"], d["old_default"], d["new_default"], d["live"]) for d in data["details"]
    )
    return PlanWarning(data["address"], data["code"], data["message"], data["path"], details)


def plan_body(plan: Plan) -> JsonObject:
    """Everything but the id: what the id is a digest of."""
    return {
        "format_version": plan.format_version,
        "created_at": plan.created_at.isoformat(),
        "store_id": plan.store_id,
        "source": {
            "label": plan.source.label,
            "commit": plan.source.commit,
            "author": plan.source.author,
        },
        "summary": {
            "changes": len(plan.changes),
            "by_action": dict(plan.summary()),
            "recipients": plan.recipients(),
            "warnings": len(plan.warnings),
        },
        "actions": [_action_json(a) for a in plan.actions],
        "warnings": [_warning_json(w) for w in plan.warnings],
        "available_imports": list(plan.available_imports),
    }


def plan_to_json(plan: Plan) -> JsonObject:
    return {"plan_id": plan.plan_id, **plan_body(plan)}


def plan_from_json(data: Any) -> Plan:
    source = data["source"]
    return Plan(
        plan_id=data["plan_id"],
        created_at=datetime.fromisoformat(data["created_at"]),
        store_id=data["store_id"],
        source=SourceInfo(source["label"], source["commit"], source["author"]),
        actions=tuple(_action_from(a) for a in data["actions"]),
        warnings=tuple(_warning_from(w) for w in data["warnings"]),
        available_imports=tuple(data["available_imports"]),
        format_version=int(data["format_version"]),
    )


def with_id(plan: Plan) -> Plan:
    """The plan with its id set to the digest of its body."""
    return replace(plan, plan_id=digest(plan_body(plan)))
