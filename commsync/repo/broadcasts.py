"""Broadcast files (broadcasts/**/*.yaml): parse, check, and resolve targets against the store."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from commsync.config.files import strip_yaml_suffix
from commsync.config.schema import invalid_keys, schema_diagnostics
from commsync.config.yamlpos import YamlDoc, as_list, load_yaml
from commsync.diagnostics import Diagnostic
from commsync.model import (
    BROADCAST_CONTEXT,
    EMAIL_BROADCAST_CONTEXT,
    SAMPLE_CUSTOMER,
    BroadcastKind,
    BroadcastSpec,
    DesiredBroadcast,
    Origin,
    Targets,
    parse_datetime,
)
from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.render.checks import subject_diagnostics, template_diagnostics

BROADCASTS_DIR = "broadcasts"
_ID = re.compile(r"(?=.{1,128}$)[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*")
_DATES = ("starts_at", "expires_at", "send_at")


class References(Protocol):
    """What target validation needs to know about the store's customers and products."""

    def product_slugs(self) -> frozenset[str]: ...

    def match_customers(self, refs: Collection[str]) -> Mapping[str, tuple[str, ...]]:
        """For each ref (id, email or username), the ids of the customers it matches."""
        ...


@dataclass(frozen=True, slots=True)
class ParsedBroadcast:
    """A schema-valid broadcast file whose targets are still refs, each with its pointer."""

    id: str
    doc: YamlDoc
    kind: BroadcastKind
    fields: Mapping[str, object]
    customer_refs: tuple[tuple[str, str], ...]
    products: tuple[tuple[str, str], ...]
    all: bool
    origin: Origin
    valid: bool = True

    def to_desired(self, customer_ids: Iterable[str]) -> DesiredBroadcast:
        """The broadcast, its customer refs resolved to `customer_ids` (keys left out of the
        file take BroadcastSpec's defaults)."""
        targets = Targets(
            self.all,
            tuple(sorted({p for p, _ in self.products})),
            tuple(sorted(set(customer_ids))),
        )
        spec = BroadcastSpec.from_fields(self.kind, targets, self.fields)
        return DesiredBroadcast(self.id, spec, self.origin)


def _default_id(path: str) -> str:
    return strip_yaml_suffix(path)[len(BROADCASTS_DIR) + 1 :]


def _date_diagnostics(
    doc: YamlDoc, value: Mapping[str, object]
) -> tuple[dict[str, datetime], list[Diagnostic]]:
    dates: dict[str, datetime] = {}
    out: list[Diagnostic] = []
    for name in _DATES:
        raw = value.get(name)
        if not isinstance(raw, str):
            continue
        parsed = parse_datetime(raw)
        if parsed is not None:
            dates[name] = parsed
            continue
        example = "2026-12-01T09:00:00+01:00 (or …Z for UTC)"
        try:
            datetime.fromisoformat(raw)
            msg = f"{name} {raw!r} has no UTC offset; write it like {example}"
        except ValueError:
            msg = f"{name} {raw!r} is not an ISO 8601 date-time; write it like {example}"
        out.append(doc.diag(f"/{name}", msg))
    start, end = dates.get("starts_at"), dates.get("expires_at")
    if start and end and end <= start:
        out.append(doc.diag("/expires_at", "expires_at must be after starts_at"))
    return dates, out


def _target_diagnostics(doc: YamlDoc, targets: Mapping[str, object]) -> list[Diagnostic]:
    customers, products = targets.get("customers") or [], targets.get("products") or []
    everyone = targets.get("all") is True
    if not customers and not products and not everyone:
        return [
            doc.diag(
                "/targets", "targets select nobody: list customers or products, or set all: true"
            )
        ]
    if everyone and (customers or products):
        msg = (
            "all: true already selects every customer; the customers and products lists add nobody"
        )
        return [Diagnostic(doc.path, *_pos(doc, "/targets/all"), msg, "warning", "/targets/all")]
    return []


def _pos(doc: YamlDoc, pointer: str) -> tuple[int, int]:
    mark = doc.mark(pointer, key=True)
    return mark.line, mark.col


