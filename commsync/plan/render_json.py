"""The plan as a versioned JSON document (the same document `plan --out` saves)."""

from __future__ import annotations

import json

from commsync.plan.model import Plan, plan_to_json


def render_json(plan: Plan) -> str:
    return json.dumps(plan_to_json(plan), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
