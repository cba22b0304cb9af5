"""New repository files written from live objects (`commsync pull`): readable YAML, schema-valid."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import yaml

from commsync.model import (
    BroadcastSpec,
    JsonObject,
    JsonValue,
    SystemEmailFields,
    field_defaults,
    format_datetime,
)
from commsync.repo.edit import SCHEMA_COMMENT
from commsync.repo.schemas import modeline

_SPEC_DEFAULTS = field_defaults(BroadcastSpec)
# A custom email's file leaves out what equals the default: `sender`'s default is no sender.
_EMAIL_DEFAULTS: dict[str, JsonValue] = {
    k: v for k, v in field_defaults(SystemEmailFields).items() if v is not None
}


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line text as literal blocks (`|`), as people write it."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)
_Dumper.add_multi_representer(StrEnum, lambda dumper, value: _str(dumper, str(value)))


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )


def _targets(spec: BroadcastSpec) -> dict[str, Any]:
    t = spec.targets
    out: dict[str, Any] = {}
    if t.all:
        out["all"] = True
    if t.products:
        out["products"] = list(t.products)
    if t.customers:
        out["customers"] = list(t.customers)
    return out


def notice_yaml(spec: BroadcastSpec, note: str, path: str) -> str:
    """The file at `path` (relative to the repository) that manages this notice."""
    data: dict[str, Any] = {"kind": "notice", "message_type": spec.message_type}
    data["subject"] = spec.subject
    data["targets"] = _targets(spec)
    if spec.dismissible != _SPEC_DEFAULTS["dismissible"]:
        data["dismissible"] = spec.dismissible
    for name in ("starts_at", "expires_at"):
        value = getattr(spec, name)
        if value is not None:
            data[name] = format_datetime(value)
    if spec.format != _SPEC_DEFAULTS["format"]:
        data["format"] = spec.format
    data["content"] = spec.content
    return f"{modeline(path)}\n# {note}\n{_dump(data)}"


def email_yaml(
    slug: str, fields: SystemEmailFields, overrides: tuple[str, ...] | None, note: str
) -> str:
    """A custom email (`overrides` None: every field) or an override of a default (those keys)."""
    values: JsonObject = fields.to_json()
    if overrides is None:
        keep = ["event", "target", "subject", "content", "format", "style", "active"]
        keep += ["send_copy_to_admin", "delay", "sender"]
        data: dict[str, Any] = {}
        for key in keep:
            value = values.get(key)
            if value is None or _EMAIL_DEFAULTS.get(key) == value:
                continue
            data[key] = value
    else:
        data = {"email": slug}
        data.update({key: values[key] for key in overrides})
    return f"{SCHEMA_COMMENT}\n# {note}\n{_dump(data)}"
