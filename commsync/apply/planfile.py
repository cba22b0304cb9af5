"""Reading a saved plan (`apply PLANFILE`): a plan document of this format, checked by its schema."""

from __future__ import annotations

import json
from pathlib import Path

from commsync.config.schema import validator
from commsync.errors import ConfigError
from commsync.plan.codec import UnknownPlanFormat, plan_from_json
from commsync.plan.model import FORMAT_VERSION, Plan


def read_plan(path: Path) -> Plan:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the plan {path}: {exc}") from exc
    version = document.get("format_version") if isinstance(document, dict) else None
    if isinstance(version, int) and version != FORMAT_VERSION:
        raise ConfigError(
            f"{path} is a plan of format version {version}; this commsync reads version "
            f"{FORMAT_VERSION}. Make a new plan with `commsync plan --out`"
        )
    errors = sorted(validator("plan.schema.json").iter_errors(document), key=lambda e: list(e.path))
    if errors:
        raise ConfigError(f"{path} is not a commsync plan: {errors[0].message}")
    try:
        return plan_from_json(document)
    except UnknownPlanFormat as exc:
        raise ConfigError(f"{path}: {exc}") from exc