def _check(doc: YamlDoc, value: Mapping[str, object], limits: Limits) -> list[Diagnostic]:
    """Checks beyond the schema, on the keys that passed it (so one run reports everything)."""
    kind = value.get("kind")
    notice = kind == BroadcastKind.NOTICE
    allowed = frozenset(BROADCAST_CONTEXT if notice else EMAIL_BROADCAST_CONTEXT)
    context = "notices" if notice else "email broadcasts"
    out: list[Diagnostic] = []
    if isinstance(value.get("subject"), str):
        out += subject_diagnostics(doc, "/subject", str(value["subject"]), limits)
    for name in ("subject", "content"):
        if isinstance(value.get(name), str):
            out += template_diagnostics(
                doc, f"/{name}", str(value[name]), allowed, context, SAMPLE_CUSTOMER, limits
            )
    targets = value.get("targets")
    if isinstance(targets, dict):
        out += _target_diagnostics(doc, targets)
    _, date_problems = _date_diagnostics(doc, value)
    return out + date_problems


def _refs(targets: object, key: str) -> tuple[tuple[str, str], ...]:
    items = as_list(targets.get(key)) if isinstance(targets, dict) else []
    return tuple(
        (str(item), f"/targets/{key}/{i}")
        for i, item in enumerate(items)
        if isinstance(item, str | int)
    )


def parse_broadcast(
    path: str, data: bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[ParsedBroadcast | None, list[Diagnostic]]:
    """Parse and check one broadcast file. The result is `valid` only when it has no errors;
    an invalid one is still returned when its targets can be checked against the store."""
    doc, diags = load_yaml(path, data)
    if doc is None or not isinstance(doc.value, dict):
        return None, diags + (
            [] if doc is None else schema_diagnostics(doc, "broadcast.schema.json")
        )
    diags += schema_diagnostics(doc, "broadcast.schema.json")
    bad = invalid_keys(diags)
    value = {k: v for k, v in doc.value.items() if k not in bad}
    bid = str(value.get("id") or _default_id(path))
    if "id" not in doc.value and not _ID.fullmatch(bid):
        message = f"the file path gives the id {bid!r}, which is not a valid id; rename the file or set id:"
        diags.append(doc.diag("", message))
    problems = _check(doc, value, limits)
    diags += problems
    targets = value.get("targets")
    mark = doc.mark("/id", key=True) if "id" in value else doc.mark("")
    kind = BroadcastKind.EMAIL if value.get("kind") == BroadcastKind.EMAIL else BroadcastKind.NOTICE
    parsed = ParsedBroadcast(
        bid,
        doc,
        kind,
        value,
        _refs(targets, "customers"),
        _refs(targets, "products"),
        isinstance(targets, dict) and targets.get("all") is True,
        Origin(path, mark.line, mark.col),
        valid=not any(d.severity == "error" for d in diags),
    )
    return parsed, diags


def _customer_message(ref: str, matches: tuple[str, ...]) -> str | None:
    if not matches:
        return f"unknown customer {ref!r}: no customer has this id, email or username"
    if len(matches) > 1:
        return f"customer {ref!r} is ambiguous: it matches customers {', '.join(matches)}; use an email address"
    return None


def resolve_targets(
    parsed: Iterable[ParsedBroadcast], refs: References
) -> tuple[list[DesiredBroadcast], list[Diagnostic]]:
    """Resolve customer refs to ids and check product slugs; every unknown one is an error.

    Invalid files are checked too (so one run reports everything) but give no desired broadcast.
    """
    items = list(parsed)
    slugs = refs.product_slugs()
    matches = refs.match_customers({ref for p in items for ref, _ in p.customer_refs})
    desired, out = [], []
    for p in items:
        problems = []
        for slug, pointer in p.products:
            if slug not in slugs:
                close = difflib.get_close_matches(slug, sorted(slugs), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(p.doc.diag(pointer, f"unknown product {slug!r}{hint}"))
        ids = []
        for ref, pointer in p.customer_refs:
            found = matches.get(ref, ())
            message = _customer_message(ref, found)
            if message:
                problems.append(p.doc.diag(pointer, message))
            else:
                ids.append(found[0])
        out.extend(problems)
        if p.valid and not problems:
            desired.append(p.to_desired(ids))
    return desired, out
