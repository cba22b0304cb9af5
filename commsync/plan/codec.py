"""The plan's JSON form (schemas/plan.schema.json): the only place plans meet untyped JSON.

`plan --format json`, `plan --out` and `apply PLANFILE` all go through here. A document whose
`format_version` this commsync does not know is refused with a request to plan again.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson

from commsync.model import (
    Audience,
    BroadcastSpec,
    JsonObject,
    JsonValue,
    Provenance,
    SourceInfo,
    SystemEmailFields,
    digest,
)
from commsync.plan.model import (
    FORMAT_VERSION,
    Action,
    EmailAction,
    EmailInstall,
    FieldChange,
    NoticeAction,
    ObjectKind,
    Plan,
    PlanWarning,
    Remaining,
    SystemEmailAction,
    ThreeWay,
    Verb,
    WarningCode,
    audience_of,
)


class UnknownPlanFormat(ValueError):
    """A plan document of a format version this commsync cannot read."""


# -- to JSON ----------------------------------------------------------------------------------


def _desired(a: Action) -> JsonValue:
    if isinstance(a, SystemEmailAction):
        i = a.install
        if i is None:
            return None
        return {
            "fields": i.fields.to_json(),
            "overrides": list(i.overrides),
            "base_version": i.base_version,
            "base_fields": None if i.base_fields is None else i.base_fields.to_json(),
            "managed_path": i.managed_path,
        }
    return None if a.spec is None else {"spec": a.spec.to_json()}


def _progress(a: Action) -> JsonValue:
    if not isinstance(a, EmailAction) or a.remaining is None:
        return None
    r = a.remaining
    return {"total": r.total, "remaining": r.remaining, "uncertain": r.uncertain}


def _last_applied(p: Provenance | None) -> JsonValue:
    if p is None:
        return None
    at = p.applied_at.isoformat() if p.applied_at else None
    return {"commit": p.commit, "author": p.author, "path": p.path, "at": at}


def _action_json(a: Action) -> JsonObject:
    audience = audience_of(a)
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
        "audience": None if audience is None else audience.to_json(),
        "progress": _progress(a),
        "desired": _desired(a),
        "last_applied": _last_applied(a.last_applied),
        "sample_subject": a.sample_subject,
    }


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
    body = _last_body[0][1] if _last_body and _last_body[0][0] is plan else plan_body(plan)
    return {"plan_id": plan.plan_id, **body}


_last_body: list[tuple[Plan, JsonObject]] = []  # the last plan given an id, and its body


_last_dumped: list[tuple[Plan, str]] = []  # the last plan written, and its text


def dumps(plan: Plan) -> str:
    """The plan document as `plan --format json` prints it and `plan --out` saves it. The text
    of the last plan is kept (by identity: plans are immutable): `plan --format json --out`
    writes the same document twice. Written by orjson: Python's encoder writes indented JSON in
    Python (70 ms for the 2,000 changes of bench/plan.py, against 3 ms), with the same text; it
    is the fallback for what orjson refuses (an integer past 64 bits from a YAML file)."""
    if _last_dumped and _last_dumped[0][0] is plan:
        return _last_dumped[0][1]
    doc = plan_to_json(plan)
    try:
        text = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode()
    except orjson.JSONEncodeError:
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    _last_dumped[:] = [(plan, text)]
    return text


def with_id(plan: Plan) -> Plan:
    """The plan with its id set to the digest of its body (the body is kept for the plan's
    document, which is usually written next)."""
    body = plan_body(plan)
    identified = replace(plan, plan_id=digest(body))
    _last_body[:] = [(identified, body)]
    return identified


# -- from JSON --------------------------------------------------------------------------------


def _audience_from(data: Any) -> Audience | None:
    if data is None:
        return None
    products = tuple(sorted((str(k), int(v)) for k, v in data["products"].items()))
    return Audience(
        int(data["total"]),
        bool(data["all"]),
        int(data["customers"]),
        products,
        int(data.get("listed_in_products", 0)),
        int(data.get("suppressed", 0)),
    )


def _install_from(data: Any) -> EmailInstall | None:
    if data is None:
        return None
    base = data["base_fields"]
    version = data["base_version"]
    return EmailInstall(
        fields=SystemEmailFields.from_json(data["fields"]),
        overrides=tuple(str(o) for o in data["overrides"]),
        base_version=int(version) if isinstance(version, int) else None,
        base_fields=None if base is None else SystemEmailFields.from_json(base),
        managed_path=data["managed_path"],
    )


def _provenance_from(data: Any) -> Provenance | None:
    if data is None:
        return None
    at = data.get("at")
    return Provenance(
        path=data.get("path"),
        commit=data.get("commit"),
        author=data.get("author"),
        applied_at=datetime.fromisoformat(at) if at else None,
    )


def _action_from(data: Any) -> Action:
    kind = ObjectKind(data["kind"])
    common: dict[str, Any] = {
        "name": str(data["address"]).split(".", 1)[1],
        "action": Verb(data["action"]),
        "reason": data["reason"],
        "changes": tuple(FieldChange(c["field"], c["before"], c["after"]) for c in data["changes"]),
        "drift": bool(data["drift"]),
        "fingerprint": data["fingerprint"],
        "path": data["path"],
        "last_applied": _provenance_from(data.get("last_applied")),
        "sample_subject": data.get("sample_subject"),
    }
    if kind == ObjectKind.SYSTEM_EMAIL:
        return SystemEmailAction(**common, install=_install_from(data["desired"]))
    desired = data["desired"]
    spec = None if desired is None else BroadcastSpec.from_json(desired["spec"])
    audience = _audience_from(data["audience"])
    if kind == ObjectKind.NOTICE:
        return NoticeAction(**common, spec=spec, audience=audience)
    progress = data["progress"]
    remaining = (
        None
        if progress is None
        else Remaining(
            int(progress["total"]), int(progress["remaining"]), int(progress["uncertain"])
        )
    )
    return EmailAction(**common, spec=spec, audience=audience, remaining=remaining)


def _warning_from(data: Any) -> PlanWarning:
    kind, name = str(data["address"]).split(".", 1)
    details = tuple(
        ThreeWay(d["field"], d["old_default"], d["new_default"], d["live"]) for d in data["details"]
    )
    return PlanWarning(
        ObjectKind(kind), name, WarningCode(data["code"]), data["message"], data["path"], details
    )


def plan_from_json(data: Any) -> Plan:
    """A plan from its document (already checked against the plan schema)."""
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise UnknownPlanFormat(
            f"plan format version {version!r} is not {FORMAT_VERSION}, the one this commsync "
            "reads; make a new plan with this commsync"
        )
    source = data["source"]
    return Plan(
        plan_id=data["plan_id"],
        created_at=datetime.fromisoformat(data["created_at"]),
        store_id=data["store_id"],
        source=SourceInfo(source["label"], source["commit"], source["author"]),
        actions=tuple(_action_from(a) for a in data["actions"]),
        warnings=tuple(_warning_from(w) for w in data["warnings"]),
        available_imports=tuple(data["available_imports"]),
        format_version=FORMAT_VERSION,
    )
