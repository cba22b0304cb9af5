"""JSON Schema validation of YAML documents, with messages and positions an operator can act on."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Any

import jsonschema
from referencing import Registry, Resource

from commsync.config.resources import data_dir
from commsync.config.yamlpos import Json, YamlDoc, escape_pointer
from commsync.diagnostics import Diagnostic

SCHEMA_FILES = (
    "commsync.schema.json",
    "broadcast.schema.json",
    "email.schema.json",
    "catalog-email.schema.json",
    "catalog-event.schema.json",
    "catalog-group.schema.json",
    "plan.schema.json",
)
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping of keys",
    "array": "a list",
    "null": "nothing",
}


@cache
def _registry() -> Registry[Any]:
    resources = []
    for name in SCHEMA_FILES:
        contents = json.loads((data_dir("schemas") / name).read_text(encoding="utf-8"))
        resource = Resource.from_contents(contents)
        resources.append((name, resource))  # its relative $refs name the other files
    return Registry().with_resources(resources)


@cache
def load_schema(name: str) -> dict[str, Any]:
    contents: dict[str, Any] = _registry().contents(name)
    return contents


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = load_schema(name)
    return jsonschema.Draft202012Validator(schema, registry=_registry())


# Keywords whose meaning differs between draft 2020-12 (the schemas' draft) and draft 07
# (what fastjsonschema compiles), or that it does not know: a schema using any of them is only
# ever checked by jsonschema.
_NOT_DRAFT_07 = frozenset(
    {
        "$ref",
        "$defs",
        "$dynamicRef",
        "$dynamicAnchor",
        "$anchor",
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentRequired",
        "dependentSchemas",
        "minContains",
        "maxContains",
    }
)


def _uses(schema: object, keywords: frozenset[str]) -> bool:
    if isinstance(schema, dict):
        return any(k in keywords or _uses(v, keywords) for k, v in schema.items())
    if isinstance(schema, list):
        return any(_uses(v, keywords) for v in schema)
    return False


@cache
def _fast(name: str) -> Callable[[Json], object] | None:
    """A compiled check that a document is valid (fastjsonschema: 10x jsonschema's speed on the
    2,000 broadcasts of bench/plan.py), for schemas written in the draft-07 subset; None
    otherwise. It only says "valid": any document it refuses — or that it cannot judge — is
    checked by jsonschema, which alone writes the diagnostics. A property test checks that it
    never accepts what jsonschema refuses."""
    import fastjsonschema

    schema = load_schema(name)
    if _uses(schema, _NOT_DRAFT_07):
        return None
    draft_07 = {**schema, "$schema": "http://json-schema.org/draft-07/schema#"}
    check: Callable[[Json], object] = fastjsonschema.compile(draft_07, use_formats=False)
    return check


def fast_valid(value: Json, schema_name: str) -> bool:
    """True only if the compiled check accepts `value` (False: ask jsonschema)."""
    check = _fast(schema_name)
    if check is None:
        return False
    try:
        check(value)
    except Exception:  # refused, or beyond what it can judge: jsonschema decides
        return False
    return True


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "mapping"


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _pointer(path: Any) -> str:
    return "".join(f"/{escape_pointer(str(p))}" for p in path)


def _schema_at(root: dict[str, Any], path: Any) -> Any:
    node: Any = root
    trail = [node]
    for part in path:
        node = node[part]
        trail.append(node)
    return trail


def _x_message(root: dict[str, Any], error: jsonschema.ValidationError) -> str | None:
    trail = _schema_at(root, list(error.absolute_schema_path)[:-1])
    for node in reversed(trail[-3:]):
        if isinstance(node, dict) and "x-message" in node:
            return str(node["x-message"])
    return None


def _unknown_keys(
    error: jsonschema.ValidationError, doc: YamlDoc, base: str
) -> Iterator[Diagnostic]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    allowed = sorted(schema.get("properties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    for key in sorted(set(instance) - set(allowed)):
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = (
            f" (did you mean {close[0]!r}?)"
            if close
            else f" (expected one of: {', '.join(allowed)})"
        )
        yield doc.diag(f"{base}/{escape_pointer(key)}", f"unknown key {key!r}{hint}", key=True)


def _forbidden_keys(
    root: dict[str, Any], error: jsonschema.ValidationError, value: Json
) -> list[str]:
    """Keys whose schema is `false` (jsonschema reports them without the key in the path)."""
    node = _schema_at(root, list(error.absolute_schema_path))[-1]
    parent: Any = value
    for part in error.absolute_path:
        parent = parent[part]
    if node is False:  # a jsonschema that does put the key in the path
        return [str(list(error.absolute_schema_path)[-1])]
    if not isinstance(node, dict) or not isinstance(parent, dict):
        return []
    return [
        k for k, v in node.items() if v is False and k in parent and parent[k] == error.instance
    ]


def _message(root: dict[str, Any], error: jsonschema.ValidationError) -> str:
    v, inst = error.validator, error.instance
    value: Any = error.validator_value
    custom = _x_message(root, error)
    if v == "type":
        wanted = " or ".join(
            _TYPE_NAMES.get(t, t) for t in ([value] if isinstance(value, str) else value)
        )
        got = "nothing" if inst is None else f"{_json_type(inst)} {_short(inst)}"
        return f"expected {wanted}, got {got}"
    if custom and v in ("pattern", "const", "anyOf", "oneOf", "format", "not"):
        return f"{_short(inst)}: {custom}" if v != "const" else custom
    if v == "enum":
        return f"{_short(inst)} is not one of: {', '.join(str(x) for x in value)}"
    if v == "const":
        return f"must be {_short(value)}"
    if v == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters"
    if v == "maxLength":
        length = len(inst) if isinstance(inst, str) else 0
        return f"too long: {length:,} characters, at most {value:,}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}[v]
        return f"must be {op} {value}, got {_short(inst)}"
    if v == "uniqueItems":
        return "list has duplicate items"
    if v == "minItems":
        return f"must list at least {value} item{'s' if value != 1 else ''}"
    if v == "propertyNames":
        return f"invalid key name {_short(inst)}"
    if v == "pattern":
        return f"{_short(inst)} does not match {value}"
    return str(error.message)


# Documents of one schema checked by jsonschema alone before the compiled check is built: the
# import and compilation cost 40-60 ms, which a small repository (or `token`, which reads only
# commsync.yaml) would pay for nothing; past this many files they pay for themselves.
FAST_AFTER = 40
_checked: dict[str, int] = {}


def schema_diagnostics(doc: YamlDoc, schema_name: str) -> list[Diagnostic]:
    """Every schema violation in `doc`, at the line and column of the offending key or value."""
    seen = _checked[schema_name] = _checked.get(schema_name, 0) + 1
    if seen > FAST_AFTER and fast_valid(doc.value, schema_name):
        return []
    root = load_schema(schema_name)
    out: list[Diagnostic] = []
    for error in validator(schema_name).iter_errors(doc.value):
        base = _pointer(error.absolute_path)
        if error.validator == "additionalProperties":
            out.extend(_unknown_keys(error, doc, base))
        elif error.validator == "required":
            missing = [k for k in error.validator_value if k not in (error.instance or {})]
            out.extend(doc.diag(base, f"missing required key {k!r}") for k in missing)
        elif error.schema is False:
            when = _x_message(root, error) or "not allowed here"
            for key in _forbidden_keys(root, error, doc.value):
                out.append(
                    doc.diag(f"{base}/{escape_pointer(key)}", f"key {key!r} is {when}", key=True)
                )
        else:
            out.append(doc.diag(base, _message(root, error)))
    return out


def is_valid(value: Json, schema_name: str) -> bool:
    return bool(validator(schema_name).is_valid(value))


def invalid_keys(diagnostics: Iterable[Diagnostic]) -> set[str]:
    """Top-level keys with an error: later checks skip them instead of tripping over them."""
    return {
        d.pointer.split("/")[1]
        for d in diagnostics
        if d.severity == "error" and d.pointer.count("/") >= 1
    }
